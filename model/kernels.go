package model

import (
	"math"

	"clm/torch"
)

// kernels are the operations that have a fused implementation (package
// torch's CPU and CUDA kernels) beside the composite of libtorch ops that
// defines them. New chooses one set for the model (Options.FusedKernels),
// as litgpt's config chooses its norm_class once; the layers never ask
// which they have.
type kernels interface {
	// rmsNorm is scale · x / (‖x‖₂·d^-½ + eps) over the last dim, of width d.
	rmsNorm(x, scale *torch.Tensor, width int64, eps float64) *torch.Tensor
	// combine is Σ gains[i]·terms[i] over two or three terms.
	combine(gains, terms []*torch.Tensor) *torch.Tensor
	// leakyReLU is x for x ≥ 0, slope·x otherwise.
	leakyReLU(x *torch.Tensor, slope float64) *torch.Tensor
	// causalAttention is softmax(QKᵀ/√d_h)·V with the causal mask, of q, k
	// and v [B, H, T, d_h].
	causalAttention(q, k, v *torch.Tensor) *torch.Tensor
	// shapedEpilogue is resid·sdpa + skip·V − centre·C·V, with C·V the
	// running mean of V over the T positions (dim 2): Eq. 5 after SDPA.
	shapedEpilogue(sdpa, v, resid, skip, centre *torch.Tensor, T int64) *torch.Tensor
}

// kernelsFor is the set Options.FusedKernels asks for.
func kernelsFor(fused bool) kernels {
	if fused {
		return fusedKernels{}
	}
	return compositeKernels{}
}

// compositeKernels are the definitions, in the op order of the original
// (Hugging Face's ACT2FN, the original's RMSNorm and gains).
type compositeKernels struct{}

func (compositeKernels) rmsNorm(x, scale *torch.Tensor, width int64, eps float64) *torch.Tensor {
	rms := x.Norm(2, true, -1).MulScalar(math.Pow(float64(width), -0.5))
	return scale.Mul(x.Div(rms.AddScalar(eps)))
}

func (compositeKernels) combine(gains, terms []*torch.Tensor) *torch.Tensor {
	y := gains[0].Mul(terms[0])
	for i := 1; i < len(terms); i++ {
		y = y.Add(gains[i].Mul(terms[i]))
	}
	return y
}

func (compositeKernels) leakyReLU(x *torch.Tensor, slope float64) *torch.Tensor {
	return torch.Where(x.GeScalar(0), x, x.MulScalar(slope))
}

func (compositeKernels) causalAttention(q, k, v *torch.Tensor) *torch.Tensor {
	return torch.SDPA(q, k, v, nil, 0, true, 0)
}

func (compositeKernels) shapedEpilogue(sdpa, v, resid, skip, centre *torch.Tensor, T int64) *torch.Tensor {
	y := resid.Mul(sdpa)
	pos := torch.Arange(1, float64(T+1), 1, v.DType(), v.Device()).View(-1, 1) // [T, 1]
	cv := v.Cumsum(2).Div(pos)                                                 // C·V: running mean over positions
	return y.Add(skip.Mul(v)).Sub(centre.Mul(cv))
}

// fusedKernels compute each operation in one pass, with the composite's
// semantics (torch/fused_*_test.go holds them to it).
type fusedKernels struct{}

func (fusedKernels) rmsNorm(x, scale *torch.Tensor, _ int64, eps float64) *torch.Tensor {
	return torch.FusedRMSNorm(x, scale, eps)
}

func (fusedKernels) combine(gains, terms []*torch.Tensor) *torch.Tensor {
	return torch.FusedCombine(gains, terms)
}

func (fusedKernels) leakyReLU(x *torch.Tensor, slope float64) *torch.Tensor {
	return torch.FusedLeakyReLU(x, slope)
}

func (fusedKernels) causalAttention(q, k, v *torch.Tensor) *torch.Tensor {
	return torch.FusedCausalAttention(q, k, v)
}

func (fusedKernels) shapedEpilogue(sdpa, v, resid, skip, centre *torch.Tensor, _ int64) *torch.Tensor {
	return torch.FusedShapedEpilogue(sdpa, v, resid, skip, centre)
}
