package torch

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/safetensors"
)

// TestAdamWParity runs 10 steps of both AdamW flavours, with grad-norm
// clipping, a changing learning rate, two parameter groups (decay and none)
// and a parameter that misses its gradient on one step, and compares every
// parameter after every step with PyTorch (torch.optim.AdamW and the
// reference AdamWHF) to 1e-6.
func TestAdamWParity(t *testing.T) {
	pyref.Require(t)
	for _, flavour := range []AdamWFlavour{AdamWTorch, AdamWHF} {
		t.Run(flavour.String(), func(t *testing.T) {
			leakCheck(t)
			testAdamWParity(t, flavour)
		})
	}
}

// adamwParityRun is the input of one AdamW parity run: the parameters (in
// order, split into a decay and a no-decay group), the learning rate and the
// gradients of every step, and the tensors the reference reads.
type adamwParityRun struct {
	params                   map[string]*Tensor
	names                    []string
	decay, noDecay           []*Tensor
	decayNames, noDecayNames []string
	lrs                      []float64
	grads                    []map[string]*Tensor // per step; b1 lacks one on step 3
	files                    []Named
}

const (
	adamwParitySteps                               = 10
	adamwWD, adamwB1, adamwB2, adamwEps, adamwClip = 0.1, 0.9, 0.999, 1e-8, 1.0
)

// newAdamWParityRun draws the parameters and gradients (in the current scope).
func newAdamWParityRun() *adamwParityRun {
	r := rand.New(rand.NewPCG(1, 2))
	type param struct {
		name  string
		shape []int64
		decay bool
	}
	specs := []param{{"w1", []int64{8, 6}, true}, {"b1", []int64{6}, false}, {"w2", []int64{6, 3}, true}, {"gain", nil, false}}
	randn := func(shape []int64, scale float64) *Tensor {
		v := make([]float64, numel(shape))
		for i := range v {
			v[i] = scale * r.NormFloat64()
		}
		return FromFloat64(v, shape...).ToDType(Float32)
	}
	run := &adamwParityRun{params: map[string]*Tensor{}}
	for _, sp := range specs {
		p := randn(sp.shape, 1)
		run.files = append(run.files, Named{"p." + sp.name, p.Clone()})
		p.SetRequiresGrad(true)
		run.params[sp.name] = p
		run.names = append(run.names, sp.name)
		if sp.decay {
			run.decay, run.decayNames = append(run.decay, p), append(run.decayNames, sp.name)
		} else {
			run.noDecay, run.noDecayNames = append(run.noDecay, p), append(run.noDecayNames, sp.name)
		}
	}
	const steps = adamwParitySteps
	run.lrs = make([]float64, steps)
	run.grads = make([]map[string]*Tensor, steps)
	for k := range steps {
		run.lrs[k] = 1e-2 * float64(k+1) / steps
		run.grads[k] = map[string]*Tensor{}
		scale := 0.05
		if k%3 == 0 {
			scale = 2 // clipping active
		}
		for _, sp := range specs {
			if k == 3 && sp.name == "b1" {
				continue // no gradient: skipped by the optimizer
			}
			g := randn(sp.shape, scale)
			run.grads[k][sp.name] = g
			run.files = append(run.files, Named{fmt.Sprintf("g.%d.%s", k, sp.name), g})
		}
	}
	return run
}

// steps runs the Go optimizer over run and returns the clipped norm and every
// parameter after every step, under the reference's names.
func (run *adamwParityRun) steps(t *testing.T, flavour AdamWFlavour) map[string][]float32 {
	t.Helper()
	opt, err := NewAdamW(flavour, adamwB1, adamwB2, adamwEps, []ParamGroup{
		{Params: run.decay, LR: run.lrs[0], WeightDecay: adamwWD},
		{Params: run.noDecay, LR: run.lrs[0], WeightDecay: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	goOut := map[string][]float32{}
	for k := range adamwParitySteps {
		WithScope(func(*Scope) {
			opt.SetLR(run.lrs[k])
			opt.ZeroGrad()
			var loss *Tensor
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
			all := make([]*Tensor, 0, len(run.names))
			for _, n := range run.names {
				all = append(all, run.params[n])
			}
			norm := ClipGradNorm(all, adamwClip, 2)
			goOut[fmt.Sprintf("norm%d", k)] = []float32{float32(norm.Item())}
			opt.Step()
			for _, n := range run.names {
				goOut[fmt.Sprintf("step%d.%s", k, n)] = run.params[n].Detach().Float32s()
			}
		})
	}
	if st := opt.State(1, 0); st.Steps != adamwParitySteps-1 { // b1 missed one step
		t.Errorf("b1 steps %d, want %d", st.Steps, adamwParitySteps-1)
	}
	return goOut
}

// reference runs scripts/reference/optim_check.py on run and returns its
// output file.
func (run *adamwParityRun) reference(t *testing.T, flavour AdamWFlavour) *safetensors.File {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := SaveSafetensors(in, run.files, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"flavour": flavour.String(), "names": run.names, "steps": adamwParitySteps, "lrs": run.lrs,
		"beta1": adamwB1, "beta2": adamwB2, "eps": adamwEps, "max_norm": adamwClip,
		"groups": []map[string]any{{"names": run.decayNames, "weight_decay": adamwWD}, {"names": run.noDecayNames, "weight_decay": 0}},
	})
	cfgPath := filepath.Join(dir, "cfg.json")
	os.WriteFile(cfgPath, cfg, 0o644)
	out := filepath.Join(dir, "out.safetensors")
	pyref.Run(t, "optim_check.py", in, cfgPath, out)
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// compareAdamWReference fails unless every value of goOut is within 1e-6 of
// the reference's, and returns the largest difference.
func compareAdamWReference(t *testing.T, f *safetensors.File, goOut map[string][]float32) float64 {
	t.Helper()
	maxErr := 0.0
	for name, got := range goOut {
		b, err := f.Bytes(name)
		if err != nil {
			t.Fatalf("reference lacks %s: %v", name, err)
		}
		want, _ := safetensors.FromBytes[float32](b)
		for i := range want {
			d := float64(got[i] - want[i])
			if d < 0 {
				d = -d
			}
			if d > maxErr {
				maxErr = d
			}
			if d > 1e-6 {
				t.Fatalf("%s[%d]: Go %v, PyTorch %v", name, i, got[i], want[i])
			}
		}
	}
	return maxErr
}

func testAdamWParity(t *testing.T, flavour AdamWFlavour) {
	s := NewScope() // owns parameters, gradients and inputs; one inner scope per step
	defer s.Close()
	run := newAdamWParityRun()
	goOut := run.steps(t, flavour)
	maxErr := compareAdamWReference(t, run.reference(t, flavour), goOut)
	t.Logf("%s: %d steps, %d tensors compared, max abs error %.3g", flavour, adamwParitySteps, len(goOut), maxErr)
}
