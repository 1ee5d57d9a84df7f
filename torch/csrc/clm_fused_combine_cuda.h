// clm_fused_combine_cuda.h — the CUDA kernels of clm_fused_combine.cpp
// (fused combine, shaped-attention epilogue), compiled by nvcc from
// clm_fused_combine.cu only in a shim built with CLM_WITH_CUDA_KERNELS. Not
// part of the C interface.
//
// Raw pointers and dtype codes, so that the .cu includes only CUDA's headers:
// the caller allocates every buffer, converts the gains to the arithmetic
// type (float, or double for kF64) and passes its current stream. The dtype
// pairs are those of the CPU kernels: the inputs' dtype equals the result's,
// or bf16/fp16 inputs give an fp32 result. Errors are thrown as
// std::runtime_error.
#ifndef CLM_FUSED_COMBINE_CUDA_H
#define CLM_FUSED_COMBINE_CUDA_H

#include <cstdint>

namespace clm {
namespace fused_combine_cuda {

enum Dtype : int { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3 };

// A [B, H, T, D] tensor's strides, in elements.
struct Strides4 {
  int64_t b, h, t, d;
};

// out = Σ_k g[k]·x[k] (n = 2 or 3; x contiguous, of type xdt; out of type
// odt), each product and partial sum rounded to odt, with no FMA.
void combine_forward(int odt, int xdt, const void *const *x, int n, const void *g, void *out, int64_t numel,
                     void *stream);

// How many partial sums per gain combine_backward's scratch must hold.
int64_t combine_partials(int64_t numel);

// dx[k] = xdt(odt(grad·g[k])) where dx[k] is not null; dg[k] = Σ odt(grad·x[k])
// where x[k] is not null, summed in the arithmetic type over fixed chunks and
// the chunks in order (deterministic), into dg (n arithmetic values); partial
// holds combine_partials(numel)·n arithmetic values.
void combine_backward(int odt, int xdt, const void *grad, const void *const *x, const void *g, void *const *dx,
                      void *dg, void *partial, int n, int64_t numel, void *stream);

// out = resid·y + skip·v − centre·cumsum(v, 2)/(t+1) with the composite's
// roundings; y of type ydt (vdt's or odt's), v of type vdt, out of type odt;
// gains [3, H] arithmetic (resid, skip, centre). cum_f32: the running sum and
// mean stay fp32 (cumsum under CUDA autocast) instead of rounding to vdt.
void epilogue_forward(int odt, int vdt, int ydt, const void *y, Strides4 sy, const void *v, Strides4 sv,
                      const void *gains, void *out, Strides4 so, int64_t B, int64_t H, int64_t T, int64_t D,
                      bool cum_f32, void *stream);

// How many arithmetic values epilogue_backward's scratch must hold.
int64_t epilogue_partials(int64_t B, int64_t H, int64_t D);

// The epilogue's gradients for grad (type odt, strides sg): dy (type ydt)
// and dv (type vdt), both in grad's strides, where not null; dgains [3, H]
// (arithmetic) for the gains need[j] selects, where dgains is not null (y is
// read only for need[0], v only for need[1] or need[2]).
void epilogue_backward(int odt, int vdt, int ydt, const void *grad, Strides4 sg, const void *y, Strides4 sy,
                       const void *v, Strides4 sv, const void *gains, void *dy, void *dv, void *dgains,
                       void *partial, const bool need[3], int64_t B, int64_t H, int64_t T, int64_t D, bool cum_f32,
                       void *stream);

}  // namespace fused_combine_cuda
}  // namespace clm

#endif
