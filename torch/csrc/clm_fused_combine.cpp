// clm_fused_combine.cpp — clm_fused_combine and clm_fused_shaped_epilogue
// (see clm_fused.h): autograd nodes with CPU kernels here and CUDA kernels in
// clm_fused_combine.cu (built only with CLM_WITH_CUDA_KERNELS).
//
// Both equal the composite ops they replace, rounding for rounding: every
// intermediate the composite materialises (each product, each partial sum,
// cumsum's output, the division by the position) is rounded to the dtype the
// composite gives it, and computed in that dtype's opmath type. So fp32 and
// fp64 forwards are bitwise the composite's on the CPU, and bf16/fp16 differ
// only in the gain gradients' summation order. The gain gradients are summed
// over fixed chunks (combine) or per (batch, head) slice (epilogue), partial
// sums added in order: deterministic and independent of the thread count.
//
// Inputs outside what the kernels cover (mixed intermediate dtypes, a 0-dim
// gain more precise than the product, gains of another shape, a CUDA tensor
// in a shim without CUDA kernels) take the composite ops themselves.
#include "clm_fused.h"
#include "clm_internal.h"

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#ifdef CLM_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "clm_fused_combine_cuda.h"
#endif

namespace {

using at::ScalarType;
using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements per gain-gradient chunk: fixed, so that the sums do not depend on
// how many threads run.
constexpr int64_t kChunk = 1 << 14;
// Independent accumulators per chunk, so that the compiler can vectorise the
// reduction without reassociating it.
constexpr int kLanes = 8;
// Elements per parallel_for task for the plain elementwise passes.
constexpr int64_t kGrain = 1 << 15;

using clm::cuda_kernels;

// rnd<T>(x): x rounded to T and back to x's type (a no-op when T is x's).
template <typename T, typename O>
inline O rnd(O x) {
  return static_cast<O>(static_cast<T>(x));
}

bool kernel_dtype(ScalarType t) {
  return t == ScalarType::Double || t == ScalarType::Float || t == ScalarType::BFloat16 || t == ScalarType::Half;
}

// The kernels read inputs of dtype in and compute in out's opmath type:
// in == out, or bf16/fp16 inputs to an fp32 result.
bool kernel_pair(ScalarType out, ScalarType in) {
  return in == out || (out == ScalarType::Float && (in == ScalarType::BFloat16 || in == ScalarType::Half));
}

// dispatch_io calls f(out_t{}, in_t{}) for a kernel_pair.
template <typename F>
void dispatch_io(ScalarType out, ScalarType in, F &&f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out, "clm_fused_combine", [&] {
    if (in == out) {
      f(scalar_t{}, scalar_t{});
      return;
    }
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (in == ScalarType::BFloat16) {
        f(float{}, c10::BFloat16{});
        return;
      }
      if (in == ScalarType::Half) {
        f(float{}, c10::Half{});
        return;
      }
    }
    TORCH_INTERNAL_ASSERT(false, "clm_fused: no kernel for ", in, " inputs to a ", out, " result");
  });
}

#ifdef CLM_WITH_CUDA_KERNELS
namespace cu = clm::fused_combine_cuda;

int cuda_dtype(ScalarType s) {
  switch (s) {
    case ScalarType::Float: return cu::kF32;
    case ScalarType::Double: return cu::kF64;
    case ScalarType::BFloat16: return cu::kBF16;
    case ScalarType::Half: return cu::kF16;
    default: TORCH_CHECK(false, "clm fused: no CUDA kernel for ", s);
  }
}

// The arithmetic type of the CUDA kernels for a result dtype.
ScalarType cuda_arith(ScalarType out) { return out == ScalarType::Double ? ScalarType::Double : ScalarType::Float; }

void *stream_of(const Tensor &t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

cu::Strides4 strides4(const Tensor &t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }
#endif

// ---- combine ------------------------------------------------------------------

Tensor combine_composite(at::TensorList gains, at::TensorList terms) {
  Tensor r = gains[0].mul(terms[0]);
  for (size_t i = 1; i < terms.size(); ++i) r = r.add(gains[i].mul(terms[i]));
  return r;
}

// combine_out_dtype returns the result dtype when every product gains[i]·terms[i]
// has that one dtype and each gain converts to it exactly; otherwise nullopt
// (the composite then runs).
std::optional<ScalarType> combine_out_dtype(at::TensorList gains, at::TensorList terms) {
  const Tensor &t0 = terms[0];
  std::optional<ScalarType> out;
  for (size_t i = 0; i < terms.size(); ++i) {
    const Tensor &g = gains[i], &t = terms[i];
    if (!g.defined() || !t.defined()) return std::nullopt;
    if (g.device() != t0.device() || t.device() != t0.device()) return std::nullopt;
    if (!kernel_dtype(g.scalar_type()) || !kernel_dtype(t.scalar_type())) return std::nullopt;
    if (g.numel() != 1 || g.dim() > t.dim() || t.sizes() != t0.sizes()) return std::nullopt;
    ScalarType d = at::result_type(g, t);
    if (out && *out != d) return std::nullopt;
    if (c10::promoteTypes(g.scalar_type(), d) != d) return std::nullopt;
    out = d;
  }
  if (t0.is_cuda() && !cuda_kernels()) return std::nullopt;
  if (!t0.is_cpu() && !t0.is_cuda()) return std::nullopt;
  return out;
}

// The terms as the kernels read them: all of one dtype (in), contiguous.
// Mixed term dtypes are converted to out first (exactly: out is the wider).
ScalarType combine_in_dtype(at::TensorList terms, ScalarType out) {
  ScalarType in = terms[0].scalar_type();
  for (const Tensor &t : terms)
    if (t.scalar_type() != in) return out;
  return kernel_pair(out, in) ? in : out;
}

template <typename out_t, typename in_t>
void combine_forward_cpu(const Tensor &out, const std::vector<Tensor> &x, const Tensor &g) {
  using op_t = at::opmath_type<out_t>;
  const int n = static_cast<int>(x.size());
  const out_t *gp = g.data_ptr<out_t>();
  const op_t g0 = gp[0], g1 = gp[1], g2 = n > 2 ? static_cast<op_t>(gp[2]) : op_t(0);
  const in_t *x0 = x[0].data_ptr<in_t>(), *x1 = x[1].data_ptr<in_t>();
  const in_t *x2 = n > 2 ? x[2].data_ptr<in_t>() : nullptr;
  out_t *o = out.data_ptr<out_t>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t b, int64_t e) {
    if (n == 2) {
      for (int64_t i = b; i < e; ++i) {
        op_t p0 = rnd<out_t>(g0 * static_cast<op_t>(x0[i]));
        op_t p1 = rnd<out_t>(g1 * static_cast<op_t>(x1[i]));
        o[i] = static_cast<out_t>(p0 + p1);
      }
    } else {
      for (int64_t i = b; i < e; ++i) {
        op_t p0 = rnd<out_t>(g0 * static_cast<op_t>(x0[i]));
        op_t p1 = rnd<out_t>(g1 * static_cast<op_t>(x1[i]));
        op_t p2 = rnd<out_t>(g2 * static_cast<op_t>(x2[i]));
        o[i] = static_cast<out_t>(rnd<out_t>(p0 + p1) + p2);
      }
    }
  });
}

// dx[i] = g[i]·grad rounded as the composite's mul backward (to out, then to
// the term's dtype); dg[i] = Σ grad·x[i] with each product rounded to out,
// summed per fixed chunk in kLanes lanes and the chunks added in order.
template <typename out_t, typename in_t>
void combine_backward_cpu(const Tensor &grad, const std::vector<Tensor> &x, const Tensor &g,
                          const std::vector<Tensor> &dx, std::vector<double> &dg) {
  using op_t = at::opmath_type<out_t>;
  using acc_t = at::acc_type<out_t, false>;
  const int n = static_cast<int>(x.size());
  const int64_t numel = grad.numel();
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  const out_t *gr = grad.data_ptr<out_t>();
  const out_t *gp = g.data_ptr<out_t>();
  std::vector<acc_t> partial(static_cast<size_t>(chunks * n), acc_t(0));
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t b = c * kChunk, e = std::min(numel, b + kChunk);
      for (int k = 0; k < n; ++k) {
        const op_t gk = gp[k];
        if (dx[k].defined()) {
          in_t *d = dx[k].data_ptr<in_t>();
          for (int64_t i = b; i < e; ++i) d[i] = static_cast<in_t>(static_cast<out_t>(static_cast<op_t>(gr[i]) * gk));
        }
        if (x[k].defined()) {
          const in_t *xk = x[k].data_ptr<in_t>();
          acc_t lane[kLanes] = {};
          int64_t i = b;
          for (; i + kLanes <= e; i += kLanes)
            for (int l = 0; l < kLanes; ++l)
              lane[l] += static_cast<acc_t>(rnd<out_t>(static_cast<op_t>(gr[i + l]) * static_cast<op_t>(xk[i + l])));
          for (int l = 0; i < e; ++i, ++l)
            lane[l] += static_cast<acc_t>(rnd<out_t>(static_cast<op_t>(gr[i]) * static_cast<op_t>(xk[i])));
          acc_t s = 0;
          for (int l = 0; l < kLanes; ++l) s += lane[l];
          partial[c * n + k] = s;
        }
      }
    }
  });
  for (int k = 0; k < n; ++k) {
    acc_t s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * n + k];
    dg[k] = static_cast<double>(static_cast<out_t>(s));
  }
}

// saved_data keys of the terms' dtypes.
const char *const kTermDType[3] = {"term0", "term1", "term2"};

class CombineFn : public torch::autograd::Function<CombineFn> {
 public:
  static Tensor forward(AutogradContext *ctx, at::TensorList gains, at::TensorList terms) {
    const int n = static_cast<int>(terms.size());
    const ScalarType out_dt = *combine_out_dtype(gains, terms);
    const ScalarType in_dt = combine_in_dtype(terms, out_dt);
    std::vector<Tensor> x(n), gs(n);
    for (int i = 0; i < n; ++i) {
      x[i] = terms[i].to(in_dt).contiguous();
      gs[i] = gains[i].reshape({1});
    }
    const Tensor g = at::cat(gs).to(out_dt);  // [n], exact (checked)
    Tensor out = at::empty(terms[0].sizes(), terms[0].options().dtype(out_dt));
    if (out.is_cuda()) {
#ifdef CLM_WITH_CUDA_KERNELS
      c10::cuda::CUDAGuard guard(out.device());
      const Tensor ga = g.to(cuda_arith(out_dt));
      const void *xp[3] = {x[0].data_ptr(), x[1].data_ptr(), n > 2 ? x[2].data_ptr() : nullptr};
      cu::combine_forward(cuda_dtype(out_dt), cuda_dtype(in_dt), xp, n, ga.data_ptr(), out.data_ptr(), out.numel(),
                          stream_of(out));
#endif
    } else {
      dispatch_io(out_dt, in_dt, [&](auto o, auto i) {
        combine_forward_cpu<decltype(o), decltype(i)>(out, x, g);
      });
    }
    // Save each term only when its gain needs a gradient, and the gains
    // (one element each) for the terms' gradients.
    std::vector<Tensor> save(gains.begin(), gains.end());
    for (int i = 0; i < n; ++i) save.push_back(gains[i].requires_grad() ? terms[i] : Tensor());
    ctx->save_for_backward(save);
    ctx->saved_data["n"] = static_cast<int64_t>(n);
    ctx->saved_data["out"] = static_cast<int64_t>(out_dt);
    ctx->saved_data["in"] = static_cast<int64_t>(in_dt);
    for (int i = 0; i < n; ++i) ctx->saved_data[kTermDType[i]] = static_cast<int64_t>(terms[i].scalar_type());
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_out) {
    const int n = static_cast<int>(ctx->saved_data["n"].toInt());
    const auto out_dt = static_cast<ScalarType>(ctx->saved_data["out"].toInt());
    const auto in_dt = static_cast<ScalarType>(ctx->saved_data["in"].toInt());
    const variable_list saved = ctx->get_saved_variables();
    variable_list grads(2 * n);
    if (!grad_out[0].defined()) return grads;
    const Tensor grad = grad_out[0].to(out_dt).contiguous();
    std::vector<Tensor> x(n), dx(n), gs(n);
    for (int i = 0; i < n; ++i) {
      const Tensor &gain = saved[i], &term = saved[n + i];
      gs[i] = gain.reshape({1});
      if (ctx->needs_input_grad(i)) x[i] = term.to(in_dt).contiguous();
      if (ctx->needs_input_grad(n + i)) dx[i] = at::empty(grad.sizes(), grad.options().dtype(in_dt));
    }
    const Tensor g = at::cat(gs).to(out_dt);
    std::vector<double> dg(n, 0.0);
    Tensor dg_dev;
    if (grad.is_cuda()) {
#ifdef CLM_WITH_CUDA_KERNELS
      c10::cuda::CUDAGuard guard(grad.device());
      const ScalarType arith = cuda_arith(out_dt);
      const Tensor ga = g.to(arith);
      dg_dev = at::zeros({n}, grad.options().dtype(arith));
      const Tensor partial = at::empty({cu::combine_partials(grad.numel()) * n}, grad.options().dtype(arith));
      const void *xp[3] = {};
      void *dxp[3] = {};
      for (int i = 0; i < n; ++i) {
        xp[i] = x[i].defined() ? x[i].data_ptr() : nullptr;
        dxp[i] = dx[i].defined() ? dx[i].data_ptr() : nullptr;
      }
      cu::combine_backward(cuda_dtype(out_dt), cuda_dtype(in_dt), grad.data_ptr(), xp, ga.data_ptr(), dxp,
                           dg_dev.data_ptr(), partial.data_ptr(), n, grad.numel(), stream_of(grad));
      dg_dev = dg_dev.to(out_dt);
#endif
    } else {
      dispatch_io(out_dt, in_dt, [&](auto o, auto i) {
        combine_backward_cpu<decltype(o), decltype(i)>(grad, x, g, dx, dg);
      });
    }
    for (int i = 0; i < n; ++i) {
      const Tensor &gain = saved[i];
      if (x[i].defined()) {
        Tensor v = grad.is_cuda() ? dg_dev.narrow(0, i, 1) : at::full({1}, dg[i], grad.options().dtype(out_dt));
        grads[i] = v.to(gain.scalar_type()).reshape(gain.sizes());
      }
      if (dx[i].defined()) {
        const auto term_dt = static_cast<ScalarType>(ctx->saved_data[kTermDType[i]].toInt());
        grads[n + i] = dx[i].to(term_dt);  // exact unless in_dt is out's
      }
    }
    return grads;
  }
};

// ---- the shaped-attention epilogue ---------------------------------------------

Tensor epilogue_composite(const Tensor &y, const Tensor &v, const Tensor &r, const Tensor &s, const Tensor &c) {
  const int64_t T = v.size(2);
  Tensor pos = at::arange(1, T + 1, v.options().requires_grad(false)).view({-1, 1});
  return r.mul(y).add(s.mul(v)).sub(c.mul(v.cumsum(2).div(pos)));
}

// cumsum(v, 2) runs in fp32 under CUDA autocast (its fp32 list, with
// dtype=float), in v's dtype otherwise.
bool cum_f32_for(const Tensor &v) {
  return v.is_cuda() && clm::autocast_on(at::kCUDA) &&
         (v.scalar_type() == ScalarType::BFloat16 || v.scalar_type() == ScalarType::Half);
}

std::optional<ScalarType> epilogue_out_dtype(const Tensor &y, const Tensor &v, const Tensor &r, const Tensor &s,
                                             const Tensor &c) {
  for (const Tensor *t : {&y, &v, &r, &s, &c}) {
    if (!t->defined() || t->device() != v.device() || !kernel_dtype(t->scalar_type())) return std::nullopt;
  }
  if (v.dim() != 4 || y.sizes() != v.sizes()) return std::nullopt;
  const int64_t H = v.size(1);
  const std::vector<int64_t> gshape{1, H, 1, 1};
  for (const Tensor *g : {&r, &s, &c})
    if (g->sizes() != at::IntArrayRef(gshape)) return std::nullopt;
  const bool cum_f32 = cum_f32_for(v);
  const ScalarType cv_dt = cum_f32 ? ScalarType::Float : v.scalar_type();
  const ScalarType out = at::result_type(r, y);
  if (at::result_type(s, v) != out || c10::promoteTypes(c.scalar_type(), cv_dt) != out) return std::nullopt;
  if (!kernel_pair(out, v.scalar_type())) return std::nullopt;
  if (v.is_cuda() && !cuda_kernels()) return std::nullopt;
  if (!v.is_cpu() && !v.is_cuda()) return std::nullopt;
  return out;
}

// dispatch_epi calls f(out_t{}, v_t{}, y_t{}) with y_t v's or out's dtype.
template <typename F>
void dispatch_epi(ScalarType out, ScalarType vd, ScalarType yd, F &&f) {
  dispatch_io(out, vd, [&](auto o, auto vv) {
    using out_t = decltype(o);
    using v_t = decltype(vv);
    if (yd == c10::CppTypeToScalarType<v_t>::value)
      f(out_t{}, v_t{}, v_t{});
    else
      f(out_t{}, v_t{}, out_t{});
  });
}

// Strides of a [B, H, T, D] tensor.
struct Strides4 {
  int64_t b, h, t, d;
  explicit Strides4(const Tensor &x) : b(x.stride(0)), h(x.stride(1)), t(x.stride(2)), d(x.stride(3)) {}
};

// Slices of T·D elements per parallel task, at least one.
int64_t slice_grain(int64_t T, int64_t D) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, T * D)); }

// out = rnd(rnd(rnd(r·y) + rnd(s·v)) − rnd(c·cv)), cv = rnd_v(rnd_v(cumsum)/pos):
// the composite's roundings, one (batch, head) slice per step, the running
// sum in at::cumsum's CPU accumulate type.
template <typename out_t, typename v_t, typename y_t>
void epilogue_forward_cpu(const Tensor &out, const Tensor &y, const Tensor &v, const Tensor &gains) {
  using op_t = at::opmath_type<out_t>;
  using vop_t = at::opmath_type<v_t>;
  using cum_t = at::acc_type<v_t, false>;
  const int64_t B = v.size(0), H = v.size(1), T = v.size(2), D = v.size(3);
  const Strides4 so(out), sy(y), sv(v);
  const out_t *gp = gains.data_ptr<out_t>();
  const y_t *yp = y.data_ptr<y_t>();
  const v_t *vp = v.data_ptr<v_t>();
  out_t *op = out.data_ptr<out_t>();
  at::parallel_for(0, B * H, slice_grain(T, D), [&](int64_t sb, int64_t se) {
    std::vector<cum_t> cum(static_cast<size_t>(D));
    for (int64_t bh = sb; bh < se; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const op_t r = gp[h], s = gp[H + h], c = gp[2 * H + h];
      std::fill(cum.begin(), cum.end(), cum_t(0));
      for (int64_t t = 0; t < T; ++t) {
        const vop_t pos = static_cast<vop_t>(static_cast<v_t>(t + 1));
        const y_t *yr = yp + b * sy.b + h * sy.h + t * sy.t;
        const v_t *vr = vp + b * sv.b + h * sv.h + t * sv.t;
        out_t *orow = op + b * so.b + h * so.h + t * so.t;
        auto row = [&](int64_t ysd, int64_t vsd, int64_t osd) {
          for (int64_t d = 0; d < D; ++d) {
            const v_t vv = vr[d * vsd];
            cum[d] += static_cast<cum_t>(vv);
            const v_t cv = static_cast<v_t>(static_cast<vop_t>(static_cast<v_t>(cum[d])) / pos);
            const op_t a = rnd<out_t>(r * static_cast<op_t>(yr[d * ysd]));
            const op_t bb = rnd<out_t>(s * static_cast<op_t>(vv));
            const op_t cc = rnd<out_t>(c * static_cast<op_t>(cv));
            orow[d * osd] = static_cast<out_t>(rnd<out_t>(a + bb) - cc);
          }
        };
        if (sy.d == 1 && sv.d == 1 && so.d == 1)
          row(1, 1, 1);  // the unit-stride loop the compiler vectorises
        else
          row(sy.d, sv.d, so.d);
      }
    }
  });
}

// The backward of the composite, rounding as its autograd does:
//   dy = rnd_y(rnd(g·r));  dv = rnd_v(rnd_v(rnd(g·s)) + rnd_v(revcumsum_t(gcs)))
//   with gcs = rnd_v(rnd_v(rnd(−g·c))/pos) accumulated like at::cumsum;
//   d resid_h = Σ rnd(g·y), d skip_h = Σ rnd(g·v), d centre_h = Σ rnd(−g·cv),
// each gain sum per (b, h) slice in D lanes, the slices added in b order.
template <typename out_t, typename v_t, typename y_t>
void epilogue_backward_cpu(const Tensor &grad, const Tensor &y, const Tensor &v, const Tensor &gains,
                           const Tensor &dy, const Tensor &dv, std::vector<double> &dgains, const bool need[3]) {
  using op_t = at::opmath_type<out_t>;
  using vop_t = at::opmath_type<v_t>;
  using cum_t = at::acc_type<v_t, false>;
  using acc_t = at::acc_type<out_t, false>;
  const int64_t B = grad.size(0), H = grad.size(1), T = grad.size(2), D = grad.size(3);
  const Strides4 sg(grad);
  const out_t *gp = gains.data_ptr<out_t>();
  const out_t *gr = grad.data_ptr<out_t>();
  const y_t *yp = need[0] ? y.data_ptr<y_t>() : nullptr;
  const v_t *vp = (need[1] || need[2]) ? v.data_ptr<v_t>() : nullptr;
  y_t *dyp = dy.defined() ? dy.data_ptr<y_t>() : nullptr;
  v_t *dvp = dv.defined() ? dv.data_ptr<v_t>() : nullptr;
  const bool any_gain = need[0] || need[1] || need[2];
  // Per (b, h) slice: the three gain sums.
  std::vector<acc_t> partial(static_cast<size_t>(B * H * 3), acc_t(0));
  at::parallel_for(0, B * H, slice_grain(T, D), [&](int64_t sb, int64_t se) {
    std::vector<cum_t> cum(static_cast<size_t>(D));
    std::vector<acc_t> lanes(static_cast<size_t>(3 * D));
    acc_t *lr = lanes.data(), *ls = lr + D, *lc = ls + D;
    for (int64_t bh = sb; bh < se; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const op_t r = gp[h], s = gp[H + h], c = gp[2 * H + h];
      const out_t *gs = gr + b * sg.b + h * sg.h;
      // Forward in t: dy and the gain sums (the running mean recomputed).
      if (dyp || any_gain) {
        std::fill(cum.begin(), cum.end(), cum_t(0));
        std::fill(lanes.begin(), lanes.end(), acc_t(0));
        for (int64_t t = 0; t < T; ++t) {
          const out_t *g = gs + t * sg.t;
          const int64_t off = b * sg.b + h * sg.h + t * sg.t;  // dy, dv: grad's layout
          if (dyp) {
            y_t *d = dyp + off;
            for (int64_t k = 0; k < D; ++k)
              d[k * sg.d] = static_cast<y_t>(static_cast<out_t>(static_cast<op_t>(g[k * sg.d]) * r));
          }
          if (need[0]) {
            const y_t *yr = yp + b * y.stride(0) + h * y.stride(1) + t * y.stride(2);
            const int64_t ysd = y.stride(3);
            for (int64_t k = 0; k < D; ++k)
              lr[k] += static_cast<acc_t>(rnd<out_t>(static_cast<op_t>(g[k * sg.d]) * static_cast<op_t>(yr[k * ysd])));
          }
          if (need[1] || need[2]) {
            const v_t *vr = vp + b * v.stride(0) + h * v.stride(1) + t * v.stride(2);
            const int64_t vsd = v.stride(3);
            const vop_t pos = static_cast<vop_t>(static_cast<v_t>(t + 1));
            for (int64_t k = 0; k < D; ++k) {
              const op_t gg = static_cast<op_t>(g[k * sg.d]);
              const v_t vv = vr[k * vsd];
              if (need[1]) ls[k] += static_cast<acc_t>(rnd<out_t>(gg * static_cast<op_t>(vv)));
              if (need[2]) {
                cum[k] += static_cast<cum_t>(vv);
                const v_t cv = static_cast<v_t>(static_cast<vop_t>(static_cast<v_t>(cum[k])) / pos);
                lc[k] += static_cast<acc_t>(rnd<out_t>(-gg * static_cast<op_t>(cv)));
              }
            }
          }
        }
        for (int j = 0; j < 3; ++j) {
          acc_t sum = 0;
          for (int64_t k = 0; k < D; ++k) sum += lanes[j * D + k];
          partial[(b * H + h) * 3 + j] = sum;
        }
      }
      // Backward in t: dv = skip·g − revcumsum(centre·g/pos).
      if (dvp) {
        std::fill(cum.begin(), cum.end(), cum_t(0));
        for (int64_t t = T - 1; t >= 0; --t) {
          const out_t *g = gs + t * sg.t;
          v_t *d = dvp + b * sg.b + h * sg.h + t * sg.t;
          const vop_t pos = static_cast<vop_t>(static_cast<v_t>(t + 1));
          for (int64_t k = 0; k < D; ++k) {
            const op_t gg = static_cast<op_t>(g[k * sg.d]);
            const v_t p1 = static_cast<v_t>(static_cast<out_t>(gg * s));
            const v_t gcv = static_cast<v_t>(static_cast<out_t>(-gg * c));
            const v_t gcs = static_cast<v_t>(static_cast<vop_t>(gcv) / pos);
            cum[k] += static_cast<cum_t>(gcs);
            d[k * sg.d] = static_cast<v_t>(static_cast<vop_t>(p1) + static_cast<vop_t>(static_cast<v_t>(cum[k])));
          }
        }
      }
    }
  });
  for (int j = 0; j < 3; ++j) {
    if (!need[j]) continue;
    for (int64_t h = 0; h < H; ++h) {
      acc_t sum = 0;
      for (int64_t b = 0; b < B; ++b) sum += partial[(b * H + h) * 3 + j];
      dgains[j * H + h] = static_cast<double>(static_cast<out_t>(sum));
    }
  }
}

class EpilogueFn : public torch::autograd::Function<EpilogueFn> {
 public:
  static Tensor forward(AutogradContext *ctx, const Tensor &y_in, const Tensor &v, const Tensor &r, const Tensor &s,
                        const Tensor &c) {
    const ScalarType out_dt = *epilogue_out_dtype(y_in, v, r, s, c);
    const bool cum_f32 = cum_f32_for(v);
    // y in v's dtype or, converted exactly, in out's.
    const Tensor y = y_in.scalar_type() == v.scalar_type() ? y_in : y_in.to(out_dt);
    const int64_t H = v.size(1);
    const Tensor gains = at::cat({r.reshape({1, H}), s.reshape({1, H}), c.reshape({1, H})}).to(out_dt).contiguous();
    // v's layout when it is dense (a permuted view gives a permuted result,
    // which the heads' merge then reshapes without a copy).
    Tensor out = at::empty_like(v, v.options().dtype(out_dt));
    if (v.is_cuda()) {
#ifdef CLM_WITH_CUDA_KERNELS
      c10::cuda::CUDAGuard guard(v.device());
      const Tensor ga = gains.to(cuda_arith(out_dt));
      cu::epilogue_forward(cuda_dtype(out_dt), cuda_dtype(v.scalar_type()), cuda_dtype(y.scalar_type()), y.data_ptr(),
                           strides4(y), v.data_ptr(), strides4(v), ga.data_ptr(), out.data_ptr(), strides4(out),
                           v.size(0), H, v.size(2), v.size(3), cum_f32, stream_of(v));
#endif
    } else {
      dispatch_epi(out_dt, v.scalar_type(), y.scalar_type(), [&](auto o, auto vv, auto yy) {
        epilogue_forward_cpu<decltype(o), decltype(vv), decltype(yy)>(out, y, v, gains);
      });
    }
    // y only for resid's gradient, v only for skip's and centre's.
    ctx->save_for_backward({r.requires_grad() ? y_in : Tensor(), (s.requires_grad() || c.requires_grad()) ? v : Tensor(),
                            r, s, c});
    ctx->saved_data["out"] = static_cast<int64_t>(out_dt);
    ctx->saved_data["v"] = static_cast<int64_t>(v.scalar_type());
    ctx->saved_data["y"] = static_cast<int64_t>(y_in.scalar_type());
    ctx->saved_data["cum_f32"] = cum_f32;
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_out) {
    variable_list grads(5);
    if (!grad_out[0].defined()) return grads;
    const auto out_dt = static_cast<ScalarType>(ctx->saved_data["out"].toInt());
    const auto v_dt = static_cast<ScalarType>(ctx->saved_data["v"].toInt());
    const auto y_dt = static_cast<ScalarType>(ctx->saved_data["y"].toInt());
    [[maybe_unused]] const bool cum_f32 = ctx->saved_data["cum_f32"].toBool();
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &r = saved[2], &s = saved[3], &c = saved[4];
    // The kernel's y dtype: y's, or out's when y's is neither v's nor out's.
    const ScalarType yk_dt = y_dt == v_dt ? v_dt : out_dt;
    const Tensor y = saved[0].defined() ? saved[0].to(yk_dt) : Tensor();
    const Tensor &v = saved[1];
    Tensor grad = grad_out[0].to(out_dt);
    if (!grad.is_non_overlapping_and_dense()) grad = grad.contiguous();
    const int64_t H = grad.size(1);
    const bool need[3] = {ctx->needs_input_grad(2), ctx->needs_input_grad(3), ctx->needs_input_grad(4)};
    const Tensor gains = at::cat({r.reshape({1, H}), s.reshape({1, H}), c.reshape({1, H})}).to(out_dt).contiguous();
    // dy and dv in grad's layout (dense, so empty_like keeps its strides).
    Tensor dy = ctx->needs_input_grad(0) ? at::empty_like(grad, grad.options().dtype(yk_dt)) : Tensor();
    Tensor dv = ctx->needs_input_grad(1) ? at::empty_like(grad, grad.options().dtype(v_dt)) : Tensor();
    if (!dy.defined() && !dv.defined() && !need[0] && !need[1] && !need[2]) return grads;
    Tensor dg;  // [3, H] in out's dtype
    if (grad.is_cuda()) {
#ifdef CLM_WITH_CUDA_KERNELS
      c10::cuda::CUDAGuard guard(grad.device());
      const ScalarType arith = cuda_arith(out_dt);
      const Tensor ga = gains.to(arith);
      const int64_t B = grad.size(0), T = grad.size(2), D = grad.size(3);
      Tensor acc, partial;
      if (need[0] || need[1] || need[2]) {
        acc = at::zeros({3, H}, grad.options().dtype(arith));
        partial = at::empty({std::max<int64_t>(3, cu::epilogue_partials(B, H, D))}, grad.options().dtype(arith));
      }
      const cu::Strides4 none{0, 0, 0, 0};
      cu::epilogue_backward(cuda_dtype(out_dt), cuda_dtype(v_dt), cuda_dtype(yk_dt), grad.data_ptr(), strides4(grad),
                            y.defined() ? y.data_ptr() : nullptr, y.defined() ? strides4(y) : none,
                            v.defined() ? v.data_ptr() : nullptr, v.defined() ? strides4(v) : none, ga.data_ptr(),
                            dy.defined() ? dy.data_ptr() : nullptr, dv.defined() ? dv.data_ptr() : nullptr,
                            acc.defined() ? acc.data_ptr() : nullptr, partial.defined() ? partial.data_ptr() : nullptr,
                            need, B, H, T, D, cum_f32, stream_of(grad));
      if (acc.defined()) dg = acc.to(out_dt);
#endif
    } else {
      std::vector<double> sums(static_cast<size_t>(3 * H), 0.0);
      dispatch_epi(out_dt, v_dt, yk_dt, [&](auto o, auto vv, auto yy) {
        epilogue_backward_cpu<decltype(o), decltype(vv), decltype(yy)>(grad, y, v, gains, dy, dv, sums, need);
      });
      if (need[0] || need[1] || need[2])
        dg = at::tensor(sums, grad.options().dtype(at::kDouble)).to(out_dt).view({3, H});
    }
    if (dy.defined()) grads[0] = dy.to(y_dt);
    grads[1] = dv;
    for (int j = 0; j < 3; ++j)
      if (need[j]) grads[2 + j] = dg[j].to(saved[2 + j].scalar_type()).view({1, H, 1, 1});
    return grads;
  }
};

}  // namespace

extern "C" {

clm_tresult clm_fused_combine(const clm_tensor *gains, const clm_tensor *terms, int n) {
  return clm::tresult([&]() -> Tensor {
    if (n < 2 || n > 3) throw std::invalid_argument("fused_combine: n must be 2 or 3, got " + std::to_string(n));
    std::vector<Tensor> g, t;
    for (int i = 0; i < n; ++i) {
      g.push_back(clm::T(gains[i]));
      t.push_back(clm::T(terms[i]));
    }
    if (!combine_out_dtype(g, t)) return combine_composite(g, t);
    return CombineFn::apply(at::TensorList(g), at::TensorList(t));
  });
}

clm_tresult clm_fused_shaped_epilogue(clm_tensor y, clm_tensor v, clm_tensor resid, clm_tensor skip, clm_tensor centre) {
  return clm::tresult([&]() -> Tensor {
    const Tensor &ty = clm::T(y), &tv = clm::T(v), &r = clm::T(resid), &s = clm::T(skip), &c = clm::T(centre);
    if (!epilogue_out_dtype(ty, tv, r, s, c)) return epilogue_composite(ty, tv, r, s, c);
    return EpilogueFn::apply(ty, tv, r, s, c);
  });
}

}  // extern "C"
