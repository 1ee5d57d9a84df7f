package optim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/torch"
	"clm/torch/torchtest"
)

// A parameter of the Muon runs: a matrix for Muon or a tensor for AdamW, in
// group group of its kind.
type muonParamSpec struct {
	name  string
	shape []int64
	muon  bool
	group int
}

var muonSpecs = []muonParamSpec{
	{"w_sq", []int64{16, 16}, true, 0},
	{"w_tall", []int64{24, 8}, true, 0},
	{"w_wide", []int64{6, 20}, true, 1},
	{"w_dead", []int64{8, 12}, true, 1}, // zero gradients at first: eps keeps 0/0 away
	{"emb", []int64{30, 8}, false, 0},   // embedding-like: 2-D, but AdamW's
	{"bias", []int64{16}, false, 1},
	{"gain", []int64{8}, false, 1},
}

// The weight decay of group g of each kind, the gradients left out, and
// the parameter whose gradients are zero on the first steps.
var (
	muonWDs   = [2]float64{0.1, 0}
	adamWDs   = [2]float64{0.05, 0}
	muonSkip  = map[int]string{4: "w_tall", 7: "bias", 13: "w_wide"}
	muonZeros = "w_dead"
)

// muonRun is the input of one run: parameters (owned by the run, outside
// any scope), per-step gradients and learning rates, and the tensors the
// reference reads.
type muonRun struct {
	names    []string
	params   map[string]*torch.Tensor
	matrices []torch.ParamGroup
	rest     []torch.ParamGroup
	grads    []map[string]*torch.Tensor
	lrs      []float64
	files    []torch.Named
	owned    []*torch.Tensor
}

// newMuonRun draws a run of steps steps in dt (float32 or float64). Call it
// outside any scope.
func newMuonRun(dt torch.DType, steps int) *muonRun {
	r := rand.New(rand.NewPCG(3, 4))
	randn := func(shape []int64, scale float64) *torch.Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = scale * r.NormFloat64()
		}
		if dt == torch.Float64 {
			return torch.FromFloat64(v, shape...)
		}
		v32 := make([]float32, n)
		for i, x := range v {
			v32[i] = float32(x)
		}
		return torch.FromFloat32(v32, shape...)
	}
	run := &muonRun{params: map[string]*torch.Tensor{}}
	run.matrices = []torch.ParamGroup{{WeightDecay: muonWDs[0]}, {WeightDecay: muonWDs[1]}}
	run.rest = []torch.ParamGroup{{WeightDecay: adamWDs[0]}, {WeightDecay: adamWDs[1]}}
	for _, sp := range muonSpecs {
		init := run.own(randn(sp.shape, 0.5))
		p := run.own(init.Clone().SetRequiresGrad(true))
		run.params[sp.name] = p
		run.names = append(run.names, sp.name)
		run.files = append(run.files, torch.Named{Name: "p." + sp.name, Tensor: init})
		groups := run.rest
		if sp.muon {
			groups = run.matrices
		}
		groups[sp.group].Params = append(groups[sp.group].Params, p)
	}
	for k := range steps {
		lr := 0.02 * (1 - 0.03*float64(k))
		if k >= steps/2 {
			lr = 0.006 // a change of schedule mid-run
		}
		run.lrs = append(run.lrs, lr)
		run.grads = append(run.grads, map[string]*torch.Tensor{})
		for _, sp := range muonSpecs {
			if muonSkip[k] == sp.name {
				continue
			}
			scale := 0.1 * float64(1+k%3)
			if sp.name == muonZeros && k < 2 {
				scale = 0
			}
			g := run.own(randn(sp.shape, scale))
			run.grads[k][sp.name] = g
			run.files = append(run.files, torch.Named{Name: fmt.Sprintf("g.%d.%s", k, sp.name), Tensor: g})
		}
	}
	for i := range run.matrices {
		run.matrices[i].LR = run.lrs[0]
	}
	for i := range run.rest {
		run.rest[i].LR = run.lrs[0]
	}
	return run
}

func (run *muonRun) own(t *torch.Tensor) *torch.Tensor {
	run.owned = append(run.owned, t)
	return t
}

// free releases the run's tensors.
func (run *muonRun) free() {
	for _, t := range run.owned {
		t.Free()
	}
}

// step runs step k of opt: gradients through backward of Σ p·g, then Step,
// which must leave the live tensor count as it found it. It returns every
// parameter after the step, in float64, under the reference's names.
func (run *muonRun) step(t *testing.T, opt Optimizer, k int, out map[string][]float64) {
	t.Helper()
	opt.SetLR(run.lrs[k])
	torch.WithScope(func(*torch.Scope) {
		opt.ZeroGrad()
		var loss *torch.Tensor
		for _, n := range run.names {
			if g, ok := run.grads[k][n]; ok {
				term := run.params[n].Mul(g).Sum(false)
				if loss == nil {
					loss = term
				} else {
					loss = loss.Add(term)
				}
			}
		}
		loss.Backward()
		before := torch.LiveTensors()
		if err := torch.Try(opt.Step); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		if after := torch.LiveTensors(); after != before {
			t.Errorf("step %d: live tensors %d before Step, %d after", k, before, after)
		}
		for _, n := range run.names {
			out[fmt.Sprintf("step%d.%s", k, n)] = run.params[n].Detach().ToDType(torch.Float64).Float64s()
		}
	})
}

// A reference case: the dtype and Muon's options. With inOut the
// non-square matrices are stored [in, out] (MuonOptions.InOut) and the
// reference runs torch's Muon on their transposes, [out, in].
type muonCase struct {
	name     string
	dt       torch.DType
	adjust   string
	nesterov bool
	momentum float64
	nsSteps  int
	inOut    bool
}

func (c muonCase) options() MuonOptions {
	o := DefaultMuonOptions()
	o.AdjustLR, o.Nesterov, o.Momentum, o.NSSteps, o.InOut = c.adjust, c.nesterov, c.momentum, c.nsSteps, c.inOut
	o.AdamWBeta1, o.AdamWBeta2, o.AdamWEps = 0.9, 0.95, 1e-8
	return o
}

const muonRefSteps = 20

// TestMuonMatchesReference runs 20 steps of Muon (square, tall and wide
// matrices in two groups with different weight decay) with AdamW (an
// embedding-like matrix and 1-D tensors, two groups), gradients missing on
// some steps and a learning-rate change mid-run, and compares every
// parameter after every step with torch.optim.Muon + torch.optim.AdamW:
// within 1e-5 (fp32) or 1e-9 (fp64) of the tensor's scale, and bit for bit,
// since on the CPU both run the same libtorch kernels in the same order
// (Newton–Schulz in bfloat16 included).
func TestMuonMatchesReference(t *testing.T) {
	pyref.Require(t)
	cases := []muonCase{
		{"fp32_original_nesterov", torch.Float32, MuonAdjustOriginal, true, 0.95, 5, false},
		{"fp32_match_rms_adamw_plain", torch.Float32, MuonAdjustMatchRMSAdamW, false, 0.95, 5, false},
		{"fp32_spectral_unclamped_m0.9_ns3", torch.Float32, MuonAdjustSpectralUnclamped, true, 0.9, 3, false},
		{"fp64_match_rms_adamw_nesterov", torch.Float64, MuonAdjustMatchRMSAdamW, true, 0.95, 5, false},
		{"fp64_original_plain", torch.Float64, MuonAdjustOriginal, false, 0.95, 5, false},
		// clm's layout: √max(1, fan-out/fan-in) from the transpose.
		{"fp32_original_in_out", torch.Float32, MuonAdjustOriginal, true, 0.95, 5, true},
		{"fp64_spectral_unclamped_in_out", torch.Float64, MuonAdjustSpectralUnclamped, true, 0.95, 5, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			torchtest.Guard(t)
			run := newMuonRun(c.dt, muonRefSteps)
			defer run.free()
			got := muonGoRun(t, run, c.options(), muonRefSteps)
			want := muonReference(t, run, c)
			tol := 1e-5
			if c.dt == torch.Float64 {
				tol = 1e-9
			}
			worst, diff := compareMuon(t, got, want, tol)
			t.Logf("%s: %d tensors over %d steps, worst error %.3g of scale, %d values not bitwise equal",
				c.name, len(got), muonRefSteps, worst, diff)
		})
	}
}

// TestMuonDefaultsMatchTorch checks DefaultMuonOptions against the
// defaults of the installed torch.optim.Muon and torch.optim.AdamW.
func TestMuonDefaultsMatchTorch(t *testing.T) {
	pyref.Require(t)
	var want struct {
		Momentum       float64    `json:"momentum"`
		Nesterov       bool       `json:"nesterov"`
		NSCoefficients [3]float64 `json:"ns_coefficients"`
		NSSteps        int        `json:"ns_steps"`
		Eps            float64    `json:"eps"`
		AdjustLR       string     `json:"adjust_lr_fn"`
		Betas          [2]float64 `json:"betas"`
		AdamWEps       float64    `json:"adamw_eps"`
	}
	if err := json.Unmarshal(pyref.Run(t, "muon_ref.py", "--defaults"), &want); err != nil {
		t.Fatal(err)
	}
	got := DefaultMuonOptions()
	w := MuonOptions{Momentum: want.Momentum, Nesterov: want.Nesterov, NSCoefficients: want.NSCoefficients,
		NSSteps: want.NSSteps, Eps: want.Eps, AdjustLR: want.AdjustLR,
		AdamWBeta1: want.Betas[0], AdamWBeta2: want.Betas[1], AdamWEps: want.AdamWEps}
	if got != w {
		t.Errorf("DefaultMuonOptions() = %+v, torch's %+v", got, w)
	}
}

// muonGoRun runs steps steps of Muon over run and returns the parameters
// after every step.
func muonGoRun(t *testing.T, run *muonRun, o MuonOptions, steps int) map[string][]float64 {
	t.Helper()
	opt, err := NewMuon(run.matrices, run.rest, o)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	out := map[string][]float64{}
	for k := range steps {
		run.step(t, opt, k, out)
	}
	return out
}

// muonReference runs scripts/reference/muon_ref.py on run and returns its
// parameters after every step, in float64.
func muonReference(t *testing.T, run *muonRun, c muonCase) map[string][]float64 {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := torch.SaveSafetensors(in, run.files, nil); err != nil {
		t.Fatal(err)
	}
	groups := func(kind bool) []map[string]any {
		wds := adamWDs
		if kind {
			wds = muonWDs
		}
		out := []map[string]any{{"names": []string{}, "weight_decay": wds[0]}, {"names": []string{}, "weight_decay": wds[1]}}
		for _, sp := range muonSpecs {
			if sp.muon == kind {
				out[sp.group]["names"] = append(out[sp.group]["names"].([]string), sp.name)
			}
		}
		return out
	}
	o := c.options()
	cfg, err := json.Marshal(map[string]any{
		"names": run.names, "steps": len(run.lrs), "lrs": run.lrs,
		"muon_groups": groups(true), "adamw_groups": groups(false),
		"momentum": o.Momentum, "nesterov": o.Nesterov, "ns_coefficients": o.NSCoefficients,
		"ns_steps": o.NSSteps, "eps": o.Eps, "adjust_lr_fn": o.AdjustLR,
		"betas": []float64{o.AdamWBeta1, o.AdamWBeta2}, "adamw_eps": o.AdamWEps,
		"in_out": inOutNames(c),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "cfg.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "out.safetensors")
	pyref.Run(t, "muon_ref.py", in, cfgPath, outPath)
	return readFloat64s(t, outPath)
}

// inOutNames are the matrices the reference transposes: with c.inOut the
// Muon matrices that are not square (a square one reads the same shape
// either way).
func inOutNames(c muonCase) []string {
	names := []string{}
	for _, sp := range muonSpecs {
		if c.inOut && sp.muon && sp.shape[0] != sp.shape[1] {
			names = append(names, sp.name)
		}
	}
	return names
}

// readFloat64s reads every tensor of a safetensors file as float64 values.
func readFloat64s(t *testing.T, path string) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	torch.WithScope(func(*torch.Scope) {
		ts, _, err := torch.LoadSafetensors(path, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ts {
			out[n.Name] = n.Tensor.ToDType(torch.Float64).Float64s()
		}
	})
	return out
}

// compareMuon fails unless every tensor of got lies within tol of want's
// scale (its largest magnitude) and equals it bit for bit; it returns the
// worst error relative to scale and the number of values that differ.
func compareMuon(t *testing.T, got, want map[string][]float64, tol float64) (float64, int) {
	t.Helper()
	worst, diff := 0.0, 0
	for name, g := range got {
		w, ok := want[name]
		if !ok || len(w) != len(g) {
			t.Fatalf("reference lacks %s or differs in size", name)
		}
		scale := 0.0
		for _, v := range w {
			scale = math.Max(scale, math.Abs(v))
		}
		for i := range w {
			e := math.Abs(g[i]-w[i]) / scale
			if !(e <= tol) {
				t.Fatalf("%s[%d]: Go %v, PyTorch %v (%.3g of scale %.3g)", name, i, g[i], w[i], e, scale)
			}
			worst = math.Max(worst, e)
			if g[i] != w[i] {
				diff++
			}
		}
	}
	if diff > 0 {
		t.Errorf("%d values within tolerance but not bitwise equal to PyTorch's", diff)
	}
	return worst, diff
}

// TestMuonStateRoundTrip runs k steps, saves State to a safetensors file,
// builds a fresh Muon over the same parameters, loads it and continues; the
// parameters must equal, bit for bit, those of a run without the round trip.
func TestMuonStateRoundTrip(t *testing.T) {
	const steps = 12
	for _, c := range []muonCase{
		{"fp32_nesterov_k5", torch.Float32, MuonAdjustOriginal, true, 0.95, 5, false},
		{"fp64_plain_k8", torch.Float64, MuonAdjustMatchRMSAdamW, false, 0.9, 5, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			torchtest.Guard(t)
			k := 5
			if c.dt == torch.Float64 {
				k = 8
			}
			straight := newMuonRun(c.dt, steps)
			defer straight.free()
			want := muonGoRun(t, straight, c.options(), steps)
			resumed := newMuonRun(c.dt, steps)
			defer resumed.free()
			got := muonResumedRun(t, resumed, c.options(), steps, k)
			for name, w := range want {
				for i := range w {
					if got[name][i] != w[i] {
						t.Fatalf("%s[%d]: resumed %v, straight %v", name, i, got[name][i], w[i])
					}
				}
			}
		})
	}
}

// muonResumedRun is muonGoRun with a checkpoint round trip after step k.
func muonResumedRun(t *testing.T, run *muonRun, o MuonOptions, steps, k int) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	opt, err := NewMuon(run.matrices, run.rest, o)
	if err != nil {
		t.Fatal(err)
	}
	for s := range k {
		run.step(t, opt, s, out)
	}
	path := filepath.Join(t.TempDir(), "opt.safetensors")
	torch.WithScope(func(*torch.Scope) {
		ts, meta, err := opt.State()
		if err != nil {
			t.Fatal(err)
		}
		if err := torch.SaveSafetensors(path, ts, meta); err != nil {
			t.Fatal(err)
		}
	})
	opt.Close()
	opt, err = NewMuon(run.matrices, run.rest, o)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	loadMuonState(t, opt, path)
	for s := k; s < steps; s++ {
		run.step(t, opt, s, out)
	}
	return out
}

// loadMuonState loads the state file path into opt.
func loadMuonState(t *testing.T, opt *Muon, path string) {
	t.Helper()
	torch.WithScope(func(*torch.Scope) {
		ts, meta, err := torch.LoadSafetensors(path, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if meta["flavour"] != "muon" || meta["adamw.flavour"] != "adamw_torch" || meta["adamw.steps"] == "" {
			t.Errorf("metadata %v", meta)
		}
		if err := opt.LoadState(namedGetter(ts), meta); err != nil {
			t.Fatal(err)
		}
	})
}

// namedGetter returns LoadState's get over ts.
func namedGetter(ts []torch.Named) func(string) (*torch.Tensor, error) {
	return func(name string) (*torch.Tensor, error) {
		for _, n := range ts {
			if n.Name == name {
				return n.Tensor, nil
			}
		}
		return nil, fmt.Errorf("no tensor %s", name)
	}
}

// TestMuonRefuses checks that bad options, bad groups and tensors that are
// not 2-D matrices are refused with a one-line error, and leak nothing.
func TestMuonRefuses(t *testing.T) {
	torchtest.Guard(t)
	m := torch.Zeros([]int64{4, 3}, torch.Float32, torch.CPU)
	vec := torch.Zeros([]int64{4}, torch.Float32, torch.CPU)
	cube := torch.Zeros([]int64{2, 2, 2}, torch.Float32, torch.CPU)
	scalar := torch.Zeros(nil, torch.Float32, torch.CPU)
	ints := torch.Zeros([]int64{2, 2}, torch.Int64, torch.CPU)
	freed := torch.Zeros([]int64{2, 2}, torch.Float32, torch.CPU)
	freed.Free()
	defer func() {
		for _, x := range []*torch.Tensor{m, vec, cube, scalar, ints} {
			x.Free()
		}
	}()
	opt := func(f func(*MuonOptions)) MuonOptions { o := DefaultMuonOptions(); f(&o); return o }
	good := []torch.ParamGroup{{Params: []*torch.Tensor{m}, LR: 0.02}}
	cases := []struct {
		name     string
		matrices []torch.ParamGroup
		o        MuonOptions
		want     string
	}{
		{"momentum_negative", good, opt(func(o *MuonOptions) { o.Momentum = -0.1 }), "momentum"},
		{"momentum_one", good, opt(func(o *MuonOptions) { o.Momentum = 1 }), "momentum"},
		{"momentum_nan", good, opt(func(o *MuonOptions) { o.Momentum = math.NaN() }), "momentum"},
		{"ns_steps_negative", good, opt(func(o *MuonOptions) { o.NSSteps = -1 }), "ns_steps"},
		{"ns_steps_100", good, opt(func(o *MuonOptions) { o.NSSteps = 100 }), "ns_steps"},
		{"eps_negative", good, opt(func(o *MuonOptions) { o.Eps = -1e-7 }), "eps"},
		{"eps_nan", good, opt(func(o *MuonOptions) { o.Eps = math.NaN() }), "eps"},
		{"coefficient_inf", good, opt(func(o *MuonOptions) { o.NSCoefficients[1] = math.Inf(-1) }), "ns_coefficients"},
		{"adjust_unknown", good, opt(func(o *MuonOptions) { o.AdjustLR = "rms" }), "adjust_lr_fn"},
		{"adamw_beta1", good, opt(func(o *MuonOptions) { o.AdamWBeta1 = 1 }), "betas"},
		{"adamw_eps", good, opt(func(o *MuonOptions) { o.AdamWEps = -1 }), "eps"},
		{"lr_negative", []torch.ParamGroup{{Params: []*torch.Tensor{m}, LR: -1}}, DefaultMuonOptions(), "learning rate"},
		{"wd_nan", []torch.ParamGroup{{Params: []*torch.Tensor{m}, WeightDecay: math.NaN()}}, DefaultMuonOptions(), "weight decay"},
		{"vector", []torch.ParamGroup{{Params: []*torch.Tensor{m, vec}}}, DefaultMuonOptions(), "2-D"},
		{"cube", []torch.ParamGroup{{}, {Params: []*torch.Tensor{cube}}}, DefaultMuonOptions(), "2-D"},
		{"scalar", []torch.ParamGroup{{Params: []*torch.Tensor{scalar}}}, DefaultMuonOptions(), "2-D"},
		{"int", []torch.ParamGroup{{Params: []*torch.Tensor{ints}}}, DefaultMuonOptions(), "floating point"},
		{"freed", []torch.ParamGroup{{Params: []*torch.Tensor{freed}}}, DefaultMuonOptions(), "freed"},
	}
	for _, c := range cases {
		o, err := NewMuon(c.matrices, []torch.ParamGroup{{Params: []*torch.Tensor{vec}}}, c.o)
		switch {
		case err == nil:
			o.Close()
			t.Errorf("%s: accepted", c.name)
		case !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "muon") || strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error %q, want one line from muon about %s", c.name, err, c.want)
		}
	}
}

// TestMuonLoadStateRefuses checks that LoadState refuses a missing buffer,
// a buffer of the wrong shape and an AdamW part of the wrong flavour.
func TestMuonLoadStateRefuses(t *testing.T) {
	torchtest.Guard(t)
	run := newMuonRun(torch.Float32, 1)
	defer run.free()
	opt, err := NewMuon(run.matrices, run.rest, DefaultMuonOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	torch.WithScope(func(*torch.Scope) {
		ts, meta, err := opt.State()
		if err != nil {
			t.Fatal(err)
		}
		if want := len(muonSpecs) - 3; len(ts) != want { // buffers; AdamW has no state before a step
			t.Errorf("%d state tensors, want %d", len(ts), want)
		}
		missing := namedGetter(ts[1:])
		if err := opt.LoadState(missing, meta); err == nil {
			t.Error("a missing buffer was accepted")
		}
		wrong := append([]torch.Named{{Name: ts[0].Name, Tensor: torch.Zeros([]int64{3, 3}, torch.Float32, torch.CPU)}}, ts[1:]...)
		if err := opt.LoadState(namedGetter(wrong), meta); err == nil || !strings.Contains(err.Error(), "momentum_buffer") {
			t.Errorf("a buffer of the wrong shape: %v", err)
		}
		hf := map[string]string{"adamw.flavour": "adamw_hf", "adamw.steps": meta["adamw.steps"]}
		if err := opt.LoadState(namedGetter(ts), hf); err == nil {
			t.Error("an adamw_hf part was accepted")
		}
		if err := opt.LoadState(namedGetter(ts), meta); err != nil {
			t.Errorf("its own state: %v", err)
		}
		// The layout: a state of the other one is refused; one without the
		// key is the [out, in] reading of clm's Muon before it had it.
		inOut := DefaultMuonOptions()
		inOut.InOut = true
		opt2, err := NewMuon(run.matrices, run.rest, inOut)
		if err != nil {
			t.Fatal(err)
		}
		defer opt2.Close()
		if err := opt2.LoadState(namedGetter(ts), meta); err == nil || !strings.Contains(err.Error(), "start it afresh") {
			t.Errorf("an out_in state into an in_out Muon: %v", err)
		}
		old := maps.Clone(meta)
		delete(old, "layout")
		if err := opt2.LoadState(namedGetter(ts), old); err == nil {
			t.Error("a state without a layout was accepted by an in_out Muon")
		}
		if err := opt.LoadState(namedGetter(ts), old); err != nil {
			t.Errorf("a state without a layout into an out_in Muon: %v", err)
		}
		ts2, meta2, err := opt2.State()
		if err != nil {
			t.Fatal(err)
		}
		if meta2["layout"] != "in_out" {
			t.Errorf("an in_out Muon's state says layout %q", meta2["layout"])
		}
		if err := opt.LoadState(namedGetter(ts2), meta2); err == nil {
			t.Error("an in_out state was accepted by an out_in Muon")
		}
	})
}
