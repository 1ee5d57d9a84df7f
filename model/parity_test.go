package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/safetensors"
	"clm/torch"
)

// smallOverrides is the parity size: 3 layers, width 64, 4 heads, context
// 32, vocabulary 512.
var smallOverrides = map[string]any{
	"n_layer": int64(3), "n_embd": int64(64), "n_head": int64(4), "context_length": int64(32),
	"n_positions": int64(64), "vocab_size": int64(512),
}

// parityConfigs are every preset plus variants that switch on the other
// code paths.
var parityConfigs = []struct {
	name, preset string
	set          map[string]any
}{
	{"default", "default", nil},
	{"default-parallel", "default-parallel", nil},
	{"skipless", "skipless", nil},
	{"skipless-parallel", "skipless-parallel", nil},
	{"op", "op", nil},
	{"value-skipinit", "value-skipinit", nil},
	{"post-ln", "default", map[string]any{"norm_position": "post", "norm_type": "ln"}},
	{"tanh-gelu", "default", map[string]any{"dot_norm_type": "tanh", "activation_function": "gelu_new"}},
	{"skipless-orth-reparam", "skipless", map[string]any{"val_init_type": "orth", "value_resid_gain": 0.5}},
	{"tied-last-block", "skipless", map[string]any{"val_init_type": "orth", "value_resid_gain": 0.3, "tie_valproj_init": "last_block"}},
	{"tied-all-blocks", "skipless", map[string]any{"val_init_type": "normal", "value_resid_gain": 0.3, "tie_valproj_init": "all_blocks", "norm_type": "ln", "centre_attn_gain": 0.7}},
	{"leaky-postrms", "default", map[string]any{"lrelu_neg_slope": 0.1, "norm_position": "post", "qk_norm_type": "rmsnorm"}},
}

func smallConfig(t *testing.T, preset string, set map[string]any) Config {
	t.Helper()
	all := map[string]any{}
	for k, v := range smallOverrides {
		all[k] = v
	}
	for k, v := range set {
		all[k] = v
	}
	c, err := PresetWith(preset, all)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// parityBatch is a fixed batch of ids and labels with ignored positions and
// pad tokens.
func parityBatch(B, T, V int64) (ids, labels []int64) {
	r := rand.New(rand.NewPCG(7, 11))
	ids = make([]int64, B*T)
	labels = make([]int64, B*T)
	for i := range ids {
		ids[i] = int64(r.IntN(int(V)))
		labels[i] = ids[i]
		if i%9 == 4 {
			labels[i] = IgnoreIndex
		}
		if i%13 == 6 {
			ids[i], labels[i] = 0, 0 // the pad (= eos) id
		}
	}
	return ids, labels
}

type parityRun struct {
	name           string
	cfg            Config
	dir            string
	weights, batch string
	out64, out32   string
}

// TestReferenceParity checks, for every preset and variant, that Go's
// forward and backward equal scripts/reference/model.py on the same
// perturbed weights and batch: in float64, logits, loss, hidden states,
// attention probabilities and every parameter gradient to ≤ 1e-9 relative to
// each tensor's largest entry; in float32, loss and logits to ≤ 1e-5. It
// runs both shaped-attention implementations, with the fused kernels and
// without.
func TestReferenceParity(t *testing.T) {
	pyref.Require(t)
	const B, T, padID = 3, 32, 0
	ids, labels := parityBatch(B, T, 512)
	var runs []*parityRun
	var jobs []map[string]any
	for _, pc := range parityConfigs {
		cfg := smallConfig(t, pc.preset, pc.set)
		dir := filepath.Join(t.TempDir(), pc.name)
		os.MkdirAll(dir, 0o755)
		js, err := cfg.JSON()
		if err != nil {
			t.Fatal(err)
		}
		r := &parityRun{name: pc.name, cfg: cfg, dir: dir,
			weights: filepath.Join(dir, "w.safetensors"), batch: filepath.Join(dir, "batch.safetensors"),
			out64: filepath.Join(dir, "out64.safetensors"), out32: filepath.Join(dir, "out32.safetensors")}
		cfgPath := filepath.Join(dir, "cfg.json")
		os.WriteFile(cfgPath, js, 0o644)
		err = safetensors.Write(r.batch, []safetensors.Tensor{
			safetensors.NewTensor("input_ids", []int64{B, T}, ids),
			safetensors.NewTensor("labels", []int64{B, T}, labels),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs,
			map[string]any{"cmd": "init", "config": cfgPath, "seed": 1, "perturb": 0.02, "out": r.weights},
			map[string]any{"cmd": "forward", "config": cfgPath, "weights": r.weights, "batch": r.batch, "out": r.out64,
				"dtype": "float64", "hidden": true, "attn": true, "pad_id": padID},
			map[string]any{"cmd": "forward", "config": cfgPath, "weights": r.weights, "batch": r.batch, "out": r.out32,
				"dtype": "float32", "pad_id": padID})
		runs = append(runs, r)
	}
	pyref.RunJobs(t, "model_jobs.py", jobs)

	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			before := torch.LiveTensors()
			defer func() {
				if n := torch.LiveTensors(); n != before {
					t.Errorf("live tensors %d → %d", before, n)
				}
			}()
			for _, fused := range []bool{false, true} {
				for _, impl := range []AttentionImpl{AttentionMaterialised, AttentionFused} {
					worst64 := compareRun(t, r, torch.Float64, impl, fused, ids, labels, padID)
					if worst64 < 0 {
						t.Logf("%-22s %-12v refused (not exact for this config)", r.name, impl)
						continue
					}
					worst32 := compareRun(t, r, torch.Float32, impl, fused, ids, labels, padID)
					t.Logf("%-22s %-12v fused kernels %-5v float64 worst rel err %.2g, float32 %.2g", r.name, impl, fused, worst64, worst32)
				}
			}
		})
	}
}

// compareRun runs Go on r's weights in dt and compares with the reference
// output; it returns the worst relative error, or −1 when New refuses
// the implementation for the config.
func compareRun(t *testing.T, r *parityRun, dt torch.DType, impl AttentionImpl, fused bool, ids, labels []int64, padID int64) float64 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	m := newParityModel(t, r, dt, impl, fused)
	if m == nil {
		return -1 // refused, as it must be
	}
	defer m.Close()
	B, T := int64(3), int64(32)
	wantAttn := dt == torch.Float64 && impl == AttentionMaterialised
	out := m.Forward(torch.FromInt64(ids, B, T), ForwardOptions{
		Labels: torch.FromInt64(labels, B, T), Pad: PadToken(padID), Hidden: dt == torch.Float64, Attention: wantAttn,
	})
	out.Loss.Backward()
	defer func() {
		for _, p := range m.Params().Trainable() {
			p.T.ZeroGrad()
		}
	}()

	refPath, tol := r.out64, 1e-9
	if dt == torch.Float32 {
		refPath, tol = r.out32, 1e-5
	}
	ref, err := safetensors.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	c := &refComparer{t: t, ref: ref, dt: dt, impl: impl, tol: tol}
	c.cmp("loss", out.Loss)
	c.cmp("logits", out.Logits)
	if dt == torch.Float64 {
		for i, h := range out.Hidden {
			c.cmp(fmt.Sprintf("hidden.%d", i), h)
		}
		for i, a := range out.Attention {
			c.cmp(fmt.Sprintf("attn.%d", i), a)
		}
		c.cmpGrads(m)
	}
	return c.worst
}

// newParityModel builds r's model in dt with impl and loads r's weights; it
// returns nil when the fused implementation refuses a config with a dot
// norm, as it must (and fails the test if it accepts one).
func newParityModel(t *testing.T, r *parityRun, dt torch.DType, impl AttentionImpl, fused bool) *Model {
	t.Helper()
	m, err := New(r.cfg, Options{Device: torch.CPU, DType: dt, Attention: impl, FusedKernels: fused})
	if impl == AttentionFused && r.cfg.DotNormType != DotNormNone {
		if err == nil {
			m.Close()
			t.Fatalf("fused attention accepted dot_norm_type %q", r.cfg.DotNormType)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := torch.LoadSafetensors(r.weights, torch.CPU)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	if err := m.LoadState(w); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}

// refComparer compares Go's tensors with the reference output ref, in
// dtype dt with attention impl, to the relative tolerance tol, and keeps the
// worst relative error seen.
type refComparer struct {
	t     *testing.T
	ref   *safetensors.File
	dt    torch.DType
	impl  AttentionImpl
	tol   float64
	worst float64
}

// cmp compares got with the reference tensor `name`.
func (c *refComparer) cmp(name string, got *torch.Tensor) {
	c.t.Helper()
	want, err := torch.TensorFromFile(c.ref, name, torch.CPU)
	if err != nil {
		c.t.Errorf("%v %v: %v", c.dt, c.impl, err)
		return
	}
	e, err := relErr(got, want)
	if err != nil {
		c.t.Errorf("%v %v %s: %v", c.dt, c.impl, name, err)
		return
	}
	c.worst = math.Max(c.worst, e)
	if e > c.tol {
		c.t.Errorf("%v %v %s: relative error %.3g > %.0g", c.dt, c.impl, name, e, c.tol)
	}
}

// cmpGrads compares the gradient of every trainable parameter of m with the
// reference's; a parameter the reference lists in grad_none must have no
// gradient in Go either.
func (c *refComparer) cmpGrads(m *Model) {
	c.t.Helper()
	var noGrad []string
	json.Unmarshal([]byte(c.ref.Metadata()["grad_none"]), &noGrad)
	skip := map[string]bool{}
	for _, n := range noGrad {
		skip[n] = true
	}
	for _, p := range m.Params().Trainable() {
		g := p.T.Grad()
		if skip[p.Name] {
			if g != nil {
				c.t.Errorf("%v %s: Go has a gradient, the reference has none", c.impl, p.Name)
			}
			continue
		}
		if g == nil {
			c.t.Errorf("%v %s: no gradient in Go", c.impl, p.Name)
			continue
		}
		c.cmp("grad."+p.Name, g)
	}
}

// relErr is max|a−b| / max(max|b|, tiny), with equal shapes required.
func relErr(a, b *torch.Tensor) (float64, error) {
	if fmt.Sprint(a.Shape()) != fmt.Sprint(b.Shape()) {
		return 0, fmt.Errorf("shape %v, reference %v", a.Shape(), b.Shape())
	}
	av, bv := a.ToDType(torch.Float64).Float64s(), b.ToDType(torch.Float64).Float64s()
	scale, diff := 1e-30, 0.0
	for i := range bv {
		scale = math.Max(scale, math.Abs(bv[i]))
		d := math.Abs(av[i] - bv[i])
		if math.IsNaN(d) {
			return math.Inf(1), nil
		}
		diff = math.Max(diff, d)
	}
	return diff / scale, nil
}
