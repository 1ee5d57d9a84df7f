// clm_exp.h — the exponential of the shim's softmax loops (clm_rows.h).
//
// Include it only in files compiled with -ffp-contract=off (CMakeLists.txt):
// then the loops compute the same bits for every instruction set.
#ifndef CLM_EXP_H
#define CLM_EXP_H

#include <cstdint>
#include <cstring>

namespace clm {

// exp_neg is e^x for the x ≤ 0 of a softmax (x − its row's maximum), in
// loops the compiler vectorises: n = round(x·log₂e), r = x − n·ln 2 in two
// parts (|r| ≤ ln 2 / 2), e^r by its Taylor series to r⁸/8! (below float's
// rounding there), times 2ⁿ by the exponent bits. Below e^−87.3 (float's
// smallest normal) it is 0; NaN stays NaN. Off by at most 1.14 ulp from
// e^x over [−87.3, 0] (every 16th float against exp in double, 2026-12-06).
// Static: each file compiled for its own instruction set keeps its own copy.
static inline float exp_neg(float x) {
  const float lo = -87.3f;
  const float xc = x < lo ? lo : x;
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;  // 1.5·2²³: round to nearest
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.f / 40320;
  p = p * r + 1.f / 5040;
  p = p * r + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return x < lo ? 0.f : p * two_n;
}

}  // namespace clm

#endif
