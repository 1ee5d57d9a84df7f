package torch

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"clm/internal/pyref"
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

func testAdamWParity(t *testing.T, flavour AdamWFlavour) {
	const steps = 10
	s := NewScope() // owns parameters, gradients and inputs; one inner scope per step
	defer s.Close()
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
	var files []Named
	params := map[string]*Tensor{}
	var names []string
	var decay, noDecay []*Tensor
	var decayNames, noDecayNames []string
	for _, sp := range specs {
		p := randn(sp.shape, 1)
		files = append(files, Named{"p." + sp.name, p.Clone()})
		p.SetRequiresGrad(true)
		params[sp.name] = p
		names = append(names, sp.name)
		if sp.decay {
			decay, decayNames = append(decay, p), append(decayNames, sp.name)
		} else {
			noDecay, noDecayNames = append(noDecay, p), append(noDecayNames, sp.name)
		}
	}
	lrs := make([]float64, steps)
	grads := make([]map[string]*Tensor, steps)
	for k := range steps {
		lrs[k] = 1e-2 * float64(k+1) / steps
		grads[k] = map[string]*Tensor{}
		scale := 0.05
		if k%3 == 0 {
			scale = 2 // clipping active
		}
		for _, sp := range specs {
			if k == 3 && sp.name == "b1" {
				continue // no gradient: skipped by the optimizer
			}
			g := randn(sp.shape, scale)
			grads[k][sp.name] = g
			files = append(files, Named{fmt.Sprintf("g.%d.%s", k, sp.name), g})
		}
	}
	const wd, b1, b2, eps, maxNorm = 0.1, 0.9, 0.999, 1e-8, 1.0
	opt, err := NewAdamW(flavour, b1, b2, eps, []ParamGroup{
		{Params: decay, LR: lrs[0], WeightDecay: wd},
		{Params: noDecay, LR: lrs[0], WeightDecay: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	goOut := map[string][]float32{}
	for k := range steps {
		WithScope(func(*Scope) {
			opt.SetLR(lrs[k])
			opt.ZeroGrad()
			var loss *Tensor
			for _, n := range names {
				if g, ok := grads[k][n]; ok {
					term := params[n].Mul(g).Sum(false)
					if loss == nil {
						loss = term
					} else {
						loss = loss.Add(term)
					}
				}
			}
			loss.Backward()
			all := make([]*Tensor, 0, len(names))
			for _, n := range names {
				all = append(all, params[n])
			}
			norm := ClipGradNorm(all, maxNorm, 2)
			goOut[fmt.Sprintf("norm%d", k)] = []float32{float32(norm.Item())}
			opt.Step()
			for _, n := range names {
				goOut[fmt.Sprintf("step%d.%s", k, n)] = params[n].Detach().Float32s()
			}
		})
	}
	if st := opt.State(1, 0); st.Steps != steps-1 { // b1 missed one step
		t.Errorf("b1 steps %d, want %d", st.Steps, steps-1)
	}

	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := SaveSafetensors(in, files, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"flavour": flavour.String(), "names": names, "steps": steps, "lrs": lrs,
		"beta1": b1, "beta2": b2, "eps": eps, "max_norm": maxNorm,
		"groups": []map[string]any{{"names": decayNames, "weight_decay": wd}, {"names": noDecayNames, "weight_decay": 0}},
	})
	cfgPath := filepath.Join(dir, "cfg.json")
	os.WriteFile(cfgPath, cfg, 0o644)
	out := filepath.Join(dir, "out.safetensors")
	pyref.Run(t, "optim_check.py", in, cfgPath, out)
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
	t.Logf("%s: %d steps, %d tensors compared, max abs error %.3g", flavour, steps, len(goOut), maxErr)
}
