package torch

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// adamwSnapshot is every parameter and state tensor (as raw bytes) and step
// count after one optimizer step.
type adamwSnapshot struct {
	names  []string
	tensor map[string]*Tensor // CPU copies, owned by the test's scope
	steps  map[string]int64
}

// runAdamW runs 10 steps of AdamW in mode over two groups (with and without
// weight decay; the second mixes float32 and float64 parameters, so the
// multi-tensor paths bucket by dtype), with a learning rate that changes
// every step and, with skips, a parameter that misses its gradient on steps
// 2, 3 and 7 (so parameters of one bucket carry different step counts).
// Inputs are drawn from the same seed for every mode. The snapshots belong
// to the caller's scope.
func runAdamW(t *testing.T, flavour AdamWFlavour, mode AdamWMode, dev Device, skips bool) []adamwSnapshot {
	t.Helper()
	const steps = 10
	r := rand.New(rand.NewPCG(7, 11))
	type spec struct {
		name  string
		shape []int64
		dt    DType
		group int
	}
	specs := []spec{
		{"w1", []int64{8, 6}, Float32, 0}, {"w2", []int64{6, 3}, Float32, 0}, {"w64", []int64{5}, Float64, 0},
		{"big", []int64{64, 48}, Float32, 0}, // long enough for the kernels' vectorised loops
		{"b1", []int64{6}, Float32, 1}, {"gain", nil, Float32, 1}, {"b64", []int64{3}, Float64, 1}, {"b2", []int64{3}, Float32, 1},
	}
	randn := func(shape []int64, scale float64, dt DType) *Tensor {
		v := make([]float64, numel(shape))
		for i := range v {
			v[i] = scale * r.NormFloat64()
		}
		return FromFloat64(v, shape...).To(dt, dev)
	}
	params := map[string]*Tensor{}
	groups := [2][]*Tensor{}
	for _, sp := range specs {
		p := randn(sp.shape, 1, sp.dt).Detach().SetRequiresGrad(true)
		params[sp.name] = p
		groups[sp.group] = append(groups[sp.group], p)
	}
	opt, err := NewAdamW(flavour, 0.9, 0.999, 1e-8, []ParamGroup{
		{Params: groups[0], LR: 1e-3, WeightDecay: 0.1},
		{Params: groups[1], LR: 1e-3, WeightDecay: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	if err := opt.SetForeach(mode); err != nil {
		t.Fatal(err)
	}
	if got := opt.Foreach(); got != mode {
		t.Fatalf("mode %v after SetForeach(%v)", got, mode)
	}
	var out []adamwSnapshot
	for k := range steps {
		// The gradients of step k (drawn for every parameter so that the
		// random stream does not depend on which are skipped).
		grads := map[string]*Tensor{}
		for _, sp := range specs {
			scale := 0.05
			if k%3 == 0 {
				scale = 2
			}
			grads[sp.name] = randn(sp.shape, scale, sp.dt)
		}
		opt.SetGroupLR(0, 1e-2*float64(k+1)/steps)
		opt.SetGroupLR(1, 3e-3*float64(steps-k)/steps)
		WithScope(func(*Scope) {
			opt.ZeroGrad()
			for _, sp := range specs {
				if skips && sp.name == "b1" && (k == 2 || k == 3 || k == 7) {
					continue
				}
				params[sp.name].Mul(grads[sp.name]).Sum(false).Backward()
			}
			opt.Step()
		})
		out = append(out, snapshotAdamW(opt, params))
	}
	opt.ZeroGrad()
	want := int64(steps)
	if skips {
		want -= 3
	}
	if got := out[steps-1].steps["b1"]; got != want {
		t.Errorf("b1 steps %d, want %d", got, want)
	}
	return out
}

// snapshotAdamW copies every parameter of opt's two groups and its state
// (moments and step count) to the CPU, in the caller's scope; params names
// the parameters.
func snapshotAdamW(opt *AdamW, params map[string]*Tensor) adamwSnapshot {
	snap := adamwSnapshot{tensor: map[string]*Tensor{}, steps: map[string]int64{}}
	for g := range 2 {
		for i, p := range opt.Group(g) {
			name := ""
			for n, q := range params {
				if q == p {
					name = n
				}
			}
			st := opt.State(g, i)
			snap.names = append(snap.names, name)
			snap.tensor[name] = p.Detach().ToDevice(CPU).Clone()
			snap.tensor[name+".exp_avg"] = st.ExpAvg.ToDevice(CPU).Clone()
			snap.tensor[name+".exp_avg_sq"] = st.ExpAvgSq.ToDevice(CPU).Clone()
			st.ExpAvg.Free()
			st.ExpAvgSq.Free()
			snap.steps[name] = st.Steps
		}
	}
	return snap
}

// compareAdamW checks two trajectories: bitwise when tol == 0, else every
// element within tol (scaled by max(1, |reference|)).
func compareAdamW(t *testing.T, got, want []adamwSnapshot, tol float64) (maxDiff float64) {
	t.Helper()
	for k := range want {
		for name, w := range want[k].tensor {
			g := got[k].tensor[name]
			if tol == 0 {
				if !bytes.Equal(g.Bytes(), w.Bytes()) {
					t.Fatalf("step %d, %s: not bitwise equal to the loop (%v)", k, name, allClose(g, w, 0))
				}
				continue
			}
			if err := allClose(g, w, tol); err != nil {
				t.Fatalf("step %d, %s: %v", k, name, err)
			}
			d := g.ToDType(Float64).Sub(w.ToDType(Float64)).Abs().Max(AllDims, false).Item()
			maxDiff = max(maxDiff, d)
		}
		for name, s := range want[k].steps {
			if got[k].steps[name] != s {
				t.Fatalf("step %d, %s: step count %d, loop %d", k, name, got[k].steps[name], s)
			}
		}
	}
	return maxDiff
}

// TestAdamWForeachMatchesLoop runs both flavours in every mode against the
// loop: foreach and auto bitwise, fused (flavour 0, where libtorch has it on
// the CPU) within 1e-6; fused with flavour 1 is refused.
func TestAdamWForeachMatchesLoop(t *testing.T) {
	cases := []struct {
		flavour AdamWFlavour
		mode    AdamWMode
		tol     float64 // 0: bitwise
		wantErr string  // SetForeach refuses the mode
	}{
		{AdamWTorch, AdamWForeach, 0, ""},
		{AdamWTorch, AdamWAuto, 0, ""},
		{AdamWTorch, AdamWFused, 1e-6, ""},
		{AdamWHF, AdamWForeach, 0, ""},
		{AdamWHF, AdamWAuto, 0, ""},
		{AdamWHF, AdamWFused, 0, "adamw_torch"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/%v", c.flavour, c.mode), func(t *testing.T) {
			leakCheck(t)
			if c.wantErr != "" {
				o, err := NewAdamW(c.flavour, 0.9, 0.999, 1e-8, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				err = o.SetForeach(c.mode)
				var te *Error
				if !errors.As(err, &te) || !strings.Contains(te.Msg, c.wantErr) {
					t.Fatalf("SetForeach(%v) on %v: %v, want an error mentioning %q", c.mode, c.flavour, err, c.wantErr)
				}
				if o.Foreach() != AdamWAuto {
					t.Fatalf("refused mode changed the mode to %v", o.Foreach())
				}
				t.Logf("refused: %v", err)
				return
			}
			if c.mode == AdamWFused && !HasFusedAdamW(CPU) {
				t.Skipf("libtorch %s has no _fused_adamw_ on the CPU", Version())
			}
			WithScope(func(*Scope) {
				want := runAdamW(t, c.flavour, AdamWLoop, CPU, true)
				got := runAdamW(t, c.flavour, c.mode, CPU, true)
				d := compareAdamW(t, got, want, c.tol)
				if c.tol == 0 {
					t.Logf("%v %v: 10 steps, %d tensors per step bitwise equal to the loop", c.flavour, c.mode, len(want[0].tensor))
				} else {
					t.Logf("%v %v: 10 steps, max abs difference from the loop %.3g", c.flavour, c.mode, d)
				}
			})
		})
	}
}

// TestAdamWForeachModes checks the default mode and the refusal of unknown
// modes.
func TestAdamWForeachModes(t *testing.T) {
	o, err := NewAdamW(AdamWTorch, 0.9, 0.999, 1e-8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Foreach() != AdamWAuto {
		t.Fatalf("default mode %v, want auto", o.Foreach())
	}
	if err := o.SetForeach(AdamWMode(9)); err == nil || !strings.Contains(err.Error(), "unknown step mode") {
		t.Fatalf("SetForeach(9): %v", err)
	}
	t.Logf("fused AdamW: CPU %v, CUDA %v (libtorch %s)", HasFusedAdamW(CPU), HasFusedAdamW(CUDA(0)), Version())
}

// TestAdamWForeachGPU compares foreach and fused on CUDA with the loop on
// CUDA (the multi-tensor kernels round differently: 1e-6), and the graph
// mode with foreach.
func TestAdamWForeachGPU(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	for _, flavour := range []AdamWFlavour{AdamWTorch, AdamWHF} {
		for _, mode := range []AdamWMode{AdamWForeach, AdamWAuto, AdamWFused} {
			if mode == AdamWFused && flavour == AdamWHF {
				continue
			}
			WithScope(func(*Scope) {
				want := runAdamW(t, flavour, AdamWLoop, dev, true)
				got := runAdamW(t, flavour, mode, dev, true)
				t.Logf("%v %v on %v: max abs difference from the loop %.3g", flavour, mode, dev, compareAdamW(t, got, want, 1e-6))
			})
		}
		// The graph mode (train.cuda_graphs' AdamW) needs the same gradients
		// at every step: no skips, for it and its reference.
		WithScope(func(*Scope) {
			want := runAdamW(t, flavour, AdamWForeach, dev, false)
			got := runAdamW(t, flavour, AdamWGraph, dev, false)
			t.Logf("%v graph mode on %v: max abs difference from foreach %.3g (0: bitwise)", flavour, dev, compareAdamW(t, got, want, 1e-6))
		})
	}
}
