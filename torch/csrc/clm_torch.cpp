// clm_torch.cpp — implementation of clm_torch.h over ATen.
//
// Every entry point runs its body through clm::guard (clm_internal.h), which
// turns any C++ exception into an error string returned by value.
#include "clm_internal.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>
#include <torch/cuda.h>

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#ifdef CLM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace {

using clm::dup;
using clm::guard;
using clm::T;
using clm::tresult;
using clm::wrap;

c10::optional<at::Tensor> opt(clm_tensor h) {
  if (h == nullptr) return c10::nullopt;
  return h->t;
}

at::Device dev(int d) {
  if (d < 0) return at::Device(at::kCPU);
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(d));
}

int devcode(const at::Device &d) {
  if (d.is_cpu()) return -1;
  return d.index() < 0 ? 0 : d.index();
}

at::ScalarType st(int dtype) {
  if (dtype < 0 || dtype >= static_cast<int>(at::ScalarType::NumOptions))
    throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
  return static_cast<at::ScalarType>(dtype);
}

at::IntArrayRef ints(const int64_t *p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

std::vector<at::Tensor> tensors(const clm_tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

// library_file is the path of the shared library that holds addr.
std::string library_file(void *addr) {
  Dl_info info{};
  if (dladdr(addr, &info) == 0 || info.dli_fname == nullptr) return "unknown";
  return info.dli_fname;
}

// parallel_backend names ATen's intra-op backend ("OpenMP", "native thread pool").
std::string parallel_backend() {
  const std::string info = at::get_parallel_info();
  const std::string key = "parallel backend: ";
  auto at_key = info.find(key);
  if (at_key == std::string::npos) return "unknown";
  auto start = at_key + key.size();
  return info.substr(start, info.find('\n', start) - start);
}

// kernel_team is how many threads at::parallel_for gives the shim's own CPU
// kernels at this thread's thread count: 1 where the shim was compiled
// without OpenMP (ATen runs parallel_for serially in such a caller,
// CMakeLists.txt), whatever libtorch's own ops get.
int kernel_team() {
  std::atomic<int> team{1};
  at::parallel_for(0, 1 << 12, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num() + 1;
    int seen = team.load();
    while (seen < t && !team.compare_exchange_weak(seen, t)) {
    }
  });
  return team.load();
}

#ifdef CLM_WITH_CUDA
// dotted writes a CUDA-style version number (13020 -> "13.2").
std::string dotted(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

// cuda_report adds the CUDA runtime, driver, cuDNN and the devices to a build
// report; with no device, device_error says why (no driver, no GPU, ...).
template <class KV>
void cuda_report(KV &kv) {
  kv("cuda_compiled", dotted(CUDART_VERSION));
  int runtime = 0, driver = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) kv("cuda_runtime", dotted(runtime));
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0) kv("cuda_driver", dotted(driver));
  try {
    const auto &hooks = at::detail::getCUDAHooks();
    if (hooks.compiledWithCuDNN()) {
      long v = hooks.versionRuntimeCuDNN();
      kv("cudnn", std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100));
    }
  } catch (...) {
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    kv("device_error", cudaGetErrorString(e));
    cudaGetLastError();  // clear the sticky error
    n = 0;
  }
  kv("devices", std::to_string(n));
  for (int i = 0; i < n; i++) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    char line[512];
    std::snprintf(line, sizeof line, "%d %s sm_%d%d %.1f GiB", i, p.name, p.major, p.minor,
                  static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    kv("device", line);
  }
}
#endif

}  // namespace

extern "C" {

void clm_free_string(char *s) { std::free(s); }
void clm_tensor_free(clm_tensor t) { delete t; }

// ---- library ------------------------------------------------------------

void clm_capabilities(char *buf, size_t n) {
  int cuda_build = 0;
#ifdef CLM_WITH_CUDA
  cuda_build = 1;
#endif
  int autocast_api_24 = CLM_TORCH_AT_LEAST(2, 4);
  std::snprintf(buf, n, "torch=%s cuda_build=%d cuda_available=%d autocast_device_api=%d fused_adamw_cpu=%d",
                TORCH_VERSION, cuda_build, clm_cuda_is_available(), autocast_api_24, clm_adamw_has_fused(-1));
}

char *clm_build_report(char **out) {
  return guard([&] {
    std::string r;
    auto kv = [&r](const char *k, const std::string &v) { r += std::string(k) + "=" + v + "\n"; };
    kv("torch", TORCH_VERSION);
    kv("shim", library_file(reinterpret_cast<void *>(&clm_build_report)));
    kv("libtorch", library_file(reinterpret_cast<void *>(&at::get_num_threads)));
    kv("threads", std::to_string(at::get_num_threads()));
    kv("parallel", parallel_backend());
    kv("kernel_threads", std::to_string(kernel_team()));
#ifdef CLM_WITH_CUDA
    kv("cuda_build", "1");
#ifdef CLM_WITH_CUDA_KERNELS
    kv("cuda_kernels", "1");
#else
    kv("cuda_kernels", "0");
#endif
    cuda_report(kv);
#else
    kv("cuda_build", "0");
    kv("cuda_kernels", "0");
#endif
    *out = dup(r);
  });
}

char *clm_set_num_threads(int n) {
  return guard([&] { at::set_num_threads(n); });
}
int clm_get_num_threads(void) { return at::get_num_threads(); }

int clm_cuda_is_available(void) {
  try {
    return torch::cuda::is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int clm_cuda_device_count(void) {
  try {
    return static_cast<int>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

char *clm_synchronize(int device) {
  return guard([&] {
    if (device >= 0) torch::cuda::synchronize(device);
  });
}

char *clm_manual_seed(uint64_t seed) {
  // As torch.manual_seed: the CPU generator and every CUDA device's.
  return guard([&] {
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(seed);
    }
    if (at::hasCUDA()) {
      int n = clm_cuda_device_count();
      for (int i = 0; i < n; i++) {
        auto gen = at::globalContext().defaultGenerator(dev(i));
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_current_seed(seed);
      }
    }
  });
}

clm_tresult clm_rng_state(int device) {
  return tresult([&] {
    auto gen = device < 0 ? at::detail::getDefaultCPUGenerator() : at::globalContext().defaultGenerator(dev(device));
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  });
}

char *clm_set_rng_state(int device, clm_tensor state) {
  return guard([&] {
    auto gen = device < 0 ? at::detail::getDefaultCPUGenerator() : at::globalContext().defaultGenerator(dev(device));
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(T(state));
  });
}

char *clm_cuda_memory(int device, int64_t *allocated, int64_t *peak) {
  return guard([&] {
#ifdef CLM_WITH_CUDA
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto &a = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    *allocated = a.current;
    *peak = a.peak;
#else
    (void)device;
    (void)allocated;
    (void)peak;
    throw std::runtime_error("CUDA memory statistics: the shim was built without CUDA");
#endif
  });
}

char *clm_cuda_reset_peak(int device) {
  return guard([&] {
#ifdef CLM_WITH_CUDA
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#else
    (void)device;
    throw std::runtime_error("CUDA memory statistics: the shim was built without CUDA");
#endif
  });
}

char *clm_cuda_mem_info(int device, int64_t *free_bytes, int64_t *total_bytes, int64_t *reserved) {
  return guard([&] {
#ifdef CLM_WITH_CUDA
    c10::cuda::CUDAGuard g(static_cast<c10::DeviceIndex>(device));
    size_t f = 0, t = 0;
    cudaError_t e = cudaMemGetInfo(&f, &t);
    if (e != cudaSuccess) throw std::runtime_error(std::string("cudaMemGetInfo: ") + cudaGetErrorString(e));
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    *free_bytes = static_cast<int64_t>(f);
    *total_bytes = static_cast<int64_t>(t);
    *reserved = stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
#else
    (void)device;
    (void)free_bytes;
    (void)total_bytes;
    (void)reserved;
    throw std::runtime_error("CUDA memory information: the shim was built without CUDA");
#endif
  });
}

char *clm_cuda_empty_cache(void) {
  return guard([&] {
#ifdef CLM_WITH_CUDA
    c10::cuda::CUDACachingAllocator::emptyCache();
#else
    throw std::runtime_error("CUDA cache: the shim was built without CUDA");
#endif
  });
}

// ---- grad mode and autocast ------------------------------------------------

int clm_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }
void clm_set_grad_enabled(int enabled) { c10::GradMode::set_enabled(enabled != 0); }

clm_iresult clm_autocast_enter(int device_type, int dtype) {
  clm_iresult r{0, nullptr};
  r.err = guard([&] {
    auto dt = st(dtype);
#if CLM_TORCH_AT_LEAST(2, 4)
    auto d = device_type == 1 ? at::kCUDA : at::kCPU;
    r.v = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::set_autocast_dtype(d, dt);
#else
    if (device_type == 1) {
      r.v = at::autocast::is_enabled() ? 1 : 0;
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dt);
    } else {
      r.v = at::autocast::is_cpu_enabled() ? 1 : 0;
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dt);
    }
#endif
    at::autocast::increment_nesting();
  });
  return r;
}

char *clm_autocast_exit(int device_type, int prev_enabled) {
  return guard([&] {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if CLM_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(device_type == 1 ? at::kCUDA : at::kCPU, prev_enabled != 0);
#else
    if (device_type == 1)
      at::autocast::set_enabled(prev_enabled != 0);
    else
      at::autocast::set_cpu_enabled(prev_enabled != 0);
#endif
  });
}

// ---- creation and data ------------------------------------------------------

clm_tresult clm_from_data(const void *data, size_t nbytes, const int64_t *shape, int ndim, int dtype, int device) {
  return tresult([&] {
    auto t = at::empty(ints(shape, ndim), at::TensorOptions().dtype(st(dtype)));
    if (t.nbytes() != nbytes)
      throw std::invalid_argument("from_data: " + std::to_string(nbytes) + " bytes for a tensor of " +
                                  std::to_string(t.nbytes()));
    if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
    return device < 0 ? t : t.to(dev(device));
  });
}

char *clm_copy_to(clm_tensor h, void *dst, size_t nbytes) {
  return guard([&] {
    auto c = T(h).detach().to(at::kCPU).contiguous();
    if (c.nbytes() != nbytes)
      throw std::invalid_argument("copy_to: destination of " + std::to_string(nbytes) + " bytes for a tensor of " +
                                  std::to_string(c.nbytes()));
    if (nbytes > 0) std::memcpy(dst, c.data_ptr(), nbytes);
  });
}

clm_tresult clm_full(const int64_t *shape, int ndim, double value, int dtype, int device) {
  return tresult([&] { return at::full(ints(shape, ndim), value, at::TensorOptions().dtype(st(dtype)).device(dev(device))); });
}

clm_tresult clm_arange(double start, double end, double step, int dtype, int device) {
  return tresult([&] { return at::arange(start, end, step, at::TensorOptions().dtype(st(dtype)).device(dev(device))); });
}

clm_tresult clm_eye(int64_t n, int64_t m, int dtype, int device) {
  return tresult([&] { return at::eye(n, m, at::TensorOptions().dtype(st(dtype)).device(dev(device))); });
}

clm_tresult clm_randn(const int64_t *shape, int ndim, int dtype, int device) {
  return tresult([&] { return at::randn(ints(shape, ndim), at::TensorOptions().dtype(st(dtype)).device(dev(device))); });
}

clm_tresult clm_rand(const int64_t *shape, int ndim, int dtype, int device) {
  return tresult([&] { return at::rand(ints(shape, ndim), at::TensorOptions().dtype(st(dtype)).device(dev(device))); });
}

// ---- metadata ---------------------------------------------------------------

int clm_dim(clm_tensor h) { return static_cast<int>(h->t.dim()); }
void clm_shape(clm_tensor h, int64_t *shape) {
  auto s = h->t.sizes();
  for (size_t i = 0; i < s.size(); i++) shape[i] = s[i];
}
int clm_dtype(clm_tensor h) { return static_cast<int>(h->t.scalar_type()); }
int clm_device(clm_tensor h) { return devcode(h->t.device()); }
int64_t clm_numel(clm_tensor h) { return h->t.numel(); }
int clm_requires_grad(clm_tensor h) { return h->t.requires_grad() ? 1 : 0; }
int clm_defined(clm_tensor h) { return h->t.defined() ? 1 : 0; }

clm_dresult clm_item(clm_tensor h) {
  clm_dresult r{0, nullptr};
  r.err = guard([&] { r.v = T(h).item<double>(); });
  return r;
}

// ---- in place ---------------------------------------------------------------

char *clm_normal_(clm_tensor h, double mean, double std) {
  return guard([&] {
    at::NoGradGuard ng;
    T(h).normal_(mean, std);
  });
}

char *clm_uniform_(clm_tensor h, double a, double b) {
  return guard([&] {
    at::NoGradGuard ng;
    T(h).uniform_(a, b);
  });
}

// Same steps as torch.nn.init.orthogonal_, so that a seeded generator gives
// the same matrix as PyTorch: QR of a standard normal matrix, signs fixed by
// the diagonal of R.
char *clm_orthogonal_(clm_tensor h, double gain) {
  return guard([&] {
    at::NoGradGuard ng;
    auto &t = T(h);
    if (t.dim() < 2) throw std::invalid_argument("orthogonal_: only tensors with 2 or more dimensions are supported");
    if (t.numel() == 0) return;
    int64_t rows = t.size(0);
    int64_t cols = t.numel() / rows;
    auto flat = t.new_empty({rows, cols}).normal_(0, 1);
    if (rows < cols) flat.t_();
    auto qr = at::linalg_qr(flat);
    auto q = std::get<0>(qr);
    auto r = std::get<1>(qr);
    auto d = at::diag(r, 0);
    q.mul_(d.sign());
    if (rows < cols) q.t_();
    t.view_as(q).copy_(q);
    t.mul_(gain);
  });
}

char *clm_copy_(clm_tensor dst, clm_tensor src) {
  return guard([&] {
    at::NoGradGuard ng;
    T(dst).copy_(T(src));
  });
}

char *clm_fill_(clm_tensor h, double value) {
  return guard([&] {
    at::NoGradGuard ng;
    T(h).fill_(value);
  });
}

char *clm_mul_scalar_(clm_tensor h, double s) {
  return guard([&] {
    at::NoGradGuard ng;
    T(h).mul_(s);
  });
}

char *clm_add_(clm_tensor h, clm_tensor other, double alpha) {
  return guard([&] {
    at::NoGradGuard ng;
    T(h).add_(T(other), alpha);
  });
}

char *clm_lerp_(clm_tensor h, clm_tensor end, double weight) {
  return guard([&] {
    at::NoGradGuard ng;
    T(h).lerp_(T(end), weight);
  });
}

char *clm_set_requires_grad(clm_tensor h, int flag) {
  return guard([&] { T(h).set_requires_grad(flag != 0); });
}

// ---- ops --------------------------------------------------------------------

clm_tresult clm_unary(int op, clm_tensor h) {
  return tresult([&]() -> at::Tensor {
    const auto &a = T(h);
    switch (op) {
      case CLM_UNARY_NEG: return at::neg(a);
      case CLM_UNARY_EXP: return at::exp(a);
      case CLM_UNARY_LOG: return at::log(a);
      case CLM_UNARY_SQRT: return at::sqrt(a);
      case CLM_UNARY_RSQRT: return at::rsqrt(a);
      case CLM_UNARY_TANH: return at::tanh(a);
      case CLM_UNARY_RELU: return at::relu(a);
      case CLM_UNARY_SIGMOID: return at::sigmoid(a);
      case CLM_UNARY_ABS: return at::abs(a);
      case CLM_UNARY_SIGN: return at::sign(a);
      case CLM_UNARY_SQUARE: return at::square(a);
      case CLM_UNARY_CONTIGUOUS: return a.contiguous();
      case CLM_UNARY_CLONE: return a.clone();
      case CLM_UNARY_DETACH: return a.detach();
      case CLM_UNARY_T: return a.t();
      case CLM_UNARY_LOGICAL_NOT: return at::logical_not(a);
    }
    throw std::invalid_argument("unknown unary op " + std::to_string(op));
  });
}

clm_tresult clm_binary(int op, clm_tensor ha, clm_tensor hb) {
  return tresult([&]() -> at::Tensor {
    const auto &a = T(ha);
    const auto &b = T(hb);
    switch (op) {
      case CLM_BINARY_ADD: return at::add(a, b);
      case CLM_BINARY_SUB: return at::sub(a, b);
      case CLM_BINARY_MUL: return at::mul(a, b);
      case CLM_BINARY_DIV: return at::div(a, b);
      case CLM_BINARY_MATMUL: return at::matmul(a, b);
      case CLM_BINARY_MAXIMUM: return at::maximum(a, b);
      case CLM_BINARY_MINIMUM: return at::minimum(a, b);
      case CLM_BINARY_EQ: return at::eq(a, b);
      case CLM_BINARY_NE: return at::ne(a, b);
      case CLM_BINARY_LT: return at::lt(a, b);
      case CLM_BINARY_LE: return at::le(a, b);
      case CLM_BINARY_GT: return at::gt(a, b);
      case CLM_BINARY_GE: return at::ge(a, b);
      case CLM_BINARY_POW: return at::pow(a, b);
    }
    throw std::invalid_argument("unknown binary op " + std::to_string(op));
  });
}

clm_tresult clm_scalar(int op, clm_tensor ha, double s) {
  return tresult([&]() -> at::Tensor {
    const auto &a = T(ha);
    switch (op) {
      case CLM_SCALAR_ADD: return at::add(a, s);
      case CLM_SCALAR_MUL: return at::mul(a, s);
      case CLM_SCALAR_DIV: return at::div(a, s);
      case CLM_SCALAR_POW: return at::pow(a, s);
      case CLM_SCALAR_RSUB: return at::rsub(a, s);
      case CLM_SCALAR_EQ: return at::eq(a, s);
      case CLM_SCALAR_NE: return at::ne(a, s);
      case CLM_SCALAR_LT: return at::lt(a, s);
      case CLM_SCALAR_LE: return at::le(a, s);
      case CLM_SCALAR_GT: return at::gt(a, s);
      case CLM_SCALAR_GE: return at::ge(a, s);
      case CLM_SCALAR_CLAMP_MIN: return at::clamp_min(a, s);
      case CLM_SCALAR_CLAMP_MAX: return at::clamp_max(a, s);
    }
    throw std::invalid_argument("unknown scalar op " + std::to_string(op));
  });
}

clm_tresult clm_where(clm_tensor c, clm_tensor a, clm_tensor b) {
  return tresult([&] { return at::where(T(c), T(a), T(b)); });
}

clm_tresult clm_addmm_scaled(clm_tensor bias, clm_tensor a, clm_tensor b, double beta, double alpha) {
  return tresult([&] { return at::addmm(T(bias), T(a), T(b), beta, alpha); });
}

clm_tresult clm_lerp(clm_tensor a, clm_tensor end, double weight) {
  return tresult([&] { return at::lerp(T(a), T(end), weight); });
}

clm_tresult clm_linear(clm_tensor x, clm_tensor w, clm_tensor b) {
  return tresult([&] { return at::linear(T(x), T(w), opt(b)); });
}

clm_tresult clm_embedding(clm_tensor w, clm_tensor idx) {
  return tresult([&] { return at::embedding(T(w), T(idx)); });
}

clm_tresult clm_softmax(clm_tensor a, int64_t dim) {
  return tresult([&] { return at::softmax(T(a), dim); });
}

clm_tresult clm_log_softmax(clm_tensor a, int64_t dim) {
  return tresult([&] { return at::log_softmax(T(a), dim); });
}

clm_tresult clm_gelu(clm_tensor a, int tanh_approx) {
  return tresult([&] { return at::gelu(T(a), tanh_approx ? "tanh" : "none"); });
}

clm_tresult clm_leaky_relu(clm_tensor a, double slope) {
  return tresult([&] { return at::leaky_relu(T(a), slope); });
}

clm_tresult clm_layer_norm(clm_tensor x, const int64_t *shape, int ndim, clm_tensor w, clm_tensor b, double eps) {
  return tresult([&] { return at::layer_norm(T(x), ints(shape, ndim), opt(w), opt(b), eps); });
}

clm_tresult clm_dropout(clm_tensor a, double p, int train) {
  return tresult([&] { return at::dropout(T(a), p, train != 0); });
}

clm_tresult clm_cross_entropy(clm_tensor logits, clm_tensor target, int64_t ignore_index, int reduction) {
  return tresult([&] {
    if (reduction < 0 || reduction > 2) throw std::invalid_argument("cross_entropy: unknown reduction");
    return at::cross_entropy_loss(T(logits), T(target), c10::nullopt, reduction, ignore_index, 0.0);
  });
}

clm_tresult clm_sdpa(clm_tensor q, clm_tensor k, clm_tensor v, clm_tensor mask, double dropout, int causal,
                     double scale) {
  return tresult([&] {
    c10::optional<double> s;
    if (scale > 0) s = scale;
    return at::scaled_dot_product_attention(T(q), T(k), T(v), opt(mask), dropout, causal != 0, s);
  });
}

// ---- reductions ---------------------------------------------------------------

clm_tresult clm_sum(clm_tensor a, const int64_t *dims, int n, int keepdim) {
  return tresult([&] { return n == 0 && !keepdim ? T(a).sum() : at::sum(T(a), ints(dims, n), keepdim != 0); });
}

clm_tresult clm_mean(clm_tensor a, const int64_t *dims, int n, int keepdim) {
  return tresult([&] { return n == 0 && !keepdim ? T(a).mean() : at::mean(T(a), ints(dims, n), keepdim != 0); });
}

clm_tresult clm_var(clm_tensor a, const int64_t *dims, int n, int64_t correction, int keepdim) {
  return tresult([&] {
    at::OptionalIntArrayRef d;
    if (n > 0) d = ints(dims, n);
    return at::var(T(a), d, at::Scalar(correction), keepdim != 0);
  });
}

clm_tresult clm_norm(clm_tensor a, double p, const int64_t *dims, int n, int keepdim) {
  return tresult([&] {
    at::OptionalIntArrayRef d;
    if (n > 0) d = ints(dims, n);
    return at::linalg_vector_norm(T(a), p, d, keepdim != 0);
  });
}

clm_tresult clm_amax(clm_tensor a, const int64_t *dims, int n, int keepdim) {
  return tresult([&] { return at::amax(T(a), ints(dims, n), keepdim != 0); });
}

clm_tresult clm_max(clm_tensor a, int64_t dim, int keepdim) {
  return tresult([&] { return dim == INT64_MIN ? T(a).max() : std::get<0>(T(a).max(dim, keepdim != 0)); });
}

clm_tresult clm_median(clm_tensor a, int64_t dim, int keepdim) {
  return tresult([&] { return dim == INT64_MIN ? T(a).median() : std::get<0>(T(a).median(dim, keepdim != 0)); });
}

clm_tresult clm_cumsum(clm_tensor a, int64_t dim) {
  return tresult([&] { return at::cumsum(T(a), dim); });
}

// ---- shapes -------------------------------------------------------------------

clm_tresult clm_reshape(clm_tensor a, const int64_t *shape, int n) {
  return tresult([&] { return T(a).reshape(ints(shape, n)); });
}
clm_tresult clm_view(clm_tensor a, const int64_t *shape, int n) {
  return tresult([&] { return T(a).view(ints(shape, n)); });
}
clm_tresult clm_expand(clm_tensor a, const int64_t *shape, int n) {
  return tresult([&] { return T(a).expand(ints(shape, n)); });
}
clm_tresult clm_permute(clm_tensor a, const int64_t *dims, int n) {
  return tresult([&] { return T(a).permute(ints(dims, n)); });
}
clm_tresult clm_transpose(clm_tensor a, int64_t d0, int64_t d1) {
  return tresult([&] { return T(a).transpose(d0, d1); });
}
clm_tresult clm_unsqueeze(clm_tensor a, int64_t dim) {
  return tresult([&] { return T(a).unsqueeze(dim); });
}
clm_tresult clm_squeeze(clm_tensor a, int64_t dim) {
  return tresult([&] { return T(a).squeeze(dim); });
}
clm_tresult clm_narrow(clm_tensor a, int64_t dim, int64_t start, int64_t length) {
  return tresult([&] { return T(a).narrow(dim, start, length); });
}
clm_tresult clm_index_select(clm_tensor a, int64_t dim, clm_tensor index) {
  return tresult([&] { return at::index_select(T(a), dim, T(index)); });
}
clm_tresult clm_cat(const clm_tensor *ts, int n, int64_t dim) {
  return tresult([&] { return at::cat(tensors(ts, n), dim); });
}
clm_tresult clm_stack(const clm_tensor *ts, int n, int64_t dim) {
  return tresult([&] { return at::stack(tensors(ts, n), dim); });
}

char *clm_split(clm_tensor a, int64_t size, int64_t dim, clm_tensor *out, int cap, int *n) {
  return guard([&] {
    auto parts = T(a).split(size, dim);
    if (static_cast<int>(parts.size()) > cap)
      throw std::invalid_argument("split: " + std::to_string(parts.size()) + " chunks exceed the capacity " +
                                  std::to_string(cap));
    *n = static_cast<int>(parts.size());
    for (size_t i = 0; i < parts.size(); i++) out[i] = wrap(parts[i]);
  });
}

char *clm_linalg_eigh(clm_tensor a, clm_tensor *vals, clm_tensor *vecs) {
  return guard([&] {
    auto r = at::linalg_eigh(T(a), "L");
    *vals = wrap(std::get<0>(r));
    *vecs = wrap(std::get<1>(r));
  });
}

char *clm_linalg_qr(clm_tensor a, clm_tensor *q, clm_tensor *r) {
  return guard([&] {
    auto res = at::linalg_qr(T(a), "reduced");
    *q = wrap(std::get<0>(res));
    *r = wrap(std::get<1>(res));
  });
}

char *clm_sort(clm_tensor a, int64_t dim, int descending, clm_tensor *vals, clm_tensor *idx) {
  return guard([&] {
    auto r = at::sort(T(a), dim, descending != 0);
    *vals = wrap(std::get<0>(r));
    *idx = wrap(std::get<1>(r));
  });
}

clm_tresult clm_fake_quantize_per_tensor(clm_tensor a, double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  return tresult([&] { return at::fake_quantize_per_tensor_affine(T(a), scale, zero_point, qmin, qmax); });
}

clm_tresult clm_fake_quantize_per_channel(clm_tensor a, clm_tensor scale, clm_tensor zero_point, int64_t axis,
                                          int64_t qmin, int64_t qmax) {
  return tresult([&] {
    return at::fake_quantize_per_channel_affine(T(a), T(scale), T(zero_point), axis, qmin, qmax);
  });
}

clm_tresult clm_tril(clm_tensor a, int64_t k) {
  return tresult([&] { return at::tril(T(a), k); });
}
clm_tresult clm_triu(clm_tensor a, int64_t k) {
  return tresult([&] { return at::triu(T(a), k); });
}
clm_tresult clm_masked_fill(clm_tensor a, clm_tensor mask, double value) {
  return tresult([&] { return T(a).masked_fill(T(mask), value); });
}
clm_tresult clm_to(clm_tensor a, int dtype, int device) {
  return tresult([&] { return T(a).to(dev(device), st(dtype)); });
}
clm_tresult clm_upload(clm_tensor a, int device) {
  return tresult([&] {
    const at::Tensor &x = T(a);
    if (device < 0 || !x.is_cpu()) return x.to(dev(device));
    // From pageable memory the copy would wait for the device's queue; from
    // pinned memory (the caching host allocator, which keeps the block until
    // the copy is done) it is queued like a kernel.
    return x.pin_memory().to(dev(device), /*non_blocking=*/true);
  });
}

// ---- autograd -----------------------------------------------------------------

char *clm_backward(clm_tensor t, clm_tensor grad) {
  return guard([&] {
    if (grad == nullptr)
      T(t).backward();
    else
      T(t).backward(T(grad));
  });
}

clm_tresult clm_grad(clm_tensor h) {
  clm_tresult r{nullptr, nullptr};
  r.err = guard([&] {
    const auto &g = T(h).grad();
    if (g.defined()) r.t = wrap(g);
  });
  return r;
}

char *clm_set_grad_none(clm_tensor h) {
  return guard([&] { T(h).mutable_grad().reset(); });
}

char *clm_accumulate_grad(clm_tensor h, clm_tensor g) {
  // What autograd's AccumulateGrad does for a dense gradient: the first one
  // becomes .grad (a copy, as the caller keeps g), later ones are added in
  // place, outside autograd.
  return guard([&] {
    at::NoGradGuard no_grad;
    at::Tensor &grad = T(h).mutable_grad();
    if (!grad.defined()) {
      grad = T(g).detach().clone(at::MemoryFormat::Contiguous);
    } else {
      grad.add_(T(g));
    }
  });
}

clm_tresult clm_clip_grad_norm(const clm_tensor *ts, int n, double max_norm, double p) {
  // torch.nn.utils.clip_grad_norm_ with its default foreach path: per-tensor
  // norms, the norm of those, coefficient 1/(total + 1e-6) * max_norm
  // clamped at 1, gradients scaled in place.
  return tresult([&] {
    at::NoGradGuard ng;
    std::vector<at::Tensor> grads;
    for (int i = 0; i < n; i++) {
      const auto &g = T(ts[i]).grad();
      if (g.defined()) grads.push_back(g);
    }
    if (grads.empty()) return at::zeros({}, at::kFloat);
    // Group by (device, dtype) in first-seen order, as PyTorch does.
    std::vector<std::vector<at::Tensor>> groups;
    for (auto &g : grads) {
      bool placed = false;
      for (auto &grp : groups)
        if (grp[0].device() == g.device() && grp[0].scalar_type() == g.scalar_type()) {
          grp.push_back(g);
          placed = true;
          break;
        }
      if (!placed) groups.push_back({g});
    }
    std::vector<at::Tensor> norms;
    for (auto &grp : groups) {
      auto ns = at::_foreach_norm(grp, p);
      norms.insert(norms.end(), ns.begin(), ns.end());
    }
    auto first = grads[0].device();
    for (auto &x : norms) x = x.to(first);
    auto total = at::linalg_vector_norm(at::stack(norms), p);
    auto coef = at::clamp_max(total.add(1e-6).reciprocal().mul(max_norm), 1.0);
    for (auto &grp : groups) {
      at::_foreach_mul_(grp, coef.to(grp[0].device()));
    }
    return total;
  });
}

}  // extern "C"
