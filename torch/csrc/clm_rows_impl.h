// clm_rows_impl.h — the loops of clm_rows.h, included once by each
// clm_rows_<isa>.cpp with CLM_ROWS_NAME set to the RowKernels it defines.
// Only headers whose functions are C library calls or inline into these
// loops (clm_exp.h) are included: an out-of-line copy of a shared inline
// function compiled here for a wider set could be the one the linker keeps.
#ifndef CLM_ROWS_NAME
#error "define CLM_ROWS_NAME and CLM_ROWS_ISA before including clm_rows_impl.h"
#endif

#include <math.h>

#include "clm_exp.h"
#include "clm_rows.h"

namespace {

// Independent accumulators of the row sums and maxima, kept in vector
// registers (a single accumulator would not vectorise without
// reassociation, which would change the bits).
constexpr int kLanes = 16;

float softmax_row(float *__restrict__ s, int64_t n) {
  float mx[kLanes];
  for (int k = 0; k < kLanes; ++k) mx[k] = -INFINITY;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) mx[k] = s[j + k] > mx[k] ? s[j + k] : mx[k];
  for (int k = 0; j < n; ++j, ++k) mx[k] = s[j] > mx[k] ? s[j] : mx[k];
  float m = mx[0];
  for (int k = 1; k < kLanes; ++k) m = mx[k] > m ? mx[k] : m;
  float acc[kLanes] = {};
  for (j = 0; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float e = clm::exp_neg(s[j + k] - m);
      s[j + k] = e;
      acc[k] += e;
    }
  for (int k = 0; j < n; ++j, ++k) {
    const float e = clm::exp_neg(s[j] - m);
    s[j] = e;
    acc[k] += e;
  }
  float sum = 0.f;
  for (int k = 0; k < kLanes; ++k) sum += acc[k];
  const float inv = 1.f / sum;
  for (j = 0; j < n; ++j) s[j] *= inv;
  return m + logf(sum);
}

void grad_row(float *__restrict__ s, float *__restrict__ dp, int64_t n, float L, float delta) {
  for (int64_t j = 0; j < n; ++j) {
    const float p = clm::exp_neg(s[j] - L);
    s[j] = p;
    dp[j] = p * (dp[j] - delta);
  }
}

float dot(const float *__restrict__ a, const float *__restrict__ b, int64_t n) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += a[j + k] * b[j + k];
  for (int k = 0; j < n; ++j, ++k) acc[k] += a[j] * b[j];
  float s = 0.f;
  for (int k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

}  // namespace

const clm::RowKernels clm::CLM_ROWS_NAME = {CLM_ROWS_ISA, softmax_row, grad_row, dot};
