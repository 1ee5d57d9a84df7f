// clm_loss.cpp — memory-lean losses as custom autograd functions.
//
// LinearCrossEntropy is mean cross-entropy(h·wᵀ, target) for an LM head whose
// full logits [N, V] would not fit (N = 16384 tokens, V = 52000 words: 3.4 GB
// in float32, twice or more that during backward). Forward walks over row
// chunks and drops each chunk's logits once used. At most [chunk, V] logits
// and a few tensors of that size exist at any time.
//
// Training (gradients needed, matmuls not in float16): forward also forms
// each chunk's softmax − onehot, scaled by 1/count, and accumulates grad_h
// (the chunk's rows) and grad_w (summed over chunks); backward only scales
// them by grad_out. The logits are computed once per step, as in the plain
// head, and the extra memory is grad_h [N, d] and grad_w [V, d] held until
// backward.
//
// Otherwise forward keeps each row's logsumexp (N floats) and backward
// recomputes the logits: in float16, g/count could underflow before the
// loss scale (grad_out) is applied, so backward scales by grad_out/count
// first, as the plain head's backward does.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "clm_internal.h"
#include "clm_matmul.h"

namespace {

using clm::guard;
using clm::T;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool is_half(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// The dtype the matmuls run in: autocast's lower precision when it is on for
// h's device and the inputs are float32 (as the plain Linear would run under
// autocast), otherwise the inputs' common dtype.
at::ScalarType compute_dtype(const at::Tensor &h, const at::Tensor &w) {
  auto dt = at::promote_types(h.scalar_type(), w.scalar_type());
  if (dt != at::kFloat) return dt;
  const auto devt = h.device().type();
  if (devt != at::kCPU && devt != at::kCUDA) return dt;
  if (!clm::autocast_on(devt)) return dt;
#if CLM_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(devt);
#else
  return devt == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

// The dtype logits, softmax and the loss are evaluated in: float32 for half
// inputs, the compute dtype otherwise.
at::ScalarType accum_dtype(at::ScalarType cdt) { return is_half(cdt) ? at::kFloat : cdt; }

// HeadGrads holds the head's gradients while chunks add to them: grad_h
// [N, d] in h's dtype promoted with the compute dtype, grad_w [V, d]
// accumulated in the accumulation dtype (float32 for half inputs).
struct HeadGrads {
  at::Tensor h, w;

  HeadGrads(const at::Tensor &hin, const at::Tensor &win, at::ScalarType cdt, bool need_h, bool need_w) {
    if (need_h) h = at::empty(hin.sizes(), hin.options().dtype(at::promote_types(hin.scalar_type(), cdt)));
    if (need_w) w = at::zeros(win.sizes(), win.options().dtype(at::promote_types(accum_dtype(cdt), win.scalar_type())));
  }

  // add turns the logits g of rows [s, s+n) (accumulation dtype, in place)
  // into (softmax − onehot)·factor, using the rows' logsumexp lse and target
  // indices idx [n, 1], and adds the chunk's share (accumulate).
  void add(at::Tensor &g, const at::Tensor &lse, const at::Tensor &idx, const at::Tensor &factor, const at::Tensor &hc,
           const at::Tensor &wc, at::ScalarType cdt, int64_t s, int64_t n) {
    g.sub_(lse.unsqueeze(1)).exp_();                            // softmax
    g.scatter_add_(1, idx, at::full({n, 1}, -1, g.options()));  // − onehot
    g.mul_(factor.unsqueeze(1));
    accumulate(g, hc, wc, cdt, s, n);
  }

  // accumulate adds the share of rows [s, s+n) whose logits' gradient is g:
  // their rows of grad_h and a term of grad_w. hc and wc are the chunk's
  // rows and w in the compute dtype.
  void accumulate(at::Tensor &g, const at::Tensor &hc, const at::Tensor &wc, at::ScalarType cdt, int64_t s,
                  int64_t n) {
    const auto gc = g.to(cdt);  // the chunk's gradient of the logits
    g.reset();
    if (h.defined()) h.narrow(0, s, n).copy_(clm::mm(gc, wc));
    if (w.defined()) {
      if (gc.scalar_type() == w.scalar_type())
        clm::addmm_(w, gc.t(), hc);
      else
        w.add_(at::matmul(gc.t(), hc));
    }
  }
};

// xent_grad_ turns logits g [n, V] into the gradient (softmax − onehot)·
// factor in place and returns each row's loss logsumexp − g[target]: with
// e = exp(g − max) and S = Σ e per row, the loss is log S − (g[t] − max)
// and the gradient e·(factor/S) − factor·onehot. No second [n, V] tensor
// exists (logsumexp would hold two), and g is read and written four times.
at::Tensor xent_grad_(at::Tensor &g, const at::Tensor &idx, const at::Tensor &factor) {
  const auto m = g.amax({1}, true);
  const auto shifted_target = g.gather(1, idx).sub_(m).squeeze(1);
  g.sub_(m).exp_();
  const auto S = g.sum({1});
  g.mul_(factor.div(S).unsqueeze(1));
  g.scatter_add_(1, idx, factor.neg().unsqueeze(1));
  return S.log().sub_(shifted_target);
}

struct LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &h, const at::Tensor &w, const at::Tensor &target,
                            int64_t ignore_index, int64_t chunk, bool precompute) {
    // Read autocast's state first: the guard below hides it.
    const auto cdt = compute_dtype(h, w);
    // Casts are explicit (compute_dtype); autocast must not recast inside.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto adt = accum_dtype(cdt);
    const int64_t N = h.size(0);
    const auto wc = w.to(cdt);
    const auto valid = target.ne(ignore_index);
    const auto safe = target.masked_fill(valid.logical_not(), 0).unsqueeze(1);
    const auto count = valid.sum();
    auto total = at::zeros({}, h.options().dtype(adt));
    if (precompute) {
      const bool need_h = h.requires_grad(), need_w = w.requires_grad();
      // Per-row factor 1/count, zero for ignored rows (where, not a product,
      // so that count == 0 gives zero gradients rather than NaN).
      const auto rowscale = at::where(valid, at::ones({}, h.options().dtype(adt)).div(count.to(adt)),
                                      at::zeros({}, h.options().dtype(adt)));
      HeadGrads grads(h, w, cdt, need_h, need_w);
      for (int64_t s = 0; s < N; s += chunk) {
        const int64_t n = std::min(chunk, N - s);
        const auto hc = h.narrow(0, s, n).to(cdt);
        auto g = clm::mm(hc, wc.t()).to(adt);  // logits [n, V]
        const auto l = xent_grad_(g, safe.narrow(0, s, n), rowscale.narrow(0, s, n));  // for grad_out = 1
        total.add_(at::where(valid.narrow(0, s, n), l, at::zeros({}, l.options())).sum());
        grads.accumulate(g, hc, wc, cdt, s, n);
      }
      ctx->saved_data["grad_h"] = grads.h;
      ctx->saved_data["grad_w"] = grads.w;
    } else {
      auto lse = at::empty({N}, h.options().dtype(adt));
      for (int64_t s = 0; s < N; s += chunk) {
        const int64_t n = std::min(chunk, N - s);
        auto logits = clm::mm(h.narrow(0, s, n).to(cdt), wc.t()).to(adt);  // [n, V]
        auto l = at::logsumexp(logits, {1});
        auto picked = logits.gather(1, safe.narrow(0, s, n)).squeeze(1);
        logits.reset();
        total.add_(at::where(valid.narrow(0, s, n), l - picked, at::zeros({}, l.options())).sum());
        lse.narrow(0, s, n).copy_(l);
      }
      ctx->save_for_backward({h, w, target});
      ctx->saved_data["lse"] = lse;
      ctx->saved_data["count"] = count;
      ctx->saved_data["ignore"] = ignore_index;
      ctx->saved_data["chunk"] = chunk;
      ctx->saved_data["cdt"] = static_cast<int64_t>(cdt);
    }
    ctx->saved_data["precomputed"] = precompute;
    ctx->saved_data["h_dtype"] = static_cast<int64_t>(h.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    // 0/0 = NaN when every target is ignored, as PyTorch's mean reduction.
    return total.div(count.to(adt));
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_out) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    if (ctx->saved_data["precomputed"].toBool()) {
      const auto hdt = static_cast<at::ScalarType>(ctx->saved_data["h_dtype"].toInt());
      const auto wdt = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
      auto scaled = [&](const char *key, at::ScalarType dt, bool needed) {
        const auto &v = ctx->saved_data[key];
        if (!needed || !v.isTensor()) return at::Tensor();
        const auto g = v.toTensor();
        if (!g.defined()) return at::Tensor();
        return g.mul(grad_out[0].to(g.scalar_type())).to(dt);
      };
      auto gh = scaled("grad_h", hdt, ctx->needs_input_grad(0));
      auto gw = scaled("grad_w", wdt, ctx->needs_input_grad(1));
      return {gh, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &w = saved[1], &target = saved[2];
    const auto lse = ctx->saved_data["lse"].toTensor();
    const auto count = ctx->saved_data["count"].toTensor();
    const int64_t ignore_index = ctx->saved_data["ignore"].toInt();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto cdt = static_cast<at::ScalarType>(ctx->saved_data["cdt"].toInt());
    const auto adt = accum_dtype(cdt);
    const bool need_h = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);

    const int64_t N = h.size(0);
    const auto wc = w.to(cdt);
    const auto valid = target.ne(ignore_index);
    const auto safe = target.masked_fill(valid.logical_not(), 0).unsqueeze(1);
    // Per-row factor grad_out/count, zero for ignored rows (where, not a
    // product, so that count == 0 gives zeros rather than NaN).
    const auto scale = grad_out[0].to(adt).div(count.to(adt));
    const auto zero = at::zeros({}, lse.options());
    HeadGrads grads(h, w, cdt, need_h, need_w);
    for (int64_t s = 0; s < N && (need_h || need_w); s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      const auto hc = h.narrow(0, s, n).to(cdt);
      auto g = clm::mm(hc, wc.t()).to(adt);  // logits [n, V], recomputed
      grads.add(g, lse.narrow(0, s, n), safe.narrow(0, s, n), at::where(valid.narrow(0, s, n), scale, zero), hc, wc,
                cdt, s, n);
    }
    at::Tensor grad_h = grads.h, grad_w = grads.w;
    if (need_h) grad_h = grad_h.to(h.scalar_type());
    if (need_w) grad_w = grad_w.to(w.scalar_type());
    return {grad_h, grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

clm_tresult clm_linear_cross_entropy(clm_tensor hh, clm_tensor hw, clm_tensor ht, int64_t ignore_index, int64_t chunk) {
  clm_tresult r{nullptr, nullptr};
  r.err = guard([&] {
    const auto &h = T(hh), &w = T(hw), &t = T(ht);
    if (h.dim() != 2 || w.dim() != 2 || t.dim() != 1)
      throw std::invalid_argument("linear_cross_entropy: want h [N, d], w [V, d] and target [N], got " +
                                  std::to_string(h.dim()) + "-d, " + std::to_string(w.dim()) + "-d and " +
                                  std::to_string(t.dim()) + "-d");
    if (h.size(1) != w.size(1))
      throw std::invalid_argument("linear_cross_entropy: h has " + std::to_string(h.size(1)) +
                                  " features, w has " + std::to_string(w.size(1)));
    if (t.size(0) != h.size(0))
      throw std::invalid_argument("linear_cross_entropy: " + std::to_string(t.size(0)) + " targets for " +
                                  std::to_string(h.size(0)) + " rows");
    if (t.scalar_type() != at::kLong)
      throw std::invalid_argument(std::string("linear_cross_entropy: target must be Long (int64), not ") +
                                  c10::toString(t.scalar_type()));
    if (!at::isFloatingType(h.scalar_type()) || !at::isFloatingType(w.scalar_type()))
      throw std::invalid_argument("linear_cross_entropy: h and w must be floating point");
    if (chunk <= 0) throw std::invalid_argument("linear_cross_entropy: chunk must be positive");
    // Gradients in forward when they will be needed and the matmuls do not
    // run in float16 (see the top of this file).
    const bool precompute = at::GradMode::is_enabled() && (h.requires_grad() || w.requires_grad()) &&
                            compute_dtype(h, w) != at::kHalf;
    r.t = clm::wrap(LinearCrossEntropy::apply(h, w, t, ignore_index, chunk, precompute));
  });
  return r;
}

}  // extern "C"
