package torch

/*
#include "clm_fused.h"
*/
import "C"

// FusedCausalAttention returns causal attention softmax(q·kᵀ/√D)·v of q, k
// and v [B, H, T, D], the function of
//
//	SDPA(q, k, v, nil, 0, true, 0)
//
// forward and backward. float32 CPU tensors take clm's kernels where
// libtorch exports its BLAS (FusedCausalAttentionNative): the queries in
// blocks that stop at their last row's key, the slices of each sequence and
// head in parallel, the same bits at any thread count. Everything else runs
// SDPA itself. The output is, like SDPA's, a [B, H, T, D] view of a
// contiguous [B, T, H, D].
func FusedCausalAttention(q, k, v *Tensor) *Tensor {
	return result("fused_causal_attention", C.clm_fused_causal_attention(q.handle(), k.handle(), v.handle()))
}

// FusedCausalAttentionNative reports whether float32 CPU attention takes
// clm's kernels (libtorch exports sgemm_, as the x86 wheels do); without
// them FusedCausalAttention runs SDPA.
func FusedCausalAttentionNative() bool { return C.clm_fused_causal_attention_native() != 0 }
