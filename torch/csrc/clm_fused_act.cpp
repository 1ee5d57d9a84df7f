// clm_fused_act.cpp — the fused leaky ReLU and RMSNorm of clm_fused.h.
//
// Each is a torch::autograd::Function with a one-pass forward and a one-pass
// backward: on the CPU, at::parallel_for over rows or chunks with plain loops
// the compiler vectorises (the arithmetic in at::opmath_type: float for bf16
// and half); on CUDA, the kernels of clm_fused_act.cu when the shim has them
// (CLM_WITH_CUDA_KERNELS), else the composite ops. The file is compiled with
// -ffp-contract=off (CMakeLists.txt): no a·b+c becomes an FMA that the
// composite ops do not use.
//
// Sums are deterministic and independent of the thread count: row sums run
// over fixed lanes in a fixed order, and the scale gradient of RMSNorm is
// summed over fixed chunks of rows whose partials are added in order.
#include "clm_fused.h"
#include "clm_internal.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef CLM_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "clm_fused_act_cuda.h"
#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements (or row elements) per parallel task: small enough to spread a
// training-step tensor over the cores, large enough to amortise a task.
constexpr int64_t kGrain = 32768;
// Lanes of the row sums: independent accumulators the compiler keeps in
// vector registers (a single accumulator would not vectorise without
// reassociation).
constexpr int kLanes = 16;
// Rows per partial sum of RMSNorm's scale gradient on the CPU.
constexpr int64_t kRowChunk = 16;

bool is_float(const at::Tensor &t) {
  auto s = t.scalar_type();
  return s == at::kFloat || s == at::kDouble || s == at::kBFloat16 || s == at::kHalf;
}
bool is_reduced(at::ScalarType s) { return s == at::kBFloat16 || s == at::kHalf; }
at::ScalarType opmath_of(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

using clm::cuda_kernels;

// fused: the fused path handles t's device (the CPU, or CUDA with kernels).
bool fused(const at::Tensor &t) { return is_float(t) && (t.is_cpu() || (t.is_cuda() && cuda_kernels())); }

#ifdef CLM_WITH_CUDA_KERNELS
int cuda_dtype(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return clm::fused_cuda::kF32;
    case at::kDouble: return clm::fused_cuda::kF64;
    case at::kBFloat16: return clm::fused_cuda::kBF16;
    case at::kHalf: return clm::fused_cuda::kF16;
    default: TORCH_CHECK(false, "clm fused: no CUDA kernel for ", s);
  }
}
void *stream_of(const at::Tensor &t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }
#endif

// ---- leaky ReLU ---------------------------------------------------------------

at::Tensor leaky_composite(const at::Tensor &x, double slope) { return at::where(x.ge(0), x, x.mul(slope)); }

// The loops, on restrict pointers so that the compiler vectorises them.
template <typename T, typename op_t>
void leaky_forward_span(const T *__restrict__ x, T *__restrict__ y, int64_t n, op_t s) {
  for (int64_t i = 0; i < n; ++i) {
    // Both branches computed, so that the select vectorises.
    op_t v = static_cast<op_t>(x[i]), m = v * s;
    y[i] = static_cast<T>(v >= 0 ? v : m);
  }
}

template <typename T, typename op_t>
void leaky_backward_span(const T *__restrict__ g, const T *__restrict__ c, T *__restrict__ dx, int64_t n, op_t s) {
  const op_t z = 0;
  for (int64_t i = 0; i < n; ++i) {
    // As the composite's backward adds where's two branches: g + 0·slope or
    // 0 + g·slope (the sign of a zero gradient included).
    op_t gv = static_cast<op_t>(g[i]), pos = gv + z * s, neg = z + gv * s;
    dx[i] = static_cast<T>(static_cast<op_t>(c[i]) >= 0 ? pos : neg);
  }
}

at::Tensor leaky_forward(const at::Tensor &x0, double slope) {
  at::Tensor x = x0.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  int64_t n = x.numel();
  if (n == 0) return y;
#ifdef CLM_WITH_CUDA_KERNELS
  if (x.is_cuda()) {
    c10::cuda::CUDAGuard g(x.device());
    clm::fused_cuda::leaky_forward(cuda_dtype(x.scalar_type()), x.data_ptr(), y.data_ptr(), n, slope,
                                   stream_of(x));
    return y;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "clm_fused_leaky_relu", [&] {
    using op_t = at::opmath_type<scalar_t>;
    const scalar_t *xp = x.data_ptr<scalar_t>();
    scalar_t *yp = y.data_ptr<scalar_t>();
    const op_t s = static_cast<op_t>(slope);  // as ATen's x.mul(slope) converts it
    at::parallel_for(0, n, kGrain, [=](int64_t b, int64_t e) { leaky_forward_span(xp + b, yp + b, e - b, s); });
  });
  return y;
}

// dx = c >= 0 ? g : slope·g (c is x, or y when slope > 0: the same sign).
at::Tensor leaky_backward(const at::Tensor &g0, const at::Tensor &c0, double slope) {
  at::Tensor g = g0.contiguous(), c = c0.contiguous();
  TORCH_CHECK(g.scalar_type() == c.scalar_type() && g.sizes() == c.sizes(), "clm_fused_leaky_relu backward: gradient ",
              g.scalar_type(), g.sizes(), " for ", c.scalar_type(), c.sizes());
  at::Tensor dx = at::empty_like(c, at::MemoryFormat::Contiguous);
  int64_t n = c.numel();
  if (n == 0) return dx;
#ifdef CLM_WITH_CUDA_KERNELS
  if (c.is_cuda()) {
    c10::cuda::CUDAGuard gd(c.device());
    clm::fused_cuda::leaky_backward(cuda_dtype(c.scalar_type()), g.data_ptr(), c.data_ptr(),
                                    dx.data_ptr(), n, slope, stream_of(c));
    return dx;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, c.scalar_type(), "clm_fused_leaky_relu_backward", [&] {
    using op_t = at::opmath_type<scalar_t>;
    const scalar_t *gp = g.data_ptr<scalar_t>();
    const scalar_t *cp = c.data_ptr<scalar_t>();
    scalar_t *dp = dx.data_ptr<scalar_t>();
    const op_t s = static_cast<op_t>(slope);
    at::parallel_for(0, n, kGrain,
                     [=](int64_t b, int64_t e) { leaky_backward_span(gp + b, cp + b, dp + b, e - b, s); });
  });
  return dx;
}

// The composite saves the mask x >= 0 (one byte an element). This saves y
// when slope > 0 — the sign of y is that of x, and the next layer (a linear
// one) saves y anyway, so it costs no memory — else x, as at::leaky_relu
// does. The one input where y's sign is not x's: a negative x so small that
// slope·x underflows to −0, whose gradient is then g, as at x = −0.
struct LeakyReLUFn : public torch::autograd::Function<LeakyReLUFn> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, double slope) {
    at::Tensor y = leaky_forward(x, slope);
    ctx->saved_data["slope"] = slope;
    ctx->save_for_backward({slope > 0 ? y : x});
    return y;
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    at::Tensor c = ctx->get_saved_variables()[0];
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor()};
    return {leaky_backward(grads[0], c, ctx->saved_data["slope"].toDouble()), at::Tensor()};
  }
};

// ---- RMSNorm -----------------------------------------------------------------

at::Tensor rms_composite(const at::Tensor &x, const at::Tensor &scale, double eps) {
  at::Tensor rms = at::norm(x, 2, {-1}, true).mul(std::pow(static_cast<double>(x.size(-1)), -0.5));
  return scale.mul(x.div(rms.add(eps)));
}

// Σ_j x[j]² over kLanes lanes, added in a fixed order.
template <typename T, typename op_t>
inline op_t sum_squares(const T *x, int64_t d) {
  op_t acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      op_t v = static_cast<op_t>(x[j + k]);
      acc[k] += v * v;
    }
  for (int k = 0; j < d; ++j, ++k) {
    op_t v = static_cast<op_t>(x[j]);
    acc[k] += v * v;
  }
  op_t s = 0;
  for (int k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

// Σ_j x[j]² and Σ_j g[j]·w[j]·x[j] in one pass.
template <typename T, typename O, typename op_t>
inline void sum_squares_dot(const T *x, const O *g, const op_t *w, int64_t d, op_t &ss, op_t &dot) {
  op_t a[kLanes] = {}, b[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      op_t v = static_cast<op_t>(x[j + k]);
      a[k] += v * v;
      b[k] += static_cast<op_t>(g[j + k]) * w[j + k] * v;
    }
  for (int k = 0; j < d; ++j, ++k) {
    op_t v = static_cast<op_t>(x[j]);
    a[k] += v * v;
    b[k] += static_cast<op_t>(g[j]) * w[j] * v;
  }
  ss = 0;
  dot = 0;
  for (int k = 0; k < kLanes; ++k) {
    ss += a[k];
    dot += b[k];
  }
}

// x [rows, d] of type T, w [d] of op_t, y of type O (T, or float for a
// 16-bit T). y = w·(x/a) with a = ‖x‖·c + eps, in the composite's order.
template <typename T, typename O>
void rms_forward_cpu(const at::Tensor &x, const at::Tensor &w, at::Tensor &y, double c, double eps) {
  using op_t = at::opmath_type<T>;
  const int64_t d = x.size(-1), rows = d == 0 ? 0 : x.numel() / d;
  const T *xp = x.data_ptr<T>();
  const op_t *wp = w.data_ptr<op_t>();
  O *yp = y.data_ptr<O>();
  const op_t cc = static_cast<op_t>(c), ee = static_cast<op_t>(eps);
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(d, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T *xr = xp + r * d;
      O *yr = yp + r * d;
      op_t n = std::sqrt(sum_squares<T, op_t>(xr, d));
      op_t a = n * cc + ee;
      for (int64_t j = 0; j < d; ++j) yr[j] = static_cast<O>(wp[j] * (static_cast<op_t>(xr[j]) / a));
    }
  });
}

// The gradients of y = w·x/a for the upstream g (type O): dx (type T) when
// defined, and dw (op_t, [d]) when defined, summed over row chunks.
template <typename T, typename O>
void rms_backward_cpu(const at::Tensor &g, const at::Tensor &x, const at::Tensor &w, at::Tensor &dx, at::Tensor &dw,
                      double c, double eps) {
  using op_t = at::opmath_type<T>;
  const int64_t d = x.size(-1), rows = d == 0 ? 0 : x.numel() / d;
  const T *xp = x.data_ptr<T>();
  const O *gp = g.data_ptr<O>();
  const op_t *wp = w.data_ptr<op_t>();
  T *dxp = dx.defined() ? dx.data_ptr<T>() : nullptr;
  const op_t cc = static_cast<op_t>(c), ee = static_cast<op_t>(eps);
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<op_t> partial(dw.defined() ? static_cast<size_t>(chunks * d) : 0, op_t(0));
  at::parallel_for(0, chunks, std::max<int64_t>(1, kGrain / std::max<int64_t>(kRowChunk * d, 1)),
                   [&](int64_t b, int64_t e) {
                     for (int64_t ch = b; ch < e; ++ch) {
                       op_t *pr = partial.empty() ? nullptr : partial.data() + ch * d;
                       for (int64_t r = ch * kRowChunk; r < std::min(rows, (ch + 1) * kRowChunk); ++r) {
                         const T *xr = xp + r * d;
                         const O *gr = gp + r * d;
                         op_t ss, dot;
                         if (dxp) {
                           sum_squares_dot<T, O, op_t>(xr, gr, wp, d, ss, dot);
                         } else {
                           ss = sum_squares<T, op_t>(xr, d);
                           dot = 0;
                         }
                         op_t n = std::sqrt(ss);
                         op_t a = n * cc + ee;
                         if (dxp) {
                           // d/dx of x/a through a = ‖x‖·c + eps; torch's norm
                           // backward is 0 where the norm is 0.
                           op_t k = n == 0 ? op_t(0) : (-dot / (a * a)) * cc / n;
                           T *dr = dxp + r * d;
                           for (int64_t j = 0; j < d; ++j) {
                             op_t v = static_cast<op_t>(xr[j]);
                             dr[j] = static_cast<T>(static_cast<op_t>(gr[j]) * wp[j] / a + v * k);
                           }
                         }
                         if (pr)
                           for (int64_t j = 0; j < d; ++j)
                             pr[j] += static_cast<op_t>(gr[j]) * (static_cast<op_t>(xr[j]) / a);
                       }
                     }
                   });
  if (!dw.defined()) return;
  op_t *dwp = dw.data_ptr<op_t>();
  at::parallel_for(0, d, 4096, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) dwp[j] = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const op_t *pr = partial.data() + ch * d;
      for (int64_t j = b; j < e; ++j) dwp[j] += pr[j];
    }
  });
}

template <typename T>
struct Type {
  using type = T;
};

// Calls f(Type<T>, Type<O>) for x's type T and the output type O.
template <typename F>
void rms_dispatch(at::ScalarType xt, at::ScalarType ot, F &&f) {
  if (xt == at::kDouble && ot == at::kDouble) return f(Type<double>(), Type<double>());
  if (xt == at::kFloat && ot == at::kFloat) return f(Type<float>(), Type<float>());
  if (xt == at::kBFloat16 && ot == at::kBFloat16) return f(Type<at::BFloat16>(), Type<at::BFloat16>());
  if (xt == at::kBFloat16 && ot == at::kFloat) return f(Type<at::BFloat16>(), Type<float>());
  if (xt == at::kHalf && ot == at::kHalf) return f(Type<at::Half>(), Type<at::Half>());
  if (xt == at::kHalf && ot == at::kFloat) return f(Type<at::Half>(), Type<float>());
  TORCH_CHECK(false, "clm_fused_rms_norm: no kernel for ", xt, " in, ", ot, " out");
}

double rms_c(int64_t d) { return std::pow(static_cast<double>(d), -0.5); }

// x [..., d] (type T), w [d] (T's arithmetic type), the output type out.
at::Tensor rms_forward(const at::Tensor &x0, const at::Tensor &w0, double eps, at::ScalarType out) {
  at::Tensor x = x0.contiguous(), w = w0.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options().dtype(out));
  const int64_t d = x.size(-1);
  if (x.numel() == 0) return y;
#ifdef CLM_WITH_CUDA_KERNELS
  if (x.is_cuda()) {
    c10::cuda::CUDAGuard g(x.device());
    clm::fused_cuda::rms_forward(cuda_dtype(x.scalar_type()), cuda_dtype(out), x.data_ptr(), w.data_ptr(),
                                 y.data_ptr(), x.numel() / d, d, rms_c(d), eps, stream_of(x));
    return y;
  }
#endif
  rms_dispatch(x.scalar_type(), out, [&](auto t, auto o) {
    rms_forward_cpu<typename decltype(t)::type, typename decltype(o)::type>(x, w, y, rms_c(d), eps);
  });
  return y;
}

// Saves x and the scale (w, which is the scale parameter itself when its
// dtype is already x's arithmetic type): the row norms are recomputed in the
// backward pass, in the loop that needs x anyway.
struct RMSNormFn : public torch::autograd::Function<RMSNormFn> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &w, double eps, int64_t out) {
    ctx->saved_data["eps"] = eps;
    ctx->save_for_backward({x, w});
    return rms_forward(x, w, eps, static_cast<at::ScalarType>(out));
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0].contiguous(), w = saved[1].contiguous();
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    at::Tensor g = grads[0].contiguous();
    const double eps = ctx->saved_data["eps"].toDouble();
    const int64_t d = x.size(-1), rows = d == 0 ? 0 : x.numel() / d;
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (ctx->needs_input_grad(1)) dw = at::zeros_like(w, at::MemoryFormat::Contiguous);
    if (rows == 0 || (!dx.defined() && !dw.defined())) return {dx, dw, at::Tensor(), at::Tensor()};
#ifdef CLM_WITH_CUDA_KERNELS
    if (x.is_cuda()) {
      c10::cuda::CUDAGuard gd(x.device());
      auto opts = x.options().dtype(w.scalar_type());
      at::Tensor a = at::empty({rows}, opts);
      at::Tensor partial = at::empty({dw.defined() ? clm::fused_cuda::rms_partials(rows) * d : 0}, opts);
      clm::fused_cuda::rms_backward(cuda_dtype(x.scalar_type()), cuda_dtype(g.scalar_type()), g.data_ptr(),
                                    x.data_ptr(), w.data_ptr(), dx.defined() ? dx.data_ptr() : nullptr,
                                    dw.defined() ? dw.data_ptr() : nullptr, a.data_ptr(),
                                    partial.data_ptr(), rows, d, rms_c(d), eps, stream_of(x));
      return {dx, dw, at::Tensor(), at::Tensor()};
    }
#endif
    rms_dispatch(x.scalar_type(), g.scalar_type(), [&](auto t, auto o) {
      rms_backward_cpu<typename decltype(t)::type, typename decltype(o)::type>(g, x, w, dx, dw, rms_c(d), eps);
    });
    return {dx, dw, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

clm_tresult clm_fused_leaky_relu(clm_tensor xh, double slope) {
  return clm::tresult([&]() -> at::Tensor {
    const at::Tensor &x = clm::T(xh);
    if (!fused(x)) return leaky_composite(x, slope);
    return LeakyReLUFn::apply(x, slope);
  });
}

clm_tresult clm_fused_rms_norm(clm_tensor xh, clm_tensor sh, double eps) {
  return clm::tresult([&]() -> at::Tensor {
    at::Tensor x = clm::T(xh), s = clm::T(sh);
    if (!fused(x) || !fused(s) || x.device() != s.device() || x.dim() == 0) return rms_composite(x, s, eps);
    TORCH_CHECK(s.dim() == 1 && s.size(0) == x.size(-1), "clm_fused_rms_norm: scale of shape ", s.sizes(),
                " for input ", x.sizes(), ": want [", x.size(-1), "]");
    // The composite's output type; one kernel reads a 16-bit x and writes
    // float, other mixes compute in the promoted type (x cast by autograd).
    at::ScalarType out = at::result_type(x, s);
    // CUDA autocast runs the composite's norm in float32 (its fp32 list),
    // which makes the composite's output float32 for a 16-bit x whatever the
    // scale's dtype (CPU autocast leaves norm alone).
    if (x.is_cuda() && is_reduced(x.scalar_type()) && clm::autocast_on(at::kCUDA)) out = at::promote_types(out, at::kFloat);
    if (out != x.scalar_type() && !(is_reduced(x.scalar_type()) && out == at::kFloat)) x = x.to(out);
    // The scale in x's arithmetic type; a differentiable cast (a no-op for
    // a float scale and a float or 16-bit x).
    at::Tensor w = s.to(opmath_of(x.scalar_type()));
    return RMSNormFn::apply(x, w, eps, static_cast<int64_t>(out));
  });
}

int clm_fused_cuda_kernels(void) { return cuda_kernels() ? 1 : 0; }

}  // extern "C"
