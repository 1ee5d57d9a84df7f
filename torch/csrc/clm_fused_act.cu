// clm_fused_act.cu — the CUDA kernels of the fused leaky ReLU and RMSNorm
// (see clm_fused_act_cuda.h and clm_fused_act.cpp, whose CPU loops these
// mirror operation for operation). Compiled with -fmad=false: no a·b+c is
// contracted into an FMA that the composite ops do not use; / and sqrt are
// IEEE round-to-nearest (nvcc's default -prec-div, -prec-sqrt).
//
// Reductions are deterministic: a row's sums use a fixed block size and a
// fixed shuffle tree; the scale gradient is summed over fixed row chunks
// whose partials are added in order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "clm_fused_act_cuda.h"

namespace {

using clm::fused_cuda::kBF16;
using clm::fused_cuda::kF16;
using clm::fused_cuda::kF32;
using clm::fused_cuda::kF64;

template <typename T>
struct Op {
  using type = float;
};
template <>
struct Op<double> {
  using type = double;
};

__device__ __forceinline__ float to_op(float v) { return v; }
__device__ __forceinline__ double to_op(double v) { return v; }
__device__ __forceinline__ float to_op(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_op(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_op(typename Op<T>::type v);
template <>
__device__ __forceinline__ float from_op<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_op<double>(double v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_op<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_op<__half>(float v) { return __float2half_rn(v); }

void check(const char *what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("clm fused CUDA kernel ") + what + ": " + cudaGetErrorString(e));
}

int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 65536 ? b : 65536);  // grid-stride beyond
}

// ---- leaky ReLU -----------------------------------------------------------------

template <typename T>
__global__ void leaky_forward_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t n, typename Op<T>::type s) {
  using op_t = typename Op<T>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    op_t v = to_op(x[i]);
    y[i] = from_op<T>(v >= 0 ? v : v * s);
  }
}

template <typename T>
__global__ void leaky_backward_kernel(const T *__restrict__ g, const T *__restrict__ c, T *__restrict__ dx, int64_t n,
                                      typename Op<T>::type s) {
  using op_t = typename Op<T>::type;
  const op_t z = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    op_t gv = to_op(g[i]);
    dx[i] = from_op<T>(to_op(c[i]) >= 0 ? gv + z * s : z + gv * s);
  }
}

template <typename T>
void leaky_forward_t(const void *x, void *y, int64_t n, double slope, cudaStream_t st) {
  using op_t = typename Op<T>::type;
  leaky_forward_kernel<T><<<blocks_for(n, 256), 256, 0, st>>>(static_cast<const T *>(x), static_cast<T *>(y), n,
                                                                  static_cast<op_t>(slope));
  check("leaky_relu");
}

template <typename T>
void leaky_backward_t(const void *g, const void *c, void *dx, int64_t n, double slope, cudaStream_t st) {
  using op_t = typename Op<T>::type;
  leaky_backward_kernel<T><<<blocks_for(n, 256), 256, 0, st>>>(static_cast<const T *>(g), static_cast<const T *>(c),
                                                                   static_cast<T *>(dx), n, static_cast<op_t>(slope));
  check("leaky_relu backward");
}

// ---- RMSNorm -------------------------------------------------------------------

constexpr int kRowThreads = 256;

// The sum of v over the block (kRowThreads threads), the same on every
// thread; a fixed tree, so a fixed result.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A *shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kRowThreads / 32 ? shared[lane] : A(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  A r = shared[0];
  __syncthreads();  // shared is reused by the next sum
  return r;
}

// One block a row: y = w·(x/a), a = sqrt(Σx²)·c + eps.
template <typename T, typename O>
__global__ void rms_forward_kernel(const T *__restrict__ x, const typename Op<T>::type *__restrict__ w, O *__restrict__ y,
                                   int64_t d, typename Op<T>::type c, typename Op<T>::type eps) {
  using op_t = typename Op<T>::type;
  __shared__ op_t shared[kRowThreads / 32];
  const T *xr = x + blockIdx.x * d;
  O *yr = y + blockIdx.x * d;
  op_t ss = 0;
  for (int64_t j = threadIdx.x; j < d; j += kRowThreads) {
    op_t v = to_op(xr[j]);
    ss += v * v;
  }
  ss = block_sum(ss, shared);
  const op_t a = sqrt(ss) * c + eps;
  for (int64_t j = threadIdx.x; j < d; j += kRowThreads) yr[j] = from_op<O>(w[j] * (to_op(xr[j]) / a));
}

// One block a row: a (kept for the scale gradient) and, when dx is wanted,
// dx = g·w/a + x·k with k = (−Σ g·w·x / a²)·c/‖x‖ (0 where ‖x‖ = 0, as
// torch's norm backward).
template <typename T, typename O>
__global__ void rms_backward_row_kernel(const O *__restrict__ g, const T *__restrict__ x,
                                        const typename Op<T>::type *__restrict__ w, T *__restrict__ dx,
                                        typename Op<T>::type *__restrict__ a_out, int64_t d, typename Op<T>::type c,
                                        typename Op<T>::type eps) {
  using op_t = typename Op<T>::type;
  __shared__ op_t shared[kRowThreads / 32];
  const T *xr = x + blockIdx.x * d;
  const O *gr = g + blockIdx.x * d;
  op_t ss = 0, dot = 0;
  for (int64_t j = threadIdx.x; j < d; j += kRowThreads) {
    op_t v = to_op(xr[j]);
    ss += v * v;
    if (dx) dot += to_op(gr[j]) * w[j] * v;
  }
  ss = block_sum(ss, shared);
  const op_t n = sqrt(ss);
  const op_t a = n * c + eps;
  if (threadIdx.x == 0) a_out[blockIdx.x] = a;
  if (!dx) return;
  dot = block_sum(dot, shared);
  const op_t k = n == 0 ? op_t(0) : (-dot / (a * a)) * c / n;
  T *dr = dx + blockIdx.x * d;
  for (int64_t j = threadIdx.x; j < d; j += kRowThreads) dr[j] = from_op<T>(to_op(gr[j]) * w[j] / a + to_op(xr[j]) * k);
}

// partial[ch, j] = Σ_{r in chunk ch} g[r, j]·(x[r, j]/a[r]): a thread per
// column of a chunk, adjacent threads on adjacent columns.
template <typename T, typename O>
__global__ void rms_dscale_partial_kernel(const O *__restrict__ g, const T *__restrict__ x,
                                          const typename Op<T>::type *__restrict__ a, typename Op<T>::type *__restrict__ partial,
                                          int64_t rows, int64_t d, int64_t chunk) {
  using op_t = typename Op<T>::type;
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= d) return;
  const int64_t r0 = blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
  op_t s = 0;
  for (int64_t r = r0; r < r1; ++r) s += to_op(g[r * d + j]) * (to_op(x[r * d + j]) / a[r]);
  partial[blockIdx.y * d + j] = s;
}

template <typename A>
__global__ void rms_dscale_sum_kernel(const A *__restrict__ partial, A *__restrict__ dw, int64_t chunks, int64_t d) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= d) return;
  A s = 0;
  for (int64_t ch = 0; ch < chunks; ++ch) s += partial[ch * d + j];
  dw[j] = s;
}

template <typename T, typename O>
void rms_forward_t(const void *x, const void *w, void *y, int64_t rows, int64_t d, double c, double eps, cudaStream_t st) {
  using op_t = typename Op<T>::type;
  if (rows > 0x7fffffff) throw std::runtime_error("clm fused RMSNorm: more than 2^31 rows");
  rms_forward_kernel<T, O><<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(
      static_cast<const T *>(x), static_cast<const op_t *>(w), static_cast<O *>(y), d, static_cast<op_t>(c),
      static_cast<op_t>(eps));
  check("rms_norm");
}

template <typename T, typename O>
void rms_backward_t(const void *g, const void *x, const void *w, void *dx, void *dw, void *scratch_a,
                    void *scratch_partial, int64_t rows, int64_t d, double c, double eps, cudaStream_t st) {
  using op_t = typename Op<T>::type;
  if (rows > 0x7fffffff) throw std::runtime_error("clm fused RMSNorm: more than 2^31 rows");
  op_t *a = static_cast<op_t *>(scratch_a);
  rms_backward_row_kernel<T, O><<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(
      static_cast<const O *>(g), static_cast<const T *>(x), static_cast<const op_t *>(w), static_cast<T *>(dx), a, d,
      static_cast<op_t>(c), static_cast<op_t>(eps));
  check("rms_norm backward");
  if (!dw) return;
  const int64_t chunk = clm::fused_cuda::rms_chunk(rows), chunks = clm::fused_cuda::rms_partials(rows);
  op_t *partial = static_cast<op_t *>(scratch_partial);
  const unsigned col_blocks = static_cast<unsigned>((d + 127) / 128);
  rms_dscale_partial_kernel<T, O><<<dim3(col_blocks, static_cast<unsigned>(chunks)), 128, 0, st>>>(
      static_cast<const O *>(g), static_cast<const T *>(x), a, partial, rows, d, chunk);
  check("rms_norm scale gradient");
  rms_dscale_sum_kernel<op_t><<<col_blocks, 128, 0, st>>>(partial, static_cast<op_t *>(dw), chunks, d);
  check("rms_norm scale gradient sum");
}

[[noreturn]] void bad_dtype(const char *op, int xdt, int odt) {
  throw std::runtime_error(std::string("clm fused CUDA ") + op + ": no kernel for dtype codes " + std::to_string(xdt) +
                           " in, " + std::to_string(odt) + " out");
}

// Calls F<T, O>::run for the dtype codes (O: T, or float for a 16-bit T).
#define CLM_RMS_DISPATCH(xdt, odt, CALL)                                                    \
  do {                                                                                      \
    if (xdt == kF32 && odt == kF32) { using T = float; using O = float; CALL; }             \
    else if (xdt == kF64 && odt == kF64) { using T = double; using O = double; CALL; }      \
    else if (xdt == kBF16 && odt == kBF16) { using T = __nv_bfloat16; using O = T; CALL; }  \
    else if (xdt == kBF16 && odt == kF32) { using T = __nv_bfloat16; using O = float; CALL; } \
    else if (xdt == kF16 && odt == kF16) { using T = __half; using O = T; CALL; }           \
    else if (xdt == kF16 && odt == kF32) { using T = __half; using O = float; CALL; }       \
    else bad_dtype("rms_norm", xdt, odt);                                                   \
  } while (0)

}  // namespace

namespace clm {
namespace fused_cuda {

void leaky_forward(int dt, const void *x, void *y, int64_t n, double slope, void *stream) {
  auto st = static_cast<cudaStream_t>(stream);
  switch (dt) {
    case kF32: return leaky_forward_t<float>(x, y, n, slope, st);
    case kF64: return leaky_forward_t<double>(x, y, n, slope, st);
    case kBF16: return leaky_forward_t<__nv_bfloat16>(x, y, n, slope, st);
    case kF16: return leaky_forward_t<__half>(x, y, n, slope, st);
  }
  bad_dtype("leaky_relu", dt, dt);
}

void leaky_backward(int dt, const void *g, const void *c, void *dx, int64_t n, double slope, void *stream) {
  auto st = static_cast<cudaStream_t>(stream);
  switch (dt) {
    case kF32: return leaky_backward_t<float>(g, c, dx, n, slope, st);
    case kF64: return leaky_backward_t<double>(g, c, dx, n, slope, st);
    case kBF16: return leaky_backward_t<__nv_bfloat16>(g, c, dx, n, slope, st);
    case kF16: return leaky_backward_t<__half>(g, c, dx, n, slope, st);
  }
  bad_dtype("leaky_relu backward", dt, dt);
}

void rms_forward(int xdt, int odt, const void *x, const void *w, void *y, int64_t rows, int64_t d, double c,
                 double eps, void *stream) {
  auto st = static_cast<cudaStream_t>(stream);
  CLM_RMS_DISPATCH(xdt, odt, (rms_forward_t<T, O>(x, w, y, rows, d, c, eps, st)));
}

void rms_backward(int xdt, int odt, const void *g, const void *x, const void *w, void *dx, void *dw,
                  void *scratch_a, void *scratch_partial, int64_t rows, int64_t d, double c, double eps,
                  void *stream) {
  auto st = static_cast<cudaStream_t>(stream);
  CLM_RMS_DISPATCH(xdt, odt,
                   (rms_backward_t<T, O>(g, x, w, dx, dw, scratch_a, scratch_partial, rows, d, c, eps, st)));
}

}  // namespace fused_cuda
}  // namespace clm
