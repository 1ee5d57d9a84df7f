package model

import (
	"testing"

	"clm/torch"
	"clm/torch/torchtest"
)

// TestCheckpointBitIdentical: ForwardBackward with CheckpointBlock gives
// the losses and gradients of CheckpointNone bit for bit, over two
// accumulated micro-batches (so that wte's gradient is added to an
// existing one), with dropout replayed, on the plain and the chunked head,
// and leaves the generator where CheckpointNone leaves it. CheckpointNone
// itself equals Forward + Backward.
func TestCheckpointBitIdentical(t *testing.T) {
	defer func(b int64) { plainHeadBelow = b }(plainHeadBelow)
	dropout := map[string]any{"resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}
	cases := []struct {
		name, preset string
		set          map[string]any
		dt           torch.DType
		chunked      bool
	}{
		{"default fp32", "default", nil, torch.Float32, false},
		{"default fp64 chunked head", "default", nil, torch.Float64, true},
		{"skipless fp32", "skipless", nil, torch.Float32, false},
		{"skipless-parallel fp32", "skipless-parallel", nil, torch.Float32, true},
		{"op fp32", "op", nil, torch.Float32, false},
		{"default fp32 dropout", "default", dropout, torch.Float32, false},
		{"skipless fp64 dropout", "skipless", dropout, torch.Float64, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plainHeadBelow = 1 << 40
			if c.chunked {
				plainHeadBelow = 0
			}
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			m := initModel(t, c.preset, c.set, c.dt, AttentionAuto)
			defer m.Close()
			batches := []*torch.Tensor{randomIDs(3, 24, 512), randomIDs(3, 24, 499)}
			seed := func(l *torch.Tensor) *torch.Tensor { return l.DivScalar(2) }
			run := func(ck Checkpointing) (losses []float64, grads []*torch.Tensor, next float64) {
				torch.ManualSeed(5)
				for _, ids := range batches {
					l := m.ForwardBackward(ids, ForwardOptions{Labels: ids, Pad: PadToken(3), Train: true, LossOnly: true},
						BackwardOptions{Checkpoint: ck, Seed: seed})
					losses = append(losses, l.ToDType(torch.Float64).Item())
				}
				return losses, takeGrads(m), torch.Rand([]int64{1}, torch.Float64, torch.CPU).Item()
			}
			wantLoss, wantGrads, wantNext := run(CheckpointNone)
			gotLoss, gotGrads, gotNext := run(CheckpointBlock)
			for i := range wantLoss {
				if gotLoss[i] != wantLoss[i] {
					t.Errorf("micro-batch %d: loss %v with checkpointing, %v without", i, gotLoss[i], wantLoss[i])
				}
			}
			names := m.Params().Trainable()
			for i := range wantGrads {
				if (gotGrads[i] == nil) != (wantGrads[i] == nil) {
					t.Fatalf("%s: gradient present %v with checkpointing, %v without", names[i].Name, gotGrads[i] != nil, wantGrads[i] != nil)
				}
				if wantGrads[i] == nil {
					continue
				}
				if d := maxAbsDiff(gotGrads[i], wantGrads[i]); d != 0 {
					t.Errorf("%s: gradients differ by %.3g", names[i].Name, d)
				}
			}
			if gotNext != wantNext {
				t.Errorf("generator after the step: draws %v with checkpointing, %v without", gotNext, wantNext)
			}

			// CheckpointNone is Forward + Backward.
			torch.ManualSeed(5)
			for _, ids := range batches {
				out := m.Forward(ids, ForwardOptions{Labels: ids, Pad: PadToken(3), Train: true, LossOnly: true})
				seed(out.Loss).Backward()
			}
			for i, g := range takeGrads(m) {
				if g != nil && maxAbsDiff(g, wantGrads[i]) != 0 {
					t.Errorf("%s: ForwardBackward's gradient differs from Forward + Backward's", names[i].Name)
				}
			}
		})
	}
}

// TestForwardBackwardRefuses: ForwardBackward needs labels and refuses the
// outputs it cannot return.
func TestForwardBackwardRefuses(t *testing.T) {
	torchtest.Guard(t)
	s := torch.NewScope()
	defer s.Close()
	m := initModel(t, "default", nil, torch.Float32, AttentionAuto)
	defer m.Close()
	ids := randomIDs(2, 8, 512)
	for name, o := range map[string]ForwardOptions{
		"no labels": {},
		"hidden":    {Labels: ids, Hidden: true},
		"attention": {Labels: ids, Attention: true},
	} {
		if err := torch.Try(func() { m.ForwardBackward(ids, o, BackwardOptions{Checkpoint: CheckpointBlock}) }); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseCheckpointing(t *testing.T) {
	for in, want := range map[string]Checkpointing{"": CheckpointNone, "none": CheckpointNone, "block": CheckpointBlock} {
		if got, err := ParseCheckpointing(in); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	if _, err := ParseCheckpointing("layer"); err == nil {
		t.Error(`"layer": no error`)
	}
}

// TestFusedKernelsMatchComposite: every preset with the fused kernels gives
// the loss and gradients of the composite ops, with and without block
// checkpointing. The forward is the composite's rounding for rounding
// (loss within 1e-12 in float64, 1e-6 in float32); the gains' gradients
// are sums in another order (the kernels accumulate float32 in float64),
// and a gain's gradient is a sum with cancellation, so each gradient is
// judged against a float64 truth: the fused error may exceed the
// composite's by at most 1e-12 (float64) or 1e-6 (float32; 1e-4 for a
// gain) of the tensor's largest entry.
func TestFusedKernelsMatchComposite(t *testing.T) {
	for _, preset := range PresetNames() {
		for _, dt := range []torch.DType{torch.Float64, torch.Float32} {
			t.Run(preset+"/"+dt.String(), func(t *testing.T) {
				torchtest.Guard(t)
				s := torch.NewScope()
				defer s.Close()
				ids := randomIDs(3, 24, 512)
				weights := perturbedWeights(t, preset)
				run := func(dt torch.DType, fused bool, ck Checkpointing) (*torch.Tensor, []*torch.Tensor) {
					m, err := New(smallConfig(t, preset, nil), Options{Device: torch.CPU, DType: dt, FusedKernels: fused})
					if err != nil {
						t.Fatal(err)
					}
					defer m.Close()
					if err := m.LoadState(weights); err != nil {
						t.Fatal(err)
					}
					l := m.ForwardBackward(ids, ForwardOptions{Labels: ids, Train: true, LossOnly: true}, BackwardOptions{Checkpoint: ck})
					return l, takeGrads(m)
				}
				_, truth := run(torch.Float64, false, CheckpointNone)
				wantLoss, wantGrads := run(dt, false, CheckpointNone)
				tol := 1e-12
				if dt == torch.Float32 {
					tol = 1e-6
				}
				names := m0Names(t, preset)
				for _, ck := range []Checkpointing{CheckpointNone, CheckpointBlock} {
					gotLoss, gotGrads := run(dt, true, ck)
					if e := mustRelErr(t, gotLoss, wantLoss); e > tol {
						t.Errorf("checkpoint %v: loss relative error %.3g", ck, e)
					}
					for i := range truth {
						if truth[i] == nil {
							continue
						}
						fusedErr := mustRelErr(t, gotGrads[i].ToDType(torch.Float64), truth[i])
						compErr := mustRelErr(t, wantGrads[i].ToDType(torch.Float64), truth[i])
						limit := tol
						if dt == torch.Float32 && truth[i].Numel() <= 64 {
							// A gain's gradient is one sum over every token
							// and feature, with cancellation: float32
							// differences of 1e-7 in its terms, from any
							// fused op upstream, move it by up to 4e-5
							// (measured); a wrong gradient is off by O(1).
							limit = 1e-4
						}
						if fusedErr > compErr+limit {
							t.Errorf("checkpoint %v: %s: error %.3g against float64, the composite's %.3g", ck, names[i], fusedErr, compErr)
						}
					}
				}
			})
		}
	}
}

// perturbedWeights are preset's initial weights (seed 0, float64) with
// every trainable parameter moved by normal(0, 0.02), so that every path of
// the fused kernels carries signal (gains off 1, zero weights off 0).
func perturbedWeights(t *testing.T, preset string) []torch.Named {
	m := initModel(t, preset, nil, torch.Float64, AttentionAuto)
	defer m.Close()
	var out []torch.Named
	torch.ManualSeed(1)
	torch.NoGrad(func() {
		trainable := map[string]bool{}
		for _, p := range m.Params().Trainable() {
			trainable[p.Name] = true
		}
		for _, n := range m.State() {
			w := n.Tensor.Clone()
			if trainable[n.Name] {
				w = w.Add(torch.Randn(w.Shape(), w.DType(), torch.CPU).MulScalar(0.02))
			}
			out = append(out, torch.Named{Name: n.Name, Tensor: w})
		}
	})
	return out
}

// m0Names are preset's trainable parameter names, in registry order.
func m0Names(t *testing.T, preset string) []string {
	cfg := smallConfig(t, preset, nil)
	var names []string
	for _, p := range cfg.Params() {
		if p.Trainable {
			names = append(names, p.Name)
		}
	}
	return names
}
