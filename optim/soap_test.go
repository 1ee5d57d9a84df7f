package optim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/safetensors"
	"clm/torch"
	"clm/torch/torchtest"
)

// soapSpec is one parameter of the SOAP test runs: its shape, its group,
// the first step with a gradient and a step without one (-1: none).
type soapSpec struct {
	name       string
	shape      []int64
	decay      bool
	from, skip int
}

// The shapes, with max_precondition_dim 8: square, wide, a dimension above
// 8 (identity there), both above, a parameter whose state starts at step 3
// (a refresh step), 1-D ones below and above 8, and a scalar.
var soapSpecs = []soapSpec{
	{"w_sq", []int64{6, 6}, true, 0, -1},
	{"w_wide", []int64{5, 8}, true, 0, -1},
	{"w_tall", []int64{12, 4}, true, 0, 7},
	{"w_big", []int64{10, 9}, true, 0, -1},
	{"late", []int64{4, 7}, true, 3, -1},
	{"b_small", []int64{6}, false, 0, -1},
	{"b_big", []int64{12}, false, 0, 5},
	{"gain", []int64{}, false, 0, -1},
}

const (
	soapSteps = 20
	soapWD    = 0.1
)

// soapData is the input of a run: initial values, per-step gradients
// (absent: no gradient) and learning rates.
type soapData struct {
	dt    torch.DType
	init  map[string][]float64
	grads []map[string][]float64
	lrs   []float64
}

func newSOAPData(dt torch.DType) *soapData {
	r := rand.New(rand.NewPCG(3, 4))
	randn := func(shape []int64) []float64 {
		n := int64(1)
		for _, s := range shape {
			n *= s
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = r.NormFloat64()
		}
		return v
	}
	d := &soapData{dt: dt, init: map[string][]float64{}}
	for _, sp := range soapSpecs {
		d.init[sp.name] = randn(sp.shape)
	}
	for k := range soapSteps {
		lr := 0.05 // then changed by SetLR every step
		if k >= 10 {
			lr = 0.03 - 0.001*float64(k-10)
		}
		d.lrs = append(d.lrs, lr)
		g := map[string][]float64{}
		for _, sp := range soapSpecs {
			if k >= sp.from && k != sp.skip {
				g[sp.name] = randn(sp.shape)
			}
		}
		d.grads = append(d.grads, g)
	}
	return d
}

// tensor makes a tensor of sp's shape in d's dtype (in the current scope).
func (d *soapData) tensor(sp soapSpec, v []float64) *torch.Tensor {
	return torch.FromFloat64(v).Reshape(sp.shape...).ToDType(d.dt)
}

// params makes the parameters and the two groups (decay, none).
func (d *soapData) params(lr float64) (map[string]*torch.Tensor, []torch.ParamGroup) {
	ps := map[string]*torch.Tensor{}
	groups := []torch.ParamGroup{{LR: lr, WeightDecay: soapWD}, {LR: lr}}
	for _, sp := range soapSpecs {
		p := d.tensor(sp, d.init[sp.name]).Clone().SetRequiresGrad(true)
		ps[sp.name] = p
		if sp.decay {
			groups[0].Params = append(groups[0].Params, p)
		} else {
			groups[1].Params = append(groups[1].Params, p)
		}
	}
	return ps, groups
}

// step sets the gradients of step k (through backward of Σ p·g, as the
// trainer does), the learning rate, and steps (under NoGrad if asked). It
// returns every parameter afterwards as float64.
func (d *soapData) step(t *testing.T, opt Optimizer, ps map[string]*torch.Tensor, k int, noGrad bool) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	err := torch.Try(func() {
		torch.WithScope(func(*torch.Scope) {
			opt.SetLR(d.lrs[k])
			opt.ZeroGrad()
			var loss *torch.Tensor
			for _, sp := range soapSpecs {
				if g, ok := d.grads[k][sp.name]; ok {
					term := ps[sp.name].Mul(d.tensor(sp, g)).Sum(false)
					if loss == nil {
						loss = term
					} else {
						loss = loss.Add(term)
					}
				}
			}
			loss.Backward()
			live := torch.LiveTensors()
			if noGrad {
				torch.NoGrad(opt.Step)
			} else {
				opt.Step()
			}
			if n := torch.LiveTensors(); n != live {
				t.Errorf("step %d: %d live tensors after Step, %d before", k, n, live)
			}
			for n, p := range ps {
				out[n] = p.Detach().ToDType(torch.Float64).Float64s()
			}
		})
	})
	if err != nil {
		t.Fatalf("step %d: %v", k, err)
	}
	return out
}

// soapCase is one parity case: dtype, options, tolerance.
type soapCase struct {
	name string
	dt   torch.DType
	opts SOAPOptions
	tol  float64
}

func soapOptionsA() SOAPOptions {
	o := DefaultSOAPOptions()
	o.PreconditionFrequency, o.MaxPreconditionDim = 3, 8
	return o
}

func soapOptionsB() SOAPOptions {
	o := soapOptionsA()
	sb := 0.8
	o.Beta1, o.Beta2, o.ShampooBeta = 0.9, 0.99, &sb
	o.Precondition1D, o.NormalizeGradient, o.CorrectBias, o.Eps = true, true, false, 1e-6
	return o
}

// TestSOAPMatchesReference runs 20 steps of SOAP and pytorch_optimizer.SOAP
// on the same parameters and gradients, with refreshes every 3 steps, a
// learning rate set every step, two weight-decay groups, parameters that
// miss gradients, and compares every parameter after every step.
func TestSOAPMatchesReference(t *testing.T) {
	requireSOAPReference(t)
	cases := []soapCase{
		{"fp32_defaults", torch.Float32, soapOptionsA(), 1e-5},
		{"fp64_defaults", torch.Float64, soapOptionsA(), 1e-10},
		{"fp32_precondition_1d_normalized", torch.Float32, soapOptionsB(), 1e-5},
		{"fp64_precondition_1d_normalized", torch.Float64, soapOptionsB(), 1e-10},
	}
	var args []string // one reference run for every case: in, cfg, out each
	dirs := make([]string, len(cases))
	for i, c := range cases {
		dirs[i] = t.TempDir()
		args = append(args, newSOAPData(c.dt).writeReferenceInput(t, dirs[i], c.opts)...)
	}
	pyref.Run(t, "soap_ref.py", args...)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			d := newSOAPData(c.dt)
			ref := d.openReference(t, filepath.Join(dirs[i], "out.safetensors"))
			ps, groups := d.params(d.lrs[0])
			opt, err := NewSOAP(groups, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Close()
			live := torch.LiveTensors()
			worst, worstUpd := 0.0, 0.0
			for k := range soapSteps {
				got := d.step(t, opt, ps, k, false)
				for _, sp := range soapSpecs {
					rel, upd := compareSOAP(got[sp.name], ref(k, sp.name), d.init[sp.name])
					worst, worstUpd = math.Max(worst, rel), math.Max(worstUpd, upd)
					if rel > c.tol {
						t.Fatalf("step %d %s: relative error %.3g > %g", k, sp.name, rel, c.tol)
					}
				}
			}
			if n := torch.LiveTensors(); n != live {
				t.Errorf("live tensors %d after the steps, %d before", n, live)
			}
			t.Logf("%s: worst relative error %.3g (of the parameter), %.3g (of its change since step 0)", c.name, worst, worstUpd)
		})
	}
}

// requireSOAPReference skips the test (fails it when the reference is
// required) unless the reference Python has pytorch_optimizer.
func requireSOAPReference(t *testing.T) {
	t.Helper()
	py := pyref.Require(t)
	if out, err := exec.Command(py, "-c", "import pytorch_optimizer").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("the reference Python lacks pytorch_optimizer (make setup installs scripts/requirements.txt): %v %s", err, out)
		if pyref.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// compareSOAP returns max|got − want| relative to max|want| and to the
// largest change of want from init.
func compareSOAP(got, want, init []float64) (rel, relUpdate float64) {
	var diff, scale, change float64
	for i := range want {
		diff = math.Max(diff, math.Abs(got[i]-want[i]))
		scale = math.Max(scale, math.Abs(want[i]))
		change = math.Max(change, math.Abs(want[i]-init[i]))
	}
	if change == 0 {
		change = 1
	}
	return diff / math.Max(scale, 1e-300), diff / change
}

// writeReferenceInput writes soap_ref.py's input for d and options o into
// dir and returns its arguments: in.safetensors, cfg.json, out.safetensors.
func (d *soapData) writeReferenceInput(t *testing.T, dir string, o SOAPOptions) []string {
	t.Helper()
	var files []torch.Named
	var cfgGroups [2]map[string]any
	cfgGroups[0] = map[string]any{"names": []string{}, "weight_decay": soapWD}
	cfgGroups[1] = map[string]any{"names": []string{}, "weight_decay": 0.0}
	var names []string
	torch.WithScope(func(*torch.Scope) {
		for _, sp := range soapSpecs {
			names = append(names, sp.name)
			gi := 1
			if sp.decay {
				gi = 0
			}
			cfgGroups[gi]["names"] = append(cfgGroups[gi]["names"].([]string), sp.name)
			files = append(files, torch.Named{Name: "p." + sp.name, Tensor: d.tensor(sp, d.init[sp.name])})
			for k := range soapSteps {
				if g, ok := d.grads[k][sp.name]; ok {
					files = append(files, torch.Named{Name: fmt.Sprintf("g.%d.%s", k, sp.name), Tensor: d.tensor(sp, g)})
				}
			}
		}
		if err := torch.SaveSafetensors(filepath.Join(dir, "in.safetensors"), files, nil); err != nil {
			t.Fatal(err)
		}
	})
	var shampoo any
	if o.ShampooBeta != nil {
		shampoo = *o.ShampooBeta
	}
	cfg, err := json.Marshal(map[string]any{
		"names": names, "groups": cfgGroups, "steps": soapSteps, "lrs": d.lrs,
		"options": map[string]any{"beta1": o.Beta1, "beta2": o.Beta2, "shampoo_beta": shampoo,
			"precondition_frequency": o.PreconditionFrequency, "max_precondition_dim": o.MaxPreconditionDim,
			"precondition_1d": o.Precondition1D, "correct_bias": o.CorrectBias,
			"normalize_gradient": o.NormalizeGradient, "eps": o.Eps},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cfg.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "cfg.json"), filepath.Join(dir, "out.safetensors")}
}

// openReference opens soap_ref.py's output and returns the reference's
// parameter name after step k.
func (d *soapData) openReference(t *testing.T, path string) func(k int, name string) []float64 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return func(k int, name string) []float64 {
		key := fmt.Sprintf("step%d.%s", k, name)
		b, err := f.Bytes(key)
		if err != nil {
			t.Fatalf("reference lacks %s: %v", key, err)
		}
		if d.dt == torch.Float64 {
			v, _ := safetensors.FromBytes[float64](b)
			return v
		}
		v32, _ := safetensors.FromBytes[float32](b)
		v := make([]float64, len(v32))
		for i, x := range v32 {
			v[i] = float64(x)
		}
		return v
	}
}

// TestSOAPStateRoundTrip runs k steps, writes State to a safetensors file,
// builds a fresh SOAP over the same parameters, loads the file and runs on:
// every parameter after every later step must equal, bit for bit, an
// uninterrupted run's. k = 1 (state started, no update yet), 2, 3 (before
// "late" has state) and 4 and 7 (after refreshes).
func TestSOAPStateRoundTrip(t *testing.T) {
	const steps = 10
	for _, k := range []int{1, 2, 3, 4, 7} {
		t.Run(fmt.Sprintf("k%d", k), func(t *testing.T) {
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			d := newSOAPData(torch.Float32)
			want := soapRun(t, d, 0, steps, nil)
			var got []map[string][]float64
			path := filepath.Join(t.TempDir(), "optim.safetensors")
			got = append(got, soapRun(t, d, 0, k, func(opt *SOAP) { saveSOAP(t, opt, path) })...)
			got = append(got, soapRun(t, d, k, steps, func(opt *SOAP) { loadSOAP(t, opt, path) })...)
			for i := range want {
				for n, v := range want[i] {
					if !slices.Equal(got[i][n], v) {
						t.Fatalf("step %d %s differs after a round trip at step %d", i, n, k)
					}
				}
			}
		})
	}
}

// soapRun steps a fresh SOAP (options A) from step from to to, with the
// parameters of d as they are after step from−1 of an uninterrupted run
// (replayed through a throwaway optimizer), calling hook on the optimizer
// at the end (from == 0) or before the first step (from > 0). Steps run
// under NoGrad when odd, to cover both modes.
func soapRun(t *testing.T, d *soapData, from, to int, hook func(*SOAP)) []map[string][]float64 {
	t.Helper()
	ps, groups := d.params(d.lrs[0])
	var out []map[string][]float64
	if from > 0 { // bring the parameters to step from−1 with another optimizer
		pre, err := NewSOAP(groups, soapOptionsA())
		if err != nil {
			t.Fatal(err)
		}
		for k := range from {
			d.step(t, pre, ps, k, k%2 == 1)
		}
		pre.Close()
	}
	opt, err := NewSOAP(groups, soapOptionsA())
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	if from > 0 && hook != nil {
		hook(opt)
	}
	for k := from; k < to; k++ {
		out = append(out, d.step(t, opt, ps, k, k%2 == 1))
	}
	if from == 0 && hook != nil {
		hook(opt)
	}
	return out
}

func saveSOAP(t *testing.T, opt *SOAP, path string) {
	t.Helper()
	torch.WithScope(func(*torch.Scope) {
		named, meta, err := opt.State()
		if err != nil {
			t.Fatal(err)
		}
		if meta["flavour"] != "soap" {
			t.Fatalf("flavour %q", meta["flavour"])
		}
		if err := torch.SaveSafetensors(path, named, meta); err != nil {
			t.Fatal(err)
		}
	})
}

func loadSOAP(t *testing.T, opt *SOAP, path string) {
	t.Helper()
	torch.WithScope(func(*torch.Scope) {
		named, meta, err := torch.LoadSafetensors(path, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		get := func(name string) (*torch.Tensor, error) {
			for _, n := range named {
				if n.Name == name {
					return n.Tensor, nil
				}
			}
			return nil, fmt.Errorf("no tensor %q", name)
		}
		if err := opt.LoadState(get, meta); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSOAPRefusesBadOptions checks that NewSOAP refuses bad options and
// groups with a one-line error naming the setting.
func TestSOAPRefusesBadOptions(t *testing.T) {
	torchtest.Guard(t)
	s := torch.NewScope()
	defer s.Close()
	p := torch.Zeros([]int64{3, 2}, torch.Float32, torch.CPU)
	ok := []torch.ParamGroup{{Params: []*torch.Tensor{p}, LR: 1e-3, WeightDecay: 0.1}}
	neg := -0.5
	cases := []struct {
		name   string
		edit   func(*SOAPOptions)
		groups []torch.ParamGroup
		want   string
	}{
		{"beta1 1", func(o *SOAPOptions) { o.Beta1 = 1 }, ok, "beta1"},
		{"beta1 negative", func(o *SOAPOptions) { o.Beta1 = -0.1 }, ok, "beta1"},
		{"beta2 NaN", func(o *SOAPOptions) { o.Beta2 = math.NaN() }, ok, "beta2"},
		{"shampoo_beta negative", func(o *SOAPOptions) { o.ShampooBeta = &neg }, ok, "shampoo_beta"},
		{"precondition_frequency 0", func(o *SOAPOptions) { o.PreconditionFrequency = 0 }, ok, "precondition_frequency"},
		{"max_precondition_dim 0", func(o *SOAPOptions) { o.MaxPreconditionDim = 0 }, ok, "max_precondition_dim"},
		{"eps negative", func(o *SOAPOptions) { o.Eps = -1e-8 }, ok, "eps"},
		{"merge_dims", func(o *SOAPOptions) { o.MergeDims = true }, ok, "merge_dims"},
		{"lr negative", nil, []torch.ParamGroup{{Params: ok[0].Params, LR: -1}}, "learning rate"},
		{"weight decay negative", nil, []torch.ParamGroup{{Params: ok[0].Params, LR: 1, WeightDecay: -0.1}}, "weight decay"},
		{"integer parameter", nil, []torch.ParamGroup{{Params: []*torch.Tensor{torch.Zeros([]int64{2}, torch.Int64, torch.CPU)}}}, "floating point"},
		{"nil parameter", nil, []torch.ParamGroup{{Params: []*torch.Tensor{nil}}}, "nil or freed"},
	}
	for _, c := range cases {
		o := DefaultSOAPOptions()
		if c.edit != nil {
			c.edit(&o)
		}
		opt, err := NewSOAP(c.groups, o)
		if err == nil {
			opt.Close()
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q should be one line naming %s", c.name, msg, c.want)
		}
	}
	opt, err := NewSOAP(ok, DefaultSOAPOptions())
	if err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	opt.Close()
}
