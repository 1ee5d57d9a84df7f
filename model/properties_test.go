package model

import (
	"strings"
	"testing"

	"clm/torch"
	"clm/torch/torchtest"
)

// initModel builds a small model of preset with overrides, initialised from
// seed 0.
func initModel(t *testing.T, preset string, set map[string]any, dt torch.DType, impl AttentionImpl) *Model {
	t.Helper()
	m, err := New(smallConfig(t, preset, set), Options{Device: torch.CPU, DType: dt, Attention: impl})
	if err != nil {
		t.Fatal(err)
	}
	torch.ManualSeed(0)
	if err := m.Init(); err != nil {
		t.Fatal(err)
	}
	return m
}

func randomIDs(B, T, V int64) *torch.Tensor {
	ids, _ := parityBatch(B, T, V)
	return torch.FromInt64(ids, B, T)
}

func maxAbsDiff(a, b *torch.Tensor) float64 {
	return a.Sub(b).Abs().Max(torch.AllDims, false).ToDType(torch.Float64).Item()
}

// takeGrads returns the trainable parameters' gradients in registry order
// (nil where one has none) and drops them from the parameters, so that the
// next backward starts afresh.
func takeGrads(m *Model) []*torch.Tensor {
	var g []*torch.Tensor
	for _, p := range m.Params().Trainable() {
		g = append(g, p.T.Grad())
		p.T.ZeroGrad()
	}
	return g
}

// mustRelErr is relErr of two tensors that must have the same shape: a
// mismatch fails the test.
func mustRelErr(t *testing.T, got, want *torch.Tensor) float64 {
	t.Helper()
	e, err := relErr(got, want)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// worstGradErr is the largest relative error between matching gradients of
// two takeGrads lists; a gradient present in one list only fails the test.
func worstGradErr(t *testing.T, got, want []*torch.Tensor) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d gradients vs %d", len(got), len(want))
	}
	worst := 0.0
	for i := range want {
		if (got[i] == nil) != (want[i] == nil) {
			t.Fatalf("gradient %d present in one run only", i)
		}
		if got[i] != nil {
			worst = max(worst, mustRelErr(t, got[i], want[i]))
		}
	}
	return worst
}

// TestSASAttentionIsIdentityAtInit: with W^Q = 0 (query_init_std 0) the
// logits vanish, softmax is the causal uniform matrix C, and Eq. 5 gives
// A' = C + I − C = I exactly, in every layer.
func TestSASAttentionIsIdentityAtInit(t *testing.T) {
	for _, dt := range []torch.DType{torch.Float32, torch.Float64} {
		for _, preset := range []string{"skipless", "skipless-parallel"} {
			t.Run(preset+"/"+dt.String(), func(t *testing.T) {
				torchtest.Guard(t)
				s := torch.NewScope()
				defer s.Close()
				m := initModel(t, preset, nil, dt, AttentionMaterialised)
				defer m.Close()
				x := torch.Randn([]int64{2, 32, 64}, dt, torch.CPU)
				for i := range m.blocks {
					a := &m.blocks[i].attn
					qk := a.qk.forward(m.pass(ForwardOptions{}), x).Split(a.nEmbd, 2)
					q, k := a.heads(qk[0], 2, 32), a.heads(qk[1], 2, 32)
					A, _ := a.shapedMatrix(q, k, 32, dt)
					eye := torch.Eye(32, 32, dt, torch.CPU).Expand(2, 4, 32, 32)
					if d := maxAbsDiff(A, eye); d != 0 {
						t.Errorf("layer %d: A' differs from I by %g", i, d)
					}
				}
			})
		}
	}
}

// TestSkiplessBlockIsIdentityMap: a skipless block with identity value and
// projection (no first-layer override) and MLP gain 0 maps its input to
// itself; without norms (norm_type none) that holds for blocks 1.., whose
// ln_1 is the identity (block 0 keeps a LayerNorm).
func TestSkiplessBlockIsIdentityMap(t *testing.T) {
	for _, impl := range []AttentionImpl{AttentionMaterialised, AttentionFused} {
		t.Run(impl.String(), func(t *testing.T) {
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			m := initModel(t, "skipless", map[string]any{
				"first_layer_value_resid_gain": nil, "mlp_block_resid_gain": 0.0, "norm_type": "none", "n_layer": int64(5),
			}, torch.Float64, impl)
			defer m.Close()
			out := m.Forward(randomIDs(2, 32, 512), ForwardOptions{Hidden: true})
			tol := 0.0
			if impl == AttentionFused {
				tol = 1e-12 // softmax·V and the running mean round differently
			}
			// Hidden[L] is ln_f of the last output, so the last block is
			// checked through blocks 1..L−2 only.
			for i := 1; i < len(m.blocks)-1; i++ {
				if d := maxAbsDiff(out.Hidden[i+1], out.Hidden[i]); d > tol {
					t.Errorf("block %d is not the identity: max |y − x| = %g", i, d)
				}
			}
			if d := maxAbsDiff(out.Hidden[1], out.Hidden[0]); d == 0 {
				t.Error("block 0 should apply its LayerNorm")
			}
		})
	}
}

// TestParallelBlockSkipPaths: with both residual gains 0, a parallel block
// whose skip gains are all 0 outputs exactly zero (there is no skip path),
// while the default parallel block (MLP skip gain 1) passes its input on.
func TestParallelBlockSkipPaths(t *testing.T) {
	cases := []struct {
		preset   string
		wantZero bool
	}{
		{"skipless-parallel", true},
		{"default-parallel", false},
	}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			m := initModel(t, c.preset, map[string]any{"mlp_block_resid_gain": 0.0, "attn_block_resid_gain": 0.0}, torch.Float64, AttentionAuto)
			defer m.Close()
			out := m.Forward(randomIDs(2, 16, 512), ForwardOptions{Hidden: true})
			for i := range m.blocks[:len(m.blocks)-1] {
				y, x := out.Hidden[i+1], out.Hidden[i]
				if c.wantZero {
					if d := y.Abs().Max(torch.AllDims, false).Item(); d != 0 {
						t.Errorf("block %d output has magnitude %g, want 0 (no skip path)", i, d)
					}
				} else if d := maxAbsDiff(y, x); d != 0 {
					t.Errorf("block %d: skip path changed the input by %g", i, d)
				}
			}
		})
	}
}

// TestFusedEqualsMaterialised compares the two shaped-attention paths at
// context 128 on initialised-then-trained-looking weights (perturbed), for
// logits and every gradient.
func TestFusedEqualsMaterialised(t *testing.T) {
	for _, preset := range []string{"skipless", "skipless-parallel", "default", "op"} {
		for _, dt := range []torch.DType{torch.Float32, torch.Float64} {
			t.Run(preset+"/"+dt.String(), func(t *testing.T) {
				torchtest.Guard(t)
				s := torch.NewScope()
				defer s.Close()
				set := map[string]any{"context_length": int64(128), "n_positions": int64(128)}
				run := func(impl AttentionImpl) (*torch.Tensor, []*torch.Tensor) {
					m := initModel(t, preset, set, dt, impl)
					defer m.Close()
					torch.ManualSeed(5)
					for _, p := range m.Params().All() {
						if !p.Buffer {
							p.T.AddInPlace(torch.Randn(p.Shape, dt, torch.CPU), 0.02)
						}
					}
					out := m.Forward(randomIDs(2, 128, 512), ForwardOptions{Labels: randomIDs(2, 128, 512)})
					out.Loss.Backward()
					return out.Logits, takeGrads(m)
				}
				lm, gm := run(AttentionMaterialised)
				lf, gf := run(AttentionFused)
				tol := 1e-12
				if dt == torch.Float32 {
					tol = 1e-5
				}
				if e := mustRelErr(t, lf, lm); e > tol {
					t.Errorf("logits: relative error %.3g", e)
				}
				if worst := worstGradErr(t, gf, gm); worst > tol*100 {
					t.Errorf("gradients: worst relative error %.3g", worst)
				}
			})
		}
	}
}

// TestLossOnlyMatchesPlain: the memory-lean loss (chunked head) equals the
// plain loss, and so do the gradients (float64 1e-12, float32 1e-5).
func TestLossOnlyMatchesPlain(t *testing.T) {
	defer func(b int64) { plainHeadBelow = b }(plainHeadBelow)
	plainHeadBelow = 0 // chunk even these small logits
	for _, dt := range []torch.DType{torch.Float32, torch.Float64} {
		t.Run(dt.String(), func(t *testing.T) {
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			m := initModel(t, "skipless", nil, dt, AttentionAuto)
			defer m.Close()
			ids, labels := randomIDs(3, 32, 512), randomIDs(3, 32, 512).MaskedFill(randomIDs(3, 32, 512).LtScalar(40), IgnoreIndex)
			run := func(lossOnly bool) (*torch.Tensor, []*torch.Tensor) {
				out := m.Forward(ids, ForwardOptions{Labels: labels, Pad: PadToken(7), LossOnly: lossOnly})
				out.Loss.Backward()
				return out.Loss, takeGrads(m)
			}
			lp, gp := run(false)
			lc, gc := run(true)
			tol := 1e-12
			if dt == torch.Float32 {
				tol = 1e-5
			}
			if e := mustRelErr(t, lc, lp); e > tol {
				t.Errorf("loss: relative error %.3g", e)
			}
			worst := worstGradErr(t, gc, gp)
			if worst > tol*10 {
				t.Errorf("gradients: worst relative error %.3g", worst)
			}
			t.Logf("%v: loss %.6f vs %.6f, worst gradient error %.2g", dt, lc.ToDType(torch.Float64).Item(), lp.ToDType(torch.Float64).Item(), worst)
		})
	}
}

// TestLossSegments: one forward with LossSegments equals the weighted sum
// of separate forwards over each segment's rows (loss and gradients), on
// the plain and the chunked head; a weight-0 segment is skipped even when
// all its targets are ignored; segments that do not split the batch are an
// error.
func TestLossSegments(t *testing.T) {
	defer func(b int64) { plainHeadBelow = b }(plainHeadBelow)
	const B, T, V = 4, 16, 512
	segs := []LossSegment{{Rows: 1, Weight: 1}, {Rows: 2, Weight: 0.375}, {Rows: 1, Weight: 0}}
	for _, c := range []struct {
		name  string
		chunk int64
	}{{"plain head", 1 << 40}, {"chunked head", 0}} {
		t.Run(c.name, func(t *testing.T) {
			plainHeadBelow = c.chunk
			torchtest.Guard(t)
			s := torch.NewScope()
			defer s.Close()
			m := initModel(t, "default", nil, torch.Float64, AttentionAuto)
			defer m.Close()
			ids := randomIDs(B, T, V)
			// Row 3 (the weight-0 segment) has only ignored targets: alone,
			// its mean would be NaN.
			labels := ids.Clone()
			labels.Narrow(0, 3, 1).Fill(IgnoreIndex)
			out := m.Forward(ids, ForwardOptions{Labels: labels, LossOnly: true, LossSegments: segs})
			out.Loss.Backward()
			got, gotGrads := out.Loss, takeGrads(m)

			want := torch.Scalar(0, torch.Float64, torch.CPU)
			a := int64(0)
			for _, seg := range segs {
				if seg.Weight != 0 {
					o := m.Forward(ids.Narrow(0, a, int64(seg.Rows)), ForwardOptions{Labels: labels.Narrow(0, a, int64(seg.Rows)), LossOnly: true})
					l := o.Loss.MulScalar(seg.Weight)
					l.Backward()
					want = want.Add(l.Detach())
				}
				a += int64(seg.Rows)
			}
			wantGrads := takeGrads(m)
			if e := mustRelErr(t, got, want); e > 1e-12 {
				t.Errorf("loss %v, want %v (relative error %.3g)", got.Item(), want.Item(), e)
			}
			worst := worstGradErr(t, gotGrads, wantGrads)
			if worst > 1e-10 {
				t.Errorf("gradients: worst relative error %.3g", worst)
			}
			t.Logf("loss %.12f, worst gradient error %.2g", got.Item(), worst)

			for _, bad := range [][]LossSegment{{{Rows: 3, Weight: 1}}, {{Rows: 4, Weight: 1}, {Rows: 1, Weight: 1}}, {{Rows: 0, Weight: 1}, {Rows: 4, Weight: 1}}} {
				err := torch.Try(func() { m.Forward(ids, ForwardOptions{Labels: labels, LossOnly: true, LossSegments: bad}) })
				if err == nil || !strings.Contains(err.Error(), "loss segments") {
					t.Errorf("segments %v: error %v, want one naming the loss segments", bad, err)
				}
			}
		})
	}
}
