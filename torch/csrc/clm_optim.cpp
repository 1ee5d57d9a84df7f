// clm_optim.cpp — AdamW in two flavours over parameter groups.
//
//  flavour 0, "adamw_torch": torch.optim.AdamW (single-tensor path), i.e.
//    p ← p·(1 − lr·wd); m ← lerp(m, g, 1−β1); v ← β2·v + (1−β2)·g²
//    p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
//  flavour 1, "adamw_hf": transformers' AdamW as the original trains with:
//    m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²
//    p ← p − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)      (ε before bias correction)
//    p ← p − lr·wd·p                                  (decay after the update)
// Each operation mirrors the Python code's op sequence so that results agree
// to the last bit on the same libtorch.
//
// Three ways to run a step (clm_adamw_set_foreach):
//  loop     one parameter at a time, 6–8 in-place ops each (the reference);
//  foreach  the same op sequence over lists of tensors with libtorch's
//           _foreach_* ops, per (optimizer group, device, dtype) bucket; the
//           per-parameter scalars that depend on the step count (bias
//           corrections, step sizes) are passed as lists, so parameters with
//           different step counts share a bucket. On the CPU the _foreach_
//           ops run the per-tensor kernels, so the result is bitwise the loop's;
//           on CUDA they launch a few multi-tensor kernels per bucket;
//  fused    at::_fused_adamw_ (flavour 0 only): one kernel per bucket, which
//           evaluates the update in its own order (results within 1e-6 of the
//           loop in float32, not bitwise). On CUDA always; on the CPU since
//           libtorch 2.4.
// auto (the default) takes foreach for buckets on CUDA and the loop elsewhere.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "clm_internal.h"

// _fused_adamw_ runs on CPU tensors since libtorch 2.4.
#define CLM_HAS_FUSED_ADAMW_CPU CLM_TORCH_AT_LEAST(2, 4)

namespace {

using clm::dup;
using clm::guard;

enum StepMode { kLoop = 0, kForeach = 1, kAuto = 2, kFused = 3 };

struct ParamState {
  at::Tensor exp_avg, exp_avg_sq;  // undefined before the first step
  int64_t steps = 0;
};

struct Group {
  std::vector<at::Tensor> params;
  std::vector<ParamState> state;
  double lr = 0, weight_decay = 0;
};

}  // namespace

struct clm_adamw_s {
  int flavour;
  double beta1, beta2, eps;
  std::vector<Group> groups;
  int mode = kAuto;

  ParamState &at_state(int g, int i) {
    if (g < 0 || g >= static_cast<int>(groups.size())) throw std::out_of_range("adamw: no group " + std::to_string(g));
    auto &grp = groups[g];
    if (i < 0 || i >= static_cast<int>(grp.params.size()))
      throw std::out_of_range("adamw: group " + std::to_string(g) + " has no parameter " + std::to_string(i));
    return grp.state[i];
  }

  // The bias corrections of step count t, in double as the loop computes them.
  struct Corrections {
    double bc1, bc2;
  };
  Corrections corrections(int64_t steps) const {
    const double t = static_cast<double>(steps);
    return {1 - std::pow(beta1, t), 1 - std::pow(beta2, t)};
  }

  // Updates parameter i of grp with the loop's op sequence.
  void step_one(Group &grp, size_t i) {
    const double lr = grp.lr, wd = grp.weight_decay;
    auto &p = grp.params[i];
    const auto &g = p.grad();
    auto &s = grp.state[i];
    if (!s.exp_avg.defined()) {
      s.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
      s.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
    }
    s.steps++;
    const auto c = corrections(s.steps);
    const double bc1 = c.bc1, bc2 = c.bc2;
    if (flavour == 0) {
      if (wd != 0) p.mul_(1 - lr * wd);
      s.exp_avg.lerp_(g, 1 - beta1);
      s.exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2);
      const double step_size = lr / bc1;
      const double bc2_sqrt = std::pow(bc2, 0.5);
      auto denom = (s.exp_avg_sq.sqrt() / bc2_sqrt).add_(eps);
      p.addcdiv_(s.exp_avg, denom, -step_size);
    } else {
      s.exp_avg.mul_(beta1).add_(g, 1.0 - beta1);
      s.exp_avg_sq.mul_(beta2).addcmul_(g, g, 1.0 - beta2);
      auto denom = s.exp_avg_sq.sqrt().add_(eps);
      const double step_size = lr * std::sqrt(bc2) / bc1;
      p.addcdiv_(s.exp_avg, denom, -step_size);
      if (wd > 0.0) p.add_(p, -lr * wd);
    }
  }

  // Parameters of one group that share a device and dtype and have a
  // gradient this step.
  struct Bucket {
    std::vector<size_t> idx;
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };

  static std::vector<Bucket> buckets(Group &grp) {
    std::vector<Bucket> out;
    for (size_t i = 0; i < grp.params.size(); i++) {
      const auto &p = grp.params[i];
      const auto &g = p.grad();
      if (!g.defined()) continue;
      Bucket *b = nullptr;
      for (auto &x : out)
        if (x.params[0].device() == p.device() && x.params[0].scalar_type() == p.scalar_type()) {
          b = &x;
          break;
        }
      if (b == nullptr) {
        out.emplace_back();
        b = &out.back();
      }
      b->idx.push_back(i);
      b->params.push_back(p);
      b->grads.push_back(g);
    }
    return out;
  }

  // Lazily creates the state of the bucket's parameters, advances their step
  // counts and collects the state tensors.
  static void prepare(Group &grp, Bucket &b) {
    for (size_t k = 0; k < b.idx.size(); k++) {
      auto &s = grp.state[b.idx[k]];
      const auto &p = b.params[k];
      if (!s.exp_avg.defined()) {
        s.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
        s.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
      }
      s.steps++;
      b.exp_avgs.push_back(s.exp_avg);
      b.exp_avg_sqs.push_back(s.exp_avg_sq);
    }
  }

  // The loop's op sequence over a bucket with _foreach_ ops.
  void step_foreach(Group &grp, Bucket &b) {
    const double lr = grp.lr, wd = grp.weight_decay;
    prepare(grp, b);
    const size_t n = b.idx.size();
    std::vector<at::Scalar> neg_step(n), bc2_sqrt(n);
    for (size_t k = 0; k < n; k++) {
      const auto c = corrections(grp.state[b.idx[k]].steps);
      if (flavour == 0) {
        neg_step[k] = -(lr / c.bc1);
        bc2_sqrt[k] = std::pow(c.bc2, 0.5);
      } else {
        neg_step[k] = -(lr * std::sqrt(c.bc2) / c.bc1);
      }
    }
    at::TensorList params(b.params), grads(b.grads), m(b.exp_avgs), v(b.exp_avg_sqs);
    if (flavour == 0) {
      if (wd != 0) at::_foreach_mul_(params, at::Scalar(1 - lr * wd));
      at::_foreach_lerp_(m, grads, at::Scalar(1 - beta1));
      at::_foreach_mul_(v, at::Scalar(beta2));
      at::_foreach_addcmul_(v, grads, grads, at::Scalar(1 - beta2));
      auto denom = at::_foreach_sqrt(v);
      at::_foreach_div_(denom, at::ArrayRef<at::Scalar>(bc2_sqrt));
      at::_foreach_add_(denom, at::Scalar(eps));
      at::_foreach_addcdiv_(params, m, denom, at::ArrayRef<at::Scalar>(neg_step));
    } else {
      at::_foreach_mul_(m, at::Scalar(beta1));
      at::_foreach_add_(m, grads, at::Scalar(1.0 - beta1));
      at::_foreach_mul_(v, at::Scalar(beta2));
      at::_foreach_addcmul_(v, grads, grads, at::Scalar(1.0 - beta2));
      auto denom = at::_foreach_sqrt(v);
      at::_foreach_add_(denom, at::Scalar(eps));
      at::_foreach_addcdiv_(params, m, denom, at::ArrayRef<at::Scalar>(neg_step));
      if (wd > 0.0) at::_foreach_add_(params, params, at::Scalar(-lr * wd));
    }
  }

  // at::_fused_adamw_ over a bucket (flavour 0).
  void step_fused(Group &grp, Bucket &b) {
#if !CLM_HAS_FUSED_ADAMW_CPU
    if (!b.params[0].is_cuda())
      throw std::invalid_argument("adamw: the fused step needs CUDA parameters with libtorch " TORCH_VERSION
                                  " (CPU support arrived in 2.4)");
#endif
    prepare(grp, b);
    // The kernel reads each step count from a float32 tensor on the
    // parameters' device: one host-to-device copy per bucket.
    std::vector<float> steps;
    for (auto i : b.idx) steps.push_back(static_cast<float>(grp.state[i].steps));
    auto st = at::tensor(steps, at::TensorOptions().dtype(at::kFloat)).to(b.params[0].device());
    auto state_steps = st.unbind(0);
    at::_fused_adamw_(b.params, b.grads, b.exp_avgs, b.exp_avg_sqs, {}, state_steps, grp.lr, beta1, beta2,
                      grp.weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  }

  void step() {
    at::NoGradGuard ng;
    for (auto &grp : groups) {
      if (mode == kLoop) {
        for (size_t i = 0; i < grp.params.size(); i++)
          if (grp.params[i].grad().defined()) step_one(grp, i);
        continue;
      }
      for (auto &b : buckets(grp)) {
        if (mode == kFused)
          step_fused(grp, b);
        else if (mode == kForeach || b.params[0].is_cuda())
          step_foreach(grp, b);
        else
          for (auto i : b.idx) step_one(grp, i);
      }
    }
  }
};

extern "C" {

clm_adamw clm_adamw_new(int flavour, double beta1, double beta2, double eps) {
  return new clm_adamw_s{flavour, beta1, beta2, eps, {}, kAuto};
}

void clm_adamw_free(clm_adamw o) { delete o; }

clm_iresult clm_adamw_add_group(clm_adamw o, const clm_tensor *params, int n, double lr, double weight_decay) {
  clm_iresult r{0, nullptr};
  r.err = guard([&] {
    Group g;
    g.lr = lr;
    g.weight_decay = weight_decay;
    for (int i = 0; i < n; i++) {
      if (params[i] == nullptr) throw std::invalid_argument("adamw: nil parameter handle");
      g.params.push_back(params[i]->t);
    }
    g.state.resize(g.params.size());
    o->groups.push_back(std::move(g));
    r.v = static_cast<int64_t>(o->groups.size()) - 1;
  });
  return r;
}

char *clm_adamw_set_lr(clm_adamw o, int group, double lr) {
  return guard([&] {
    if (group < 0 || group >= static_cast<int>(o->groups.size()))
      throw std::out_of_range("adamw: no group " + std::to_string(group));
    o->groups[group].lr = lr;
  });
}

char *clm_adamw_set_foreach(clm_adamw o, int mode) {
  return guard([&] {
    switch (mode) {
      case kLoop:
      case kForeach:
      case kAuto:
        break;
      case kFused:
        if (o->flavour != 0)
          throw std::invalid_argument(
              "adamw: the fused step implements torch.optim.AdamW (adamw_torch) only, not adamw_hf");
        break;
      default:
        throw std::invalid_argument("adamw: unknown step mode " + std::to_string(mode) +
                                    " (0 loop, 1 foreach, 2 auto, 3 fused)");
    }
    o->mode = mode;
  });
}

int clm_adamw_foreach(clm_adamw o) { return o->mode; }

int clm_adamw_has_fused(int device) {
  if (device < 0) return CLM_HAS_FUSED_ADAMW_CPU ? 1 : 0;
  return 1;
}

char *clm_adamw_step(clm_adamw o) {
  return guard([&] { o->step(); });
}

clm_tresult clm_adamw_state(clm_adamw o, int g, int i, int which) {
  clm_tresult r{nullptr, nullptr};
  r.err = guard([&] {
    auto &s = o->at_state(g, i);
    const auto &t = which == 0 ? s.exp_avg : s.exp_avg_sq;
    if (t.defined()) r.t = clm::wrap(t);
  });
  return r;
}

clm_iresult clm_adamw_steps(clm_adamw o, int g, int i) {
  clm_iresult r{0, nullptr};
  r.err = guard([&] { r.v = o->at_state(g, i).steps; });
  return r;
}

char *clm_adamw_set_state(clm_adamw o, int g, int i, clm_tensor exp_avg, clm_tensor exp_avg_sq, int64_t steps) {
  return guard([&] {
    auto &s = o->at_state(g, i);
    const auto &p = o->groups[g].params[i];
    if (exp_avg == nullptr || exp_avg_sq == nullptr) throw std::invalid_argument("adamw: nil state tensor");
    if (!exp_avg->t.sizes().equals(p.sizes()) || !exp_avg_sq->t.sizes().equals(p.sizes()))
      throw std::invalid_argument("adamw: state shape does not match parameter " + std::to_string(i) +
                                  " of group " + std::to_string(g));
    at::NoGradGuard ng;
    s.exp_avg = exp_avg->t.detach().to(p.device(), p.scalar_type()).clone();
    s.exp_avg_sq = exp_avg_sq->t.detach().to(p.device(), p.scalar_type()).clone();
    s.steps = steps;
  });
}

}  // extern "C"
