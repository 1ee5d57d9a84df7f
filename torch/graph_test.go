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

// TestAdamWGraphRefuses checks the graph mode's preconditions: a gradient
// for every parameter, one step count per bucket, and its halves only in
// its own mode.
func TestAdamWGraphRefuses(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		a := FromFloat32([]float32{1, 2}, 2).SetRequiresGrad(true)
		b := FromFloat32([]float32{3}, 1).SetRequiresGrad(true)
		o, err := NewAdamW(AdamWHF, 0.9, 0.999, 1e-8, []ParamGroup{{Params: []*Tensor{a, b}, LR: 1e-3}})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		wantErr := func(what, sub string, f func()) {
			t.Helper()
			err := Try(f)
			var te *Error
			if !errors.As(err, &te) || !strings.Contains(te.Msg, sub) {
				t.Fatalf("%s: %v, want an error mentioning %q", what, err, sub)
			}
			t.Logf("%s: %v", what, err)
		}
		wantErr("PrepareStep in auto mode", "graph mode", o.PrepareStep)
		if err := o.SetForeach(AdamWGraph); err != nil {
			t.Fatal(err)
		}
		a.Sum(false).Backward() // b has no gradient
		wantErr("a parameter without gradient", "gradient for every parameter", o.Step)
		if st := o.State(0, 0); st.Steps != 0 {
			t.Fatalf("a refused step advanced the step count to %d", st.Steps)
		}
		b.Sum(false).Backward()
		wantErr("ApplyStep before PrepareStep", "before its first prepare", o.ApplyStep)
		o.ZeroGrad()
		WithScope(func(*Scope) {
			if err := o.SetState(0, 1, ParamState{ExpAvg: Zeros([]int64{1}, Float32, CPU), ExpAvgSq: Zeros([]int64{1}, Float32, CPU), Steps: 3}); err != nil {
				t.Fatal(err)
			}
		})
		wantErr("uneven step counts", "parameters at steps 0 and 3", o.PrepareStep)
	})
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
