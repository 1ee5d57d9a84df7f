package torch

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestAdamWGraphMatchesLoop runs the graph mode (step scalars in device
// tensors, so that a CUDA graph can capture the update) against the loop,
// both flavours, 10 steps with a learning rate that changes every step:
// bitwise on the CPU.
func TestAdamWGraphMatchesLoop(t *testing.T) {
	for _, c := range []struct {
		flavour AdamWFlavour
		tol     float64 // 0: bitwise
	}{
		// The step size and decay are tensor operands, multiplied in the
		// order the CPU's addcdiv and add kernels multiply their scalars:
		// the loop's rounding, bit for bit.
		{AdamWTorch, 0},
		{AdamWHF, 0},
	} {
		t.Run(c.flavour.String(), func(t *testing.T) {
			leakCheck(t)
			WithScope(func(*Scope) {
				want := runAdamW(t, c.flavour, AdamWLoop, CPU, false)
				got := runAdamW(t, c.flavour, AdamWGraph, CPU, false)
				d := compareAdamW(t, got, want, c.tol)
				t.Logf("%v graph mode: 10 steps, max abs difference from the loop %.3g (tolerance %g, 0: bitwise)", c.flavour, d, c.tol)
			})
		})
	}
}

// TestAdamWGraphRefuses checks the graph mode's preconditions: the
// parameters with a gradient stay those of its first step, one step count
// per group, and its halves only in its own mode, after an eager first
// step. A refused step changes nothing.
func TestAdamWGraphRefuses(t *testing.T) {
	// grad gives a and/or b a gradient.
	type params struct{ a, b *Tensor }
	grad := func(p params, a, b bool) {
		if a {
			p.a.Sum(false).Backward()
		}
		if b {
			p.b.Sum(false).Backward()
		}
	}
	for _, c := range []struct {
		name  string
		setup func(o *AdamW, p params) // runs before the refused call
		call  func(o *AdamW)
		want  string
	}{
		{"prepare in auto mode", func(o *AdamW, p params) {
			if err := o.SetForeach(AdamWAuto); err != nil {
				t.Fatal(err)
			}
		}, (*AdamW).PrepareStep, "prepare is the graph mode's"},
		{"apply before prepare", func(o *AdamW, p params) { grad(p, true, true) }, (*AdamW).ApplyStep, "before its first prepare"},
		{"a new gradient", func(o *AdamW, p params) {
			grad(p, true, false)
			o.Step() // b has no gradient at the first step: a alone is updated
			o.ZeroGrad()
			grad(p, true, true)
		}, (*AdamW).Step, "parameter 1 of group 0 had no gradient at the graph step's first step but has one now"},
		{"a missing gradient", func(o *AdamW, p params) {
			grad(p, true, true)
			o.Step()
			o.ZeroGrad()
			grad(p, false, true)
		}, (*AdamW).ApplyStep, "parameter 0 of group 0 has none now"},
		{"uneven step counts", func(o *AdamW, p params) {
			WithScope(func(*Scope) {
				if err := o.SetState(0, 1, ParamState{ExpAvg: Zeros([]int64{1}, Float32, CPU), ExpAvgSq: Zeros([]int64{1}, Float32, CPU), Steps: 3}); err != nil {
					t.Fatal(err)
				}
			})
			grad(p, true, true)
		}, (*AdamW).Step, "group 0 has parameters at steps 0 and 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			leakCheck(t)
			WithScope(func(*Scope) {
				p := params{FromFloat32([]float32{1, 2}, 2).SetRequiresGrad(true), FromFloat32([]float32{3}, 1).SetRequiresGrad(true)}
				o, err := NewAdamW(AdamWHF, 0.9, 0.999, 1e-8, []ParamGroup{{Params: []*Tensor{p.a, p.b}, LR: 1e-3}})
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				if err := o.SetForeach(AdamWGraph); err != nil {
					t.Fatal(err)
				}
				c.setup(o, p)
				before := []int64{o.State(0, 0).Steps, o.State(0, 1).Steps}
				a := p.a.Detach().Clone()
				err = Try(func() { c.call(o) })
				var te *Error
				if !errors.As(err, &te) || !strings.Contains(te.Msg, c.want) {
					t.Fatalf("%v, want an error mentioning %q", err, c.want)
				}
				if after := []int64{o.State(0, 0).Steps, o.State(0, 1).Steps}; after[0] != before[0] || after[1] != before[1] {
					t.Errorf("the refused call moved the step counts from %v to %v", before, after)
				}
				if !bytes.Equal(a.Bytes(), p.a.Detach().Bytes()) {
					t.Error("the refused call changed a parameter")
				}
				t.Log(err)
			})
		})
	}
}

// TestCUDAGraphNeedsCUDA: capture is refused on the CPU, and f never runs.
func TestCUDAGraphNeedsCUDA(t *testing.T) {
	ran := false
	g, err := CaptureCUDAGraph(CPU, func() { ran = true })
	if err == nil || g != nil || ran {
		t.Fatalf("capture on the CPU: graph %v, error %v, f ran %v", g, err, ran)
	}
	t.Logf("refused: %v", err)
}

// TestCUDAGraphGPU captures a computation with a static input, replays it
// after changing the input, and checks that an illegal call during capture
// (a read back to the host) fails the capture with an error, after which
// the device works as before.
func TestCUDAGraphGPU(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	WithScope(func(s *Scope) {
		x := FromFloat32([]float32{1, 2, 3}, 3).ToDevice(dev)
		Synchronize(dev)
		var y *Tensor
		g, err := CaptureCUDAGraph(dev, func() { y = s.Keep(x.MulScalar(2).AddScalar(1)) })
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		for k, in := range [][]float32{{1, 2, 3}, {-1, 0, 10}} {
			x.CopyFrom(FromFloat32(in, 3).ToDevice(dev))
			if err := g.Replay(); err != nil {
				t.Fatal(err)
			}
			got := y.ToDevice(CPU).Float64s()
			for i, v := range in {
				if got[i] != float64(2*v+1) {
					t.Fatalf("replay %d: %v, want 2x+1 of %v", k, got, in)
				}
			}
		}
		_, err = CaptureCUDAGraph(dev, func() { x.Sum(false).Item() })
		if err == nil {
			t.Fatal("a host read during capture did not fail the capture")
		}
		t.Logf("host read during capture: %v", err)
		if v := x.Sum(false).Item(); v != 9 {
			t.Fatalf("after the failed capture: sum %v, want 9", v)
		}
	})
}

// TestCUDAGraphTrainStepGPU replays a captured training step (forward with
// dropout, backward, AdamW's graph mode) and compares it with the same
// steps run eagerly: the same kernels, so the same bits, and dropout draws
// new masks on every replay.
func TestCUDAGraphTrainStepGPU(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	const steps, warm = 8, 2
	run := func(graphs bool) [][]byte {
		var out [][]byte
		WithScope(func(s *Scope) {
			ManualSeed(5)
			w1 := Randn([]int64{16, 32}, Float32, dev).MulScalar(0.2).Detach().SetRequiresGrad(true)
			w2 := Randn([]int64{32, 4}, Float32, dev).MulScalar(0.2).Detach().SetRequiresGrad(true)
			x, y := Zeros([]int64{8, 16}, Float32, dev), Zeros([]int64{8, 4}, Float32, dev)
			o, err := NewAdamW(AdamWHF, 0.9, 0.999, 1e-8, []ParamGroup{{Params: []*Tensor{w1, w2}, LR: 1e-2, WeightDecay: 0.1}})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if err := o.SetForeach(AdamWGraph); err != nil {
				t.Fatal(err)
			}
			var loss *Tensor
			fwdBwd := func() {
				WithScope(func(*Scope) {
					l := x.Matmul(w1).Relu().Dropout(0.1, true).Matmul(w2).Sub(y).PowScalar(2).Mean(false)
					l.Backward()
					loss = s.Keep(l.Detach())
				})
			}
			var g *CUDAGraph
			defer func() { g.Close() }()
			for k := range steps {
				x.CopyFrom(Randn([]int64{8, 16}, Float32, CPU).ToDevice(dev))
				y.CopyFrom(Randn([]int64{8, 4}, Float32, CPU).ToDevice(dev))
				o.SetLR(1e-2 / float64(k+1))
				switch {
				case !graphs || k < warm:
					fwdBwd()
					o.Step()
				case k == warm:
					o.PrepareStep()
					if g, err = CaptureCUDAGraph(dev, func() { fwdBwd(); o.ApplyStep() }); err != nil {
						t.Fatal(err)
					}
					if err := g.Replay(); err != nil {
						t.Fatal(err)
					}
				default:
					o.PrepareStep()
					if err := g.Replay(); err != nil {
						t.Fatal(err)
					}
				}
				o.ZeroGrad()
				out = append(out, append(append(w1.Detach().ToDevice(CPU).Bytes(), w2.Detach().ToDevice(CPU).Bytes()...), loss.ToDevice(CPU).Bytes()...))
				if !graphs || k < warm {
					loss.Free()
				}
			}
		})
		return out
	}
	eager, graphed := run(false), run(true)
	for k := range eager {
		if !bytes.Equal(eager[k], graphed[k]) {
			t.Fatalf("step %d: weights or loss after the replayed step differ from the eager step's", k+1)
		}
	}
	if bytes.Equal(graphed[steps-1], graphed[steps-2]) {
		t.Fatal("the last two replays left the same weights")
	}
	t.Logf("%d steps (%d warm-up, 1 captured, %d replayed): weights and losses bitwise the eager steps'", steps, warm, steps-warm-1)
}
