// clm_rows.cpp — which of clm_rows.h's instruction sets the process runs.
#include "clm_rows.h"

#include <ATen/Version.h>

#include <atomic>
#include <cstring>
#include <string>

namespace {

// supported gives isa's kernels where this build has them and the CPU runs
// them (libtorch's capability may be forced above the CPU's by
// ATEN_CPU_CAPABILITY), else nullptr.
const clm::RowKernels *supported(const char *isa) {
  if (std::strcmp(isa, "DEFAULT") == 0) return &clm::rows_default;
#if defined(CLM_ROWS_X86)
  __builtin_cpu_init();
  if (std::strcmp(isa, "AVX2") == 0 && __builtin_cpu_supports("avx2")) return &clm::rows_avx2;
  if (std::strcmp(isa, "AVX512") == 0 && __builtin_cpu_supports("avx512f")) return &clm::rows_avx512;
#endif
  return nullptr;
}

// chosen is libtorch's capability where this build and CPU have it, else
// the widest set below it that they have.
const clm::RowKernels *chosen() {
  const std::string cap = at::get_cpu_capability();
  if (cap == "AVX512")
    if (const clm::RowKernels *k = supported("AVX512")) return k;
  if (cap == "AVX512" || cap == "AVX2")
    if (const clm::RowKernels *k = supported("AVX2")) return k;
  return &clm::rows_default;
}

std::atomic<const clm::RowKernels *> current{nullptr};

}  // namespace

const clm::RowKernels &clm::row_kernels() {
  const RowKernels *k = current.load(std::memory_order_acquire);
  if (k == nullptr) {
    k = chosen();
    const RowKernels *expected = nullptr;
    if (!current.compare_exchange_strong(expected, k)) k = expected;
  }
  return *k;
}

bool clm::use_row_kernels(const char *isa) {
  const RowKernels *k = supported(isa);
  if (k == nullptr) return false;
  current.store(k, std::memory_order_release);
  return true;
}
