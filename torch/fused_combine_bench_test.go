package torch

import (
	"testing"

	"clm/internal/testkit/benchenv"
)

// BenchmarkFusedCombine is the residual combination of a parallel block,
// mlp_resid·mlp + attn_resid·attn + skip·x at [16, 128, 256] with trainable
// gains, forward and backward: FusedCombine against the composite Mul/Add
// chain.
func BenchmarkFusedCombine(b *testing.B) {
	shape := []int64{16, 128, 256}
	for _, impl := range []string{"fused", "composite"} {
		b.Run(impl, func(b *testing.B) {
			benchenv.SetThreads(b, SetNumThreads)
			s := NewScope()
			defer s.Close()
			var gains, terms []*Tensor
			for i := 0; i < 3; i++ {
				gains = append(gains, Randn([]int64{1}, Float32, CPU).SetRequiresGrad(true))
				terms = append(terms, Randn(shape, Float32, CPU).SetRequiresGrad(true))
			}
			gout := Randn(shape, Float32, CPU)
			leaves := append(append([]*Tensor{}, gains...), terms...)
			benchForwardBackward(b, func() *Tensor {
				if impl == "fused" {
					return FusedCombine(gains, terms)
				}
				return combineComposite(gains, terms)
			}, gout, leaves...)
		})
	}
}

// BenchmarkFusedEpilogue is the shaped-attention epilogue at B=16, H=8,
// T=128, d_h=32 with v a permuted view (as the model's heads) and trainable
// gains, forward and backward: FusedShapedEpilogue against the composite of
// model/attention.go.
func BenchmarkFusedEpilogue(b *testing.B) {
	const B, H, T, D = 16, 8, 128, 32
	for _, impl := range []string{"fused", "composite"} {
		b.Run(impl, func(b *testing.B) {
			benchenv.SetThreads(b, SetNumThreads)
			s := NewScope()
			defer s.Close()
			y := Randn([]int64{B, H, T, D}, Float32, CPU).SetRequiresGrad(true)
			vl := Randn([]int64{B, T, H, D}, Float32, CPU).SetRequiresGrad(true)
			v := vl.Permute(0, 2, 1, 3)
			var gains []*Tensor
			for i := 0; i < 3; i++ {
				gains = append(gains, Randn([]int64{1, H, 1, 1}, Float32, CPU).SetRequiresGrad(true))
			}
			gout := Randn([]int64{B, H, T, D}, Float32, CPU)
			leaves := append([]*Tensor{y, vl}, gains...)
			benchForwardBackward(b, func() *Tensor {
				if impl == "fused" {
					return FusedShapedEpilogue(y, v, gains[0], gains[1], gains[2])
				}
				return epilogueComposite(y, v, gains[0], gains[1], gains[2])
			}, gout, leaves...)
		})
	}
}

// benchForwardBackward times forward() and its backward from gout, the
// gradients of leaves dropped after each, one untimed warm-up first; each
// iteration's tensors are freed in its own scope.
func benchForwardBackward(b *testing.B, forward func() *Tensor, gout *Tensor, leaves ...*Tensor) {
	step := func() {
		WithScope(func(*Scope) {
			forward().BackwardWith(gout)
			for _, l := range leaves {
				l.ZeroGrad()
			}
		})
	}
	step()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
}
