package torch

/*
#include "clm_fused.h"
*/
import "C"

// FusedCombine returns Σᵢ gains[i]·terms[i] for two or three terms of one
// shape, each gain with one element. It equals the composite
//
//	gains[0].Mul(terms[0]).Add(gains[1].Mul(terms[1]))                              // two terms
//	gains[0].Mul(terms[0]).Add(gains[1].Mul(terms[1])).Add(gains[2].Mul(terms[2])) // three
//
// rounding for rounding (its dtype too: a [1]-shaped float32 gain times a
// bfloat16 term gives float32), in one pass forward and one backward; the
// gains' gradients are reduced in the backward pass that gives the terms'.
// Inputs the fused kernels do not cover (and CUDA tensors in a shim without
// CUDA kernels) run the composite itself.
func FusedCombine(gains, terms []*Tensor) *Tensor {
	if len(gains) != len(terms) {
		panic(&Error{Op: "fused_combine", Msg: "gains and terms differ in number"})
	}
	g, n := handles(gains)
	t, _ := handles(terms)
	return result("fused_combine", C.clm_fused_combine(g, t, n))
}

// FusedShapedEpilogue returns the shaped-attention epilogue of Eq. 5 without
// the T×T matrix, resid·y + skip·v − centre·cumsum(v, 2)/(t+1), for y and v
// [B, H, T, D] (any strides; v is typically a permuted view) and the gains
// [1, H, 1, 1]. It equals the composite
//
//	pos := Arange(1, T+1, 1, v.DType(), v.Device()).View(-1, 1)
//	resid.Mul(y).Add(skip.Mul(v)).Sub(centre.Mul(v.Cumsum(2).Div(pos)))
//
// rounding for rounding, in one pass forward and one backward, without
// saving the running mean (backward recomputes it).
func FusedShapedEpilogue(y, v, resid, skip, centre *Tensor) *Tensor {
	return result("fused_shaped_epilogue",
		C.clm_fused_shaped_epilogue(y.handle(), v.handle(), resid.handle(), skip.handle(), centre.handle()))
}
