// clm_internal.h — what the shim's C++ sources share; not part of the C
// interface (clm_torch.h).
//
// guard() is the one place where C++ exceptions become error strings: every
// extern "C" entry point runs its body through it, so no exception crosses
// the C boundary.
#ifndef CLM_INTERNAL_H
#define CLM_INTERNAL_H

#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "clm_torch.h"

// CLM_TORCH_AT_LEAST(maj, min): the libtorch being compiled against is maj.min
// or later. clm requires 2.1 (CMakeLists.txt checks it at configure time);
// the shim tests the version only for APIs that changed since (2.3, 2.4).
#define CLM_TORCH_AT_LEAST(maj, min) \
  (TORCH_VERSION_MAJOR > (maj) || (TORCH_VERSION_MAJOR == (maj) && TORCH_VERSION_MINOR >= (min)))

#if !CLM_TORCH_AT_LEAST(2, 1)
#error "clm requires libtorch >= 2.1"
#endif

// The opaque handle behind clm_tensor.
struct clm_tensor_s {
  at::Tensor t;
};

namespace clm {

// dup copies s into malloc'd memory that Go frees with clm_free_string.
inline char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// guard runs body and returns nullptr, or the message of any exception it
// threw (libtorch's without its C++ backtrace).
template <typename F>
char *guard(F &&body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error &e) {
    return dup(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return dup(e.what());
  } catch (...) {
    return dup("unknown C++ exception");
  }
}

// cuda_kernels reports whether the shim was built with the fused ops' CUDA
// kernels (torch/csrc/*.cu, by nvcc).
inline bool cuda_kernels() {
#ifdef CLM_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

inline clm_tensor wrap(at::Tensor t) { return new clm_tensor_s{std::move(t)}; }

// tresult runs f, which returns a tensor, and wraps the tensor or the error.
template <typename F>
clm_tresult tresult(F &&f) {
  clm_tresult r{nullptr, nullptr};
  r.err = guard([&] { r.t = wrap(f()); });
  return r;
}

// autocast_on reports whether autocast is on for dev (the CPU or CUDA) on
// this thread, across the API change of libtorch 2.4.
inline bool autocast_on(at::DeviceType dev) {
#if CLM_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(dev);
#else
  if (dev == at::kCUDA) return at::autocast::is_enabled();
  return dev == at::kCPU && at::autocast::is_cpu_enabled();
#endif
}

// T borrows the tensor of a handle; a nil handle is an error.
inline const at::Tensor &T(clm_tensor h) {
  if (h == nullptr) throw std::invalid_argument("nil tensor handle");
  return h->t;
}

}  // namespace clm

#endif
