// clm_rows.h — the row loops of clm's CPU attention (clm_fused_attention.cpp):
// the softmax of a row of scores, its gradient, and a dot product.
//
// clm_rows_impl.h holds the loops once; clm_rows_avx512.cpp, clm_rows_avx2.cpp
// and clm_rows_default.cpp compile them for AVX-512, AVX2 and the x86-64
// baseline (other CPUs: the baseline only), each in its own namespace with
// internal linkage, so that no instruction of a wider set leaks into code
// the other files share. The process runs one set, chosen once
// (clm_rows.cpp): the one libtorch chose for its own kernels
// (at::get_cpu_capability(), which ATEN_CPU_CAPABILITY lowers), where this
// CPU and build have it. Every set computes the same bits: the files are
// compiled with -ffp-contract=off and sum over fixed lanes in a fixed order,
// which TestFusedCausalAttentionISAs holds them to.
#ifndef CLM_ROWS_H
#define CLM_ROWS_H

#include <cstdint>

namespace clm {

// RowKernels are the loops compiled for one instruction set.
struct RowKernels {
  const char *isa;  // as libtorch names it: "AVX512", "AVX2" or "DEFAULT"
  // softmax_row turns the scores s[0, n) into P = e^(s − m)/Σ in place and
  // returns L = m + log Σ (m the row's maximum).
  float (*softmax_row)(float *s, int64_t n);
  // grad_row recomputes p = e^(s − L) in place over [0, n) and turns dP into
  // dS = p·(dP − delta) in place.
  void (*grad_row)(float *s, float *dp, int64_t n, float L, float delta);
  // dot is Σ a[j]·b[j] over [0, n).
  float (*dot)(const float *a, const float *b, int64_t n);
};

// The sets this build has; each defined in its clm_rows_<isa>.cpp.
extern const RowKernels rows_default;
#if defined(CLM_ROWS_X86)
extern const RowKernels rows_avx2;
extern const RowKernels rows_avx512;
#endif

// row_kernels is the set the process runs.
const RowKernels &row_kernels();

// use_row_kernels makes isa's set the process's and says whether it could:
// false (and no change) where this build or CPU lacks it. For tests, which
// hold every set to the same bits.
bool use_row_kernels(const char *isa);

}  // namespace clm

#endif
