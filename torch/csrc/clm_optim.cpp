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
//  graph    the foreach op sequence with every value that changes from step
//           to step (the learning rate's decay factor, the step size, the
//           bias correction) in small tensors on the parameters' device:
//           prepare() advances the step counts on the host and writes those
//           tensors; apply() only launches kernels that read them. A CUDA
//           graph captures apply() once and replays it every step. It
//           updates the parameters that had a gradient at its first step
//           (then every step; a gradient appearing or missing later is an
//           error), with one step count per bucket. Scalars that were kernel
//           arguments are tensor operands, combined in the order (and, for
//           multiply-adds, the kernels) that the device's addcdiv_ and add_
//           use: bitwise the loop on the CPU (tested); on CUDA tested
//           against foreach by device-check.sh.
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

enum StepMode { kLoop = 0, kForeach = 1, kAuto = 2, kFused = 3, kGraph = 4 };

struct ParamState {
  at::Tensor exp_avg, exp_avg_sq;  // undefined before the first step
  int64_t steps = 0;
};

// A bucket of the graph mode: parameters of one group on one device and
// dtype, and their per-step scalars on that device, in the kernels'
// arithmetic type (float for float, bfloat16 and half; double for double):
// [decay, −step size, √(bias correction 2)]; decay is 1 − lr·wd (adamw_torch)
// or −lr·wd (adamw_hf).
struct GraphBucket {
  std::vector<size_t> idx;
  at::Tensor scalars;
};

struct Group {
  std::vector<at::Tensor> params;
  std::vector<ParamState> state;
  double lr = 0, weight_decay = 0;
  // The graph mode's buckets and which parameters they hold, fixed by its
  // first prepare.
  std::vector<GraphBucket> graph;
  std::vector<char> in_graph;
  bool graph_built = false;
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

  // The per-parameter scalars of the multi-tensor sequences at step count
  // steps with learning rate lr: −step size, and √(bias correction 2)
  // (adamw_torch divides the denominator by it; 1 for adamw_hf, which folds
  // it into the step size).
  struct StepScalars {
    double neg_step, bc2_sqrt;
  };
  StepScalars step_scalars(double lr, int64_t steps) const {
    const auto c = corrections(steps);
    if (flavour == 0) return {-(lr / c.bc1), std::pow(c.bc2, 0.5)};
    return {-(lr * std::sqrt(c.bc2) / c.bc1), 1};
  }

  // init_state creates a parameter's moments at its first step.
  static void init_state(ParamState &s, const at::Tensor &p) {
    if (s.exp_avg.defined()) return;
    s.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
    s.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
  }

  // Updates parameter i of grp with the loop's op sequence.
  void step_one(Group &grp, size_t i) {
    const double lr = grp.lr, wd = grp.weight_decay;
    auto &p = grp.params[i];
    const auto &g = p.grad();
    auto &s = grp.state[i];
    init_state(s, p);
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
  // gradient this step (with all, every parameter: grads then holds
  // undefined tensors for those without).
  struct Bucket {
    std::vector<size_t> idx;
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };

  static std::vector<Bucket> buckets(Group &grp, bool all = false) {
    std::vector<Bucket> out;
    for (size_t i = 0; i < grp.params.size(); i++) {
      const auto &p = grp.params[i];
      const auto &g = p.grad();
      if (!g.defined() && !all) continue;
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
      init_state(s, b.params[k]);
      s.steps++;
      b.exp_avgs.push_back(s.exp_avg);
      b.exp_avg_sqs.push_back(s.exp_avg_sq);
    }
  }

  // update_moments is the moments' part of the loop's op sequence over
  // lists: m ← lerp(m, g, 1 − β1) (adamw_torch) or β1·m + (1 − β1)·g
  // (adamw_hf); v ← β2·v + (1 − β2)·g².
  void update_moments(at::TensorList m, at::TensorList v, at::TensorList grads) const {
    if (flavour == 0) {
      at::_foreach_lerp_(m, grads, at::Scalar(1 - beta1));
    } else {
      at::_foreach_mul_(m, at::Scalar(beta1));
      at::_foreach_add_(m, grads, at::Scalar(1.0 - beta1));
    }
    at::_foreach_mul_(v, at::Scalar(beta2));
    at::_foreach_addcmul_(v, grads, grads, at::Scalar(1.0 - beta2));
  }

  // The loop's op sequence over a bucket with _foreach_ ops.
  void step_foreach(Group &grp, Bucket &b) {
    const double lr = grp.lr, wd = grp.weight_decay;
    prepare(grp, b);
    const size_t n = b.idx.size();
    std::vector<at::Scalar> neg_step(n), bc2_sqrt(n);
    for (size_t k = 0; k < n; k++) {
      const auto sc = step_scalars(lr, grp.state[b.idx[k]].steps);
      neg_step[k] = sc.neg_step;
      bc2_sqrt[k] = sc.bc2_sqrt;
    }
    at::TensorList params(b.params), grads(b.grads), m(b.exp_avgs), v(b.exp_avg_sqs);
    if (flavour == 0) {
      if (wd != 0) at::_foreach_mul_(params, at::Scalar(1 - lr * wd));
      update_moments(m, v, grads);
      auto denom = at::_foreach_sqrt(v);
      at::_foreach_div_(denom, at::ArrayRef<at::Scalar>(bc2_sqrt));
      at::_foreach_add_(denom, at::Scalar(eps));
      at::_foreach_addcdiv_(params, m, denom, at::ArrayRef<at::Scalar>(neg_step));
    } else {
      update_moments(m, v, grads);
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

  // graph_buckets fixes the parameters of grp that the graph mode updates,
  // the ones with a gradient now (all of them if none has one yet: a
  // prepare before any backward), in buckets by device and dtype, and
  // creates their state and per-step scalar tensors (once).
  static void graph_buckets(Group &grp) {
    if (grp.graph_built) return;
    bool any = false;
    for (const auto &p : grp.params) any = any || p.grad().defined();
    grp.in_graph.assign(grp.params.size(), 0);
    for (auto &b : buckets(grp, /*all=*/!any)) {
      const auto &p = b.params[0];
      const auto t = p.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      grp.graph.push_back({b.idx, at::zeros({3}, at::TensorOptions().dtype(t).device(p.device()))});
      for (size_t k = 0; k < b.idx.size(); k++) {
        grp.in_graph[b.idx[k]] = 1;
        init_state(grp.state[b.idx[k]], b.params[k]);
      }
    }
    grp.graph_built = true;
  }

  // prepare_graph is the graph mode's host half of a step: it advances
  // every step count and writes the step's scalars to the device (one small
  // copy per bucket, ordered before the next apply on the current stream,
  // without waiting for the device).
  void prepare_graph() {
    at::NoGradGuard ng;
    for (size_t g = 0; g < groups.size(); g++) {
      auto &grp = groups[g];
      graph_buckets(grp);
      for (auto &b : grp.graph) {
        const int64_t steps = grp.state[b.idx[0]].steps;
        for (auto i : b.idx)
          if (grp.state[i].steps != steps)
            throw std::invalid_argument("adamw: the graph step needs one step count per bucket, but group " +
                                        std::to_string(g) + " has parameters at steps " + std::to_string(steps) +
                                        " and " + std::to_string(grp.state[i].steps));
        for (auto i : b.idx) grp.state[i].steps++;
        const double lr = grp.lr, wd = grp.weight_decay;
        const auto sc = step_scalars(lr, steps + 1);
        double v[3] = {flavour == 0 ? 1 - lr * wd : -lr * wd, sc.neg_step, sc.bc2_sqrt};
        // double → the kernels' type rounds as a Scalar argument would. To
        // CUDA through pinned memory, so that the copy does not wait for
        // the device (the caching host allocator keeps the block until the
        // copy has run).
        auto host = at::tensor(at::ArrayRef<double>(v, 3), at::kDouble).to(b.scalars.scalar_type());
        const bool async = b.scalars.is_cuda();
        if (async) host = host.pin_memory();
        b.scalars.copy_(host, async);
      }
    }
  }

  // apply_graph is the graph mode's device half: the update of every
  // parameter from the scalars prepare_graph wrote. It reads nothing back
  // and creates nothing but temporaries, so a CUDA graph can capture it.
  void apply_graph() {
    for (const auto &grp : groups)
      if (!grp.graph_built) throw std::logic_error("adamw: the graph step's apply before its first prepare");
    check_grads();
    apply_buckets();
  }

  // apply_buckets is apply_graph after its checks.
  void apply_buckets() {
    at::NoGradGuard ng;
    for (auto &grp : groups) {
      for (auto &b : grp.graph) {
        std::vector<at::Tensor> params, grads, m, v;
        for (auto i : b.idx) {
          const auto &p = grp.params[i];
          params.push_back(p);
          grads.push_back(p.grad());
          m.push_back(grp.state[i].exp_avg);
          v.push_back(grp.state[i].exp_avg_sq);
        }
        apply_bucket(grp.weight_decay, b.scalars, params, grads, m, v);
      }
    }
  }

  // apply_bucket is the foreach op sequence with the bucket's scalars as
  // 0-d tensors.
  void apply_bucket(double wd, const at::Tensor &scalars, at::TensorList params, at::TensorList grads,
                    at::TensorList m, at::TensorList v) {
    const auto decay = scalars[0], neg_step = scalars[1], bc2_sqrt = scalars[2];
    if (flavour == 0) {
      if (wd != 0) at::_foreach_mul_(params, decay);
      update_moments(m, v, grads);
      auto denom = at::_foreach_sqrt(v);
      at::_foreach_div_(denom, bc2_sqrt);
      at::_foreach_add_(denom, at::Scalar(eps));
      add_step(params, m, denom, neg_step);
    } else {
      update_moments(m, v, grads);
      auto denom = at::_foreach_sqrt(v);
      at::_foreach_add_(denom, at::Scalar(eps));
      add_step(params, m, denom, neg_step);
      // add_(p, p, −lr·wd) is p + (−lr·wd)·p, one multiply-add: so is
      // addcmul_(p, p, decay), which add_(p, p·decay) is not.
      if (wd > 0.0) at::_foreach_addcmul_(params, params, same(decay, params.size()));
    }
  }

  // same is n references to one 0-d tensor: a tensor list whose every
  // element broadcasts to its partner.
  static std::vector<at::Tensor> same(const at::Tensor &t, size_t n) { return std::vector<at::Tensor>(n, t); }

  // add_step is addcdiv_(params, m, denom, −step size) with the step size a
  // tensor, rounded as the device's addcdiv kernels round it: on the CPU
  // p + (s·m)/d; on CUDA p + s·(m/d), a multiply-add, as addcmul_(p, m/d, s)
  // computes it.
  static void add_step(at::TensorList params, at::TensorList m, at::TensorList denom, const at::Tensor &neg_step) {
    if (params[0].is_cpu()) {
      auto q = at::_foreach_mul(m, neg_step);
      at::_foreach_div_(q, denom);
      at::_foreach_add_(params, q);
      return;
    }
    at::_foreach_addcmul_(params, at::_foreach_div(m, denom), same(neg_step, params.size()));
  }

  // check_grads throws, before a step changes anything, unless the
  // parameters with a gradient are the ones the graph mode updates (fixed
  // by its first step).
  void check_grads() const {
    for (size_t g = 0; g < groups.size(); g++) {
      const auto &grp = groups[g];
      if (!grp.graph_built) continue;
      for (size_t i = 0; i < grp.params.size(); i++) {
        const bool has = grp.params[i].grad().defined();
        if (has == static_cast<bool>(grp.in_graph[i])) continue;
        const auto which = "parameter " + std::to_string(i) + " of group " + std::to_string(g);
        if (has)
          throw std::invalid_argument("adamw: " + which +
                                      " had no gradient at the graph step's first step but has one now (the graph "
                                      "step updates the parameters that had one then)");
        throw std::invalid_argument("adamw: the graph step updates the parameters that had a gradient at its first "
                                    "step; " + which + " has none now");
      }
    }
  }

  void step() {
    if (mode == kGraph) {
      check_grads();
      prepare_graph();
      apply_buckets();
      return;
    }
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
      case kGraph:
        break;
      case kFused:
        if (o->flavour != 0)
          throw std::invalid_argument(
              "adamw: the fused step implements torch.optim.AdamW (adamw_torch) only, not adamw_hf");
        break;
      default:
        throw std::invalid_argument("adamw: unknown step mode " + std::to_string(mode) +
                                    " (0 loop, 1 foreach, 2 auto, 3 fused, 4 graph)");
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

char *clm_adamw_prepare(clm_adamw o) {
  return guard([&] {
    if (o->mode != kGraph) throw std::logic_error("adamw: prepare is the graph mode's (clm_adamw_set_foreach 4)");
    o->prepare_graph();
  });
}

char *clm_adamw_apply(clm_adamw o) {
  return guard([&] {
    if (o->mode != kGraph) throw std::logic_error("adamw: apply is the graph mode's (clm_adamw_set_foreach 4)");
    o->apply_graph();
  });
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
