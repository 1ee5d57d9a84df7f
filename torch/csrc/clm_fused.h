/*
 * clm_fused.h — fused elementwise operations of the shim, part of its pure C
 * interface (the same rules as clm_torch.h: new handles owned by the caller,
 * errors by value, no exception crosses the boundary).
 *
 * Each operation replaces a chain of composite ops by one pass forward and
 * one pass backward: it is an autograd node of its own (a C++
 * torch::autograd::Function), with a CPU kernel (at::parallel_for, loops the
 * compiler vectorises) and, in a shim built with CLM_WITH_CUDA_KERNELS, a
 * CUDA kernel. A CUDA tensor in a shim without CUDA kernels is computed by
 * the composite ops instead (same results, no speed-up).
 *
 * Every operation equals the composite ops it replaces (written beside each)
 * to fp64 1e-12, fp32 1e-6, and bf16 within bf16 rounding, forward and
 * backward.
 */
#ifndef CLM_FUSED_H
#define CLM_FUSED_H

#include "clm_torch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* where(x >= 0, x, slope·x); its gradient is 1 at x = 0 (unlike
 * at::leaky_relu's). */
clm_tresult clm_fused_leaky_relu(clm_tensor x, double slope);

/* RMSNorm over the last dim with eps added to the RMS:
 * scale · x / (‖x‖₂·d^-½ + eps); scale has shape [d]. */
clm_tresult clm_fused_rms_norm(clm_tensor x, clm_tensor scale, double eps);

/* Σ_i gains[i]·terms[i] for n = 2 or 3 terms of one shape; each gain has
 * one element (shape [1] or []) and may require grad: its gradient is
 * reduced in the backward pass itself. */
clm_tresult clm_fused_combine(const clm_tensor *gains, const clm_tensor *terms, int n);

/* The shaped-attention epilogue of Eq. 5 without the T×T matrix:
 * resid·y + skip·v − centre·cumsum(v, 2)/(t+1), with y and v [B, H, T, D]
 * (any strides) and the gains [1, H, 1, 1]. */
clm_tresult clm_fused_shaped_epilogue(clm_tensor y, clm_tensor v, clm_tensor resid, clm_tensor skip,
                                      clm_tensor centre);

/* Causal attention softmax(q·kᵀ/√D)·v of q, k, v [B, H, T, D], as
 * at::scaled_dot_product_attention(q, k, v, is_causal=true), which computes
 * it for anything but float32 CPU tensors; those take clm's kernels
 * (clm_fused_attention.cpp), where libtorch exports its BLAS's sgemm_. The
 * output is a [B, H, T, D] view of a contiguous [B, T, H, D]. */
clm_tresult clm_fused_causal_attention(clm_tensor q, clm_tensor k, clm_tensor v);

/* 1 when float32 CPU attention takes clm's kernels (libtorch exports
 * sgemm_), 0 when it runs libtorch's SDPA. */
int clm_fused_causal_attention_native(void);

/* The instruction set of the attention's row loops (clm_rows.h), as
 * libtorch names its CPU capabilities: "AVX512", "AVX2" or "DEFAULT". A
 * static string. */
const char *clm_fused_attention_isa(void);

/* Makes isa's row loops the process's: 1 where this build and CPU have
 * them, else 0 and no change. For tests. */
int clm_fused_attention_use_isa(const char *isa);

/* 1 when the shim has CUDA kernels for the operations above. */
int clm_fused_cuda_kernels(void);

#ifdef __cplusplus
}
#endif

#endif
