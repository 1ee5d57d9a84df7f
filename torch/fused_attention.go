package torch

/*
#include <stdlib.h>
#include "clm_fused.h"
*/
import "C"

import "unsafe"

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

// FusedAttentionISA names the instruction set of the row loops (softmax
// and its gradient) in clm's CPU attention, as libtorch names its CPU
// capabilities: "AVX512", "AVX2" or "DEFAULT". It is the one libtorch runs
// its own kernels with (ATEN_CPU_CAPABILITY lowers it) where this CPU and
// build have it; every set computes the same bits.
func FusedAttentionISA() string { return C.GoString(C.clm_fused_attention_isa()) }

// useAttentionISA makes isa's row loops the process's and reports whether
// this build and CPU have them (else nothing changes).
func useAttentionISA(isa string) bool {
	cs := C.CString(isa)
	defer C.free(unsafe.Pointer(cs))
	return C.clm_fused_attention_use_isa(cs) != 0
}
