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
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "clm_torch.h"

struct clm_tensor_s {
  at::Tensor t;
};

namespace {

struct ParamState {
  at::Tensor exp_avg, exp_avg_sq;  // undefined before the first step
  int64_t steps = 0;
};

struct Group {
  std::vector<at::Tensor> params;
  std::vector<ParamState> state;
  double lr = 0, weight_decay = 0;
};

char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

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

}  // namespace

struct clm_adamw_s {
  int flavour;
  double beta1, beta2, eps;
  std::vector<Group> groups;

  ParamState &at_state(int g, int i) {
    if (g < 0 || g >= static_cast<int>(groups.size())) throw std::out_of_range("adamw: no group " + std::to_string(g));
    auto &grp = groups[g];
    if (i < 0 || i >= static_cast<int>(grp.params.size()))
      throw std::out_of_range("adamw: group " + std::to_string(g) + " has no parameter " + std::to_string(i));
    return grp.state[i];
  }

  void step() {
    at::NoGradGuard ng;
    for (auto &grp : groups) {
      const double lr = grp.lr, wd = grp.weight_decay;
      for (size_t i = 0; i < grp.params.size(); i++) {
        auto &p = grp.params[i];
        const auto &g = p.grad();
        if (!g.defined()) continue;
        auto &s = grp.state[i];
        if (!s.exp_avg.defined()) {
          s.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
          s.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
        }
        s.steps++;
        const double t = static_cast<double>(s.steps);
        const double bc1 = 1 - std::pow(beta1, t);
        const double bc2 = 1 - std::pow(beta2, t);
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
    }
  }
};

extern "C" {

clm_adamw clm_adamw_new(int flavour, double beta1, double beta2, double eps) {
  return new clm_adamw_s{flavour, beta1, beta2, eps, {}};
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

char *clm_adamw_step(clm_adamw o) {
  return guard([&] { o->step(); });
}

clm_tresult clm_adamw_state(clm_adamw o, int g, int i, int which) {
  clm_tresult r{nullptr, nullptr};
  r.err = guard([&] {
    auto &s = o->at_state(g, i);
    const auto &t = which == 0 ? s.exp_avg : s.exp_avg_sq;
    if (t.defined()) r.t = new clm_tensor_s{t};
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
