// clm_fused_combine.cu — CUDA kernels of the fused combine and the
// shaped-attention epilogue (see clm_fused_combine_cuda.h). Built by nvcc
// only with CLM_WITH_CUDA_KERNELS; clm_fused_combine.cpp calls them.
//
// Every product, sum and quotient is an explicitly rounded intrinsic
// (__fmul_rn, __fadd_rn, …), so no FMA contraction changes a result, and
// every intermediate is rounded to the dtype the composite ops give it. Gain
// gradients are reduced in a fixed order: per block (fixed chunks) or per
// thread (one (b, h, d) column), then the partial sums by a second kernel.
#include "clm_fused_combine_cuda.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace clm {
namespace fused_combine_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 16;
constexpr int64_t kChunk = int64_t(kThreads) * kPerThread;  // elements per combine block
constexpr int kMaxBlocks = 65535;

// Num<T>: T's arithmetic type A, load (T → A) and store (A → T, round to
// nearest even).
template <typename T>
struct Num;
template <>
struct Num<float> {
  using A = float;
  __device__ static float load(float x) { return x; }
  __device__ static float store(float x) { return x; }
};
template <>
struct Num<double> {
  using A = double;
  __device__ static double load(double x) { return x; }
  __device__ static double store(double x) { return x; }
};
template <>
struct Num<__nv_bfloat16> {
  using A = float;
  __device__ static float load(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static __nv_bfloat16 store(float x) { return __float2bfloat16_rn(x); }
};
template <>
struct Num<__half> {
  using A = float;
  __device__ static float load(__half x) { return __half2float(x); }
  __device__ static __half store(float x) { return __float2half_rn(x); }
};

// rnd<T>(x): x rounded to T, back in the arithmetic type.
template <typename T, typename A>
__device__ inline A rnd(A x) {
  return Num<T>::load(Num<T>::store(x));
}

__device__ inline float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add(double a, double b) { return __dadd_rn(a, b); }
__device__ inline float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ inline double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ inline float quo(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline double quo(double a, double b) { return __ddiv_rn(a, b); }

// block_sum: the block's kThreads values summed in a fixed tree order.
template <typename A>
__device__ A block_sum(A v, A *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = add(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  A r = sh[0];
  __syncthreads();
  return r;
}

template <typename T>
struct Tag {
  using type = T;
};

// dispatch calls f(Tag<O>, Tag<X>) for the supported dtype pairs.
template <typename F>
void dispatch(int odt, int xdt, F &&f) {
  if (odt == xdt) {
    switch (odt) {
      case kF32: return f(Tag<float>{}, Tag<float>{});
      case kF64: return f(Tag<double>{}, Tag<double>{});
      case kBF16: return f(Tag<__nv_bfloat16>{}, Tag<__nv_bfloat16>{});
      case kF16: return f(Tag<__half>{}, Tag<__half>{});
    }
  } else if (odt == kF32 && xdt == kBF16) {
    return f(Tag<float>{}, Tag<__nv_bfloat16>{});
  } else if (odt == kF32 && xdt == kF16) {
    return f(Tag<float>{}, Tag<__half>{});
  }
  throw std::runtime_error("clm fused combine: no CUDA kernel for dtype codes " + std::to_string(xdt) + " → " +
                           std::to_string(odt));
}

void check_launch(const char *what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct Ptrs {
  const void *p[3];
};
struct MutPtrs {
  void *p[3];
};

// ---- combine ----------------------------------------------------------------

template <typename O, typename X, int N>
__global__ void combine_forward_kernel(Ptrs xs, const typename Num<O>::A *g, O *out, int64_t numel) {
  using A = typename Num<O>::A;
  const X *x0 = static_cast<const X *>(xs.p[0]), *x1 = static_cast<const X *>(xs.p[1]);
  const X *x2 = static_cast<const X *>(xs.p[2]);
  const A g0 = g[0], g1 = g[1], g2 = N > 2 ? g[2] : A(0);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    A s = add(rnd<O>(mul(g0, Num<X>::load(x0[i]))), rnd<O>(mul(g1, Num<X>::load(x1[i]))));
    if (N > 2) s = add(rnd<O>(s), rnd<O>(mul(g2, Num<X>::load(x2[i]))));
    out[i] = Num<O>::store(s);
  }
}

template <typename O, typename X>
__global__ void combine_backward_kernel(const O *grad, Ptrs xs, const typename Num<O>::A *g, MutPtrs dxs,
                                        typename Num<O>::A *partial, int n, int64_t numel) {
  using A = typename Num<O>::A;
  __shared__ A sh[kThreads];
  const int64_t base = blockIdx.x * kChunk;
  for (int k = 0; k < n; ++k) {
    const X *x = static_cast<const X *>(xs.p[k]);
    X *dx = static_cast<X *>(dxs.p[k]);
    const A gk = g[k];
    A acc = 0;
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
      if (i >= numel) break;
      const A gg = Num<O>::load(grad[i]);
      if (dx) dx[i] = Num<X>::store(rnd<O>(mul(gg, gk)));
      if (x) acc = add(acc, rnd<O>(mul(gg, Num<X>::load(x[i]))));
    }
    if (x) {  // uniform over the block
      const A s = block_sum(acc, sh);
      if (threadIdx.x == 0) partial[blockIdx.x * int64_t(n) + k] = s;
    }
  }
}

// out[k] = Σ_c partial[c·n + k] (one block per k, fixed order) for the k in
// mask.
template <typename A>
__global__ void sum_partials_kernel(const A *partial, int64_t count, int n, unsigned mask, A *out) {
  __shared__ A sh[kThreads];
  const int k = blockIdx.x;
  if (!(mask & (1u << k))) return;
  A acc = 0;
  for (int64_t c = threadIdx.x; c < count; c += kThreads) acc = add(acc, partial[c * n + k]);
  const A s = block_sum(acc, sh);
  if (threadIdx.x == 0) out[k] = s;
}

// ---- the shaped-attention epilogue ------------------------------------------

// One thread per (b, h, d) column, t in order.
template <typename O, typename V, typename Y>
__global__ void epilogue_forward_kernel(const Y *y, Strides4 sy, const V *v, Strides4 sv,
                                        const typename Num<O>::A *gains, O *out, Strides4 so, int64_t B, int64_t H,
                                        int64_t T, int64_t D, bool cum_f32) {
  using A = typename Num<O>::A;
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= B * H * D) return;
  const int64_t d = idx % D, bh = idx / D, h = bh % H, b = bh / H;
  const A r = gains[h], s = gains[H + h], c = gains[2 * H + h];
  const Y *yp = y + b * sy.b + h * sy.h + d * sy.d;
  const V *vp = v + b * sv.b + h * sv.h + d * sv.d;
  O *op = out + b * so.b + h * so.h + d * so.d;
  A cum = 0;
  for (int64_t t = 0; t < T; ++t) {
    const A pos = rnd<V>(A(t + 1));
    const A vv = Num<V>::load(vp[t * sv.t]);
    cum = add(cum, vv);
    const A cv = cum_f32 ? quo(cum, pos) : rnd<V>(quo(rnd<V>(cum), pos));
    const A a = rnd<O>(mul(r, Num<Y>::load(yp[t * sy.t])));
    const A bb = rnd<O>(mul(s, vv));
    const A cc = rnd<O>(mul(c, cv));
    op[t * so.t] = Num<O>::store(sub(rnd<O>(add(a, bb)), cc));
  }
}

template <typename O, typename V, typename Y>
__global__ void epilogue_backward_kernel(const O *grad, Strides4 sg, const Y *y, Strides4 sy, const V *v, Strides4 sv,
                                         const typename Num<O>::A *gains, Y *dy, V *dv, typename Num<O>::A *partial,
                                         bool n0, bool n1, bool n2, int64_t B, int64_t H, int64_t T, int64_t D,
                                         bool cum_f32) {
  using A = typename Num<O>::A;
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= B * H * D) return;
  const int64_t d = idx % D, bh = idx / D, h = bh % H, b = bh / H;
  const A r = gains[h], s = gains[H + h], c = gains[2 * H + h];
  const O *gp = grad + b * sg.b + h * sg.h + d * sg.d;
  const int64_t goff = b * sg.b + h * sg.h + d * sg.d;  // dy, dv: grad's strides
  if (dy || n0 || n1 || n2) {
    A pr = 0, ps = 0, pc = 0, cum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const A gg = Num<O>::load(gp[t * sg.t]);
      if (dy) dy[goff + t * sg.t] = Num<Y>::store(rnd<O>(mul(gg, r)));
      if (n0) pr = add(pr, rnd<O>(mul(gg, Num<Y>::load(y[b * sy.b + h * sy.h + t * sy.t + d * sy.d]))));
      if (n1 || n2) {
        const A vv = Num<V>::load(v[b * sv.b + h * sv.h + t * sv.t + d * sv.d]);
        if (n1) ps = add(ps, rnd<O>(mul(gg, vv)));
        if (n2) {
          const A pos = rnd<V>(A(t + 1));
          cum = add(cum, vv);
          const A cv = cum_f32 ? quo(cum, pos) : rnd<V>(quo(rnd<V>(cum), pos));
          pc = add(pc, rnd<O>(mul(-gg, cv)));
        }
      }
    }
    if (partial) {
      partial[idx * 3 + 0] = pr;
      partial[idx * 3 + 1] = ps;
      partial[idx * 3 + 2] = pc;
    }
  }
  if (dv) {
    A rc = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const A gg = Num<O>::load(gp[t * sg.t]);
      const A pos = rnd<V>(A(t + 1));
      const A p1 = rnd<V>(rnd<O>(mul(gg, s)));
      A gcv = rnd<O>(mul(-gg, c));
      if (!cum_f32) gcv = rnd<V>(gcv);
      rc = add(rc, rnd<V>(quo(gcv, pos)));
      dv[goff + t * sg.t] = Num<V>::store(add(p1, rnd<V>(rc)));
    }
  }
}

// dgains[j, h] = Σ_b Σ_d partial[((b·H + h)·D + d)·3 + j], in that order.
template <typename A>
__global__ void epilogue_gains_kernel(const A *partial, A *dgains, bool n0, bool n1, bool n2, int64_t B, int64_t H,
                                      int64_t D) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= 3 * H) return;
  const int64_t j = idx / H, h = idx % H;
  if (!(j == 0 ? n0 : j == 1 ? n1 : n2)) return;
  A acc = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) acc = add(acc, partial[((b * H + h) * D + d) * 3 + j]);
  dgains[j * H + h] = acc;
}

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}

}  // namespace

void combine_forward(int odt, int xdt, const void *const *x, int n, const void *g, void *out, int64_t numel,
                     void *stream) {
  if (numel == 0) return;
  const Ptrs xs{{x[0], x[1], n > 2 ? x[2] : nullptr}};
  auto st = static_cast<cudaStream_t>(stream);
  dispatch(odt, xdt, [&](auto o, auto i) {
    using O = typename decltype(o)::type;
    using X = typename decltype(i)::type;
    using A = typename Num<O>::A;
    if (n == 2)
      combine_forward_kernel<O, X, 2><<<blocks_for(numel), kThreads, 0, st>>>(xs, static_cast<const A *>(g),
                                                                               static_cast<O *>(out), numel);
    else
      combine_forward_kernel<O, X, 3><<<blocks_for(numel), kThreads, 0, st>>>(xs, static_cast<const A *>(g),
                                                                               static_cast<O *>(out), numel);
  });
  check_launch("clm fused combine forward");
}

int64_t combine_partials(int64_t numel) { return numel == 0 ? 1 : (numel + kChunk - 1) / kChunk; }

void combine_backward(int odt, int xdt, const void *grad, const void *const *x, const void *g, void *const *dx,
                      void *dg, void *partial, int n, int64_t numel, void *stream) {
  const Ptrs xs{{x[0], x[1], n > 2 ? x[2] : nullptr}};
  const MutPtrs dxs{{dx[0], dx[1], n > 2 ? dx[2] : nullptr}};
  unsigned mask = 0;
  for (int k = 0; k < n; ++k)
    if (xs.p[k]) mask |= 1u << k;
  const int64_t chunks = combine_partials(numel);
  if (chunks > 0x7fffffff) throw std::runtime_error("clm fused combine backward: tensor too large");
  auto st = static_cast<cudaStream_t>(stream);
  dispatch(odt, xdt, [&](auto o, auto i) {
    using O = typename decltype(o)::type;
    using X = typename decltype(i)::type;
    using A = typename Num<O>::A;
    if (numel > 0)
      combine_backward_kernel<O, X><<<static_cast<unsigned>(chunks), kThreads, 0, st>>>(
          static_cast<const O *>(grad), xs, static_cast<const A *>(g), dxs, static_cast<A *>(partial), n, numel);
    else
      cudaMemsetAsync(partial, 0, sizeof(A) * n, st);
    if (mask)
      sum_partials_kernel<A><<<n, kThreads, 0, st>>>(static_cast<const A *>(partial), chunks, n, mask,
                                                     static_cast<A *>(dg));
  });
  check_launch("clm fused combine backward");
}

void epilogue_forward(int odt, int vdt, int ydt, const void *y, Strides4 sy, const void *v, Strides4 sv,
                      const void *gains, void *out, Strides4 so, int64_t B, int64_t H, int64_t T, int64_t D,
                      bool cum_f32, void *stream) {
  const int64_t cols = B * H * D;
  if (cols == 0 || T == 0) return;
  const int64_t blocks = (cols + kThreads - 1) / kThreads;
  auto st = static_cast<cudaStream_t>(stream);
  dispatch(odt, vdt, [&](auto o, auto vv) {
    using O = typename decltype(o)::type;
    using V = typename decltype(vv)::type;
    using A = typename Num<O>::A;
    if (ydt == vdt)
      epilogue_forward_kernel<O, V, V><<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(
          static_cast<const V *>(y), sy, static_cast<const V *>(v), sv, static_cast<const A *>(gains),
          static_cast<O *>(out), so, B, H, T, D, cum_f32);
    else
      epilogue_forward_kernel<O, V, O><<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(
          static_cast<const O *>(y), sy, static_cast<const V *>(v), sv, static_cast<const A *>(gains),
          static_cast<O *>(out), so, B, H, T, D, cum_f32);
  });
  check_launch("clm fused epilogue forward");
}

int64_t epilogue_partials(int64_t B, int64_t H, int64_t D) { return B * H * D * 3; }

void epilogue_backward(int odt, int vdt, int ydt, const void *grad, Strides4 sg, const void *y, Strides4 sy,
                       const void *v, Strides4 sv, const void *gains, void *dy, void *dv, void *dgains,
                       void *partial, const bool need[3], int64_t B, int64_t H, int64_t T, int64_t D, bool cum_f32,
                       void *stream) {
  const int64_t cols = B * H * D;
  auto st = static_cast<cudaStream_t>(stream);
  const bool any = dgains && (need[0] || need[1] || need[2]);
  dispatch(odt, vdt, [&](auto o, auto vv) {
    using O = typename decltype(o)::type;
    using V = typename decltype(vv)::type;
    using A = typename Num<O>::A;
    A *part = any ? static_cast<A *>(partial) : nullptr;
    if (cols > 0 && T > 0) {
      const auto blocks = static_cast<unsigned>((cols + kThreads - 1) / kThreads);
      if (ydt == vdt)
        epilogue_backward_kernel<O, V, V><<<blocks, kThreads, 0, st>>>(
            static_cast<const O *>(grad), sg, static_cast<const V *>(y), sy, static_cast<const V *>(v), sv,
            static_cast<const A *>(gains), static_cast<V *>(dy), static_cast<V *>(dv), part, need[0], need[1],
            need[2], B, H, T, D, cum_f32);
      else
        epilogue_backward_kernel<O, V, O><<<blocks, kThreads, 0, st>>>(
            static_cast<const O *>(grad), sg, static_cast<const O *>(y), sy, static_cast<const V *>(v), sv,
            static_cast<const A *>(gains), static_cast<O *>(dy), static_cast<V *>(dv), part, need[0], need[1],
            need[2], B, H, T, D, cum_f32);
    } else if (part) {
      cudaMemsetAsync(part, 0, sizeof(A) * 3 * (cols > 0 ? cols : 1), st);
    }
    if (any)
      epilogue_gains_kernel<A><<<blocks_for(3 * H), kThreads, 0, st>>>(part, static_cast<A *>(dgains), need[0],
                                                                        need[1], need[2], B, H, D);
  });
  check_launch("clm fused epilogue backward");
}

}  // namespace fused_combine_cuda
}  // namespace clm
