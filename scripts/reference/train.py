"""Reference training loop: the original's HF Trainer step, written out.

What one optimizer step does (HF Trainer as the original configures it, fp32):
  1. for each of `accum` micro-batches: loss_j = model(batch_j).loss;
     backward(loss_j / accum)                       (gradients accumulate)
  2. global grad-norm clip over every parameter that has a gradient, by
     torch.nn.utils.clip_grad_norm_ (as HF Trainer calls it): total = norm of
     the per-tensor 2-norms, g_i *= min(1, max_norm / (total + 1e-6)); with
     max_norm 0 nothing is clipped (HF Trainer skips the call) but the norm
     (torch.nn.utils.get_total_norm) is still logged
  3. optimizer step, then the scheduler step: the scheduler is
     transformers.get_scheduler(schedule, optimizer, warmup, total, kwargs),
     as HF Trainer.create_scheduler builds it; step s = 0, 1, ... runs with
     lr = base_lr * lambda(s) (so the very first step has lr 0 under warmup)
  4. zero_grad(set_to_none=True): a parameter that the next forward does not
     use keeps grad None and is skipped by the optimizer (no decay either).
The logged loss of a step is the mean of the micro-batch losses (each a mean
over its own non-ignored tokens), i.e. sum_j loss_j / accum, as HF Trainer's
tr_loss; the logged grad_norm is `total` before clipping.

Param groups (the original's MyTrainer.create_optimizer): weight decay on
every trainable parameter except those of LayerNorm/RMSNorm modules (incl.
q_norm/k_norm and the layer-0 LayerNorm of norm_type none), names containing
"bias" and names containing "gain". Frozen parameters are left out.

Optimizers:
  adamw_hf     transformers' old AdamW (correct_bias=True):
                 m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
                 denom = sqrt(v) + eps
                 step_size = lr * sqrt(1 - b2^t) / (1 - b1^t)   (Python float)
                 p -= step_size * m / denom
                 p -= lr * wd * p                                (after the update)
  adamw_torch  torch.optim.AdamW(foreach=False): p *= 1 - lr*wd first, then
               m.lerp_(g, 1-b1); denom = sqrt(v)/sqrt(1-b2^t) + eps;
               p -= lr/(1-b1^t) * m / denom.

Schedules: Hugging Face's own, by name (SchedulerType), none written here:
  polynomial            get_polynomial_decay_schedule_with_warmup(lr_end, power)
  linear                get_linear_schedule_with_warmup
  cosine                get_cosine_schedule_with_warmup (num_cycles 0.5)
  constant              get_constant_schedule (no warmup)
  constant_with_warmup  get_constant_schedule_with_warmup
warmup = TrainingArguments.get_warmup_steps(total) for warmup_steps =
warmup_ratio in [0, 1), i.e. ceil(warmup_ratio * total).

Usage:
  python train.py --config cfg.json --weights w.safetensors \
      --batches batches.safetensors --steps N --accum K [--lr 1e-3] \
      [--optimizer adamw_hf|adamw_torch] [--schedule polynomial] \
      [--total-steps T] [--warmup-ratio 0.05] [--lr-end 1e-7] [--power 1] \
      [--weight-decay 0.1] [--beta1 0.9] [--beta2 0.999] [--eps 1e-8] \
      [--max-grad-norm 1.0] [--pad-id N] [--dtype float32|float64] \
      --out traj.json [--out-weights final.safetensors]
batches.safetensors: `input_ids` int64 [steps*accum, B, T] (micro-batch j of
step s is row s*accum + j), optional `labels` of the same shape (default: the
input ids).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402


# ---------------------------------------------------------------------------
# Param groups
# ---------------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float):
    """[decay group, no-decay group] by the original's rules, each in
    named_parameters order; prints counts to stderr (nanoGPT style)."""
    in_norm = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.LayerNorm, M.RMSNorm)):
            for pname, _ in mod.named_parameters(recurse=False):
                in_norm.add(f"{mname}.{pname}" if mname else pname)
    decay, no_decay, dn, nn_ = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in in_norm or "bias" in name or "gain" in name:
            no_decay.append(p)
            nn_.append(name)
        else:
            decay.append(p)
            dn.append(name)
    for label, ps in (("decay", decay), ("no decay", no_decay)):
        print(f"param group {label}: {len(ps)} tensors, {sum(p.numel() for p in ps)} parameters", file=sys.stderr)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": dn},
        {"params": no_decay, "weight_decay": 0.0, "names": nn_},
    ]


# ---------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------


class AdamWHF(torch.optim.Optimizer):
    """transformers' old AdamW (removed from transformers 5), from its update rule."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = st["step"]
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                denom = v.sqrt().add_(eps)
                step_size = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
                p.addcdiv_(m, denom, value=-step_size)
                if wd > 0.0:
                    p.add_(p, alpha=-lr * wd)


class Hybrid(torch.optim.Optimizer):
    """Several optimizers stepped as one, sharing their param_groups dicts
    (so that one LR scheduler drives them all): Muon's matrices and AdamW's
    rest."""

    def __init__(self, parts, lr):
        self.parts = parts
        super().__init__([p for part in parts for g in part.param_groups for p in g["params"]], {"lr": lr})
        self.param_groups = [g for part in parts for g in part.param_groups]

    def step(self, closure=None):
        for part in self.parts:
            part.step()


class InOutMuon(torch.optim.Muon):
    """torch.optim.Muon for matrices stored [in, out] (GPT-2's Conv1D, as
    model.py and clm store them): it steps a copy of each non-square one in
    nn.Linear's [out, in] layout, which Muon's shape adjustment (fan-out
    over fan-in) assumes, and writes the update back. (A square matrix
    reads the same shape either way and is stepped as it is.)"""

    def __init__(self, groups, **kw):
        self.pairs = []  # (the model's matrix [in, out], Muon's copy [out, in])
        stepped = []
        for g in groups:
            ts = []
            for p in g["params"]:
                if p.shape[0] != p.shape[1]:
                    q = p.detach().t().contiguous()
                    self.pairs.append((p, q))
                    p = q
                ts.append(p)
            stepped.append({**g, "params": ts})
        super().__init__(stepped, **kw)

    @torch.no_grad()
    def step(self, closure=None):
        for p, q in self.pairs:
            q.grad = None if p.grad is None else p.grad.t().contiguous()
        super().step(closure)
        for p, q in self.pairs:
            p.copy_(q.t())
            q.grad = None


def is_muon_matrix(name, p):
    """Muon's parameters: 2-D hidden matrices, not the embeddings."""
    return p.dim() == 2 and not name.startswith(("transformer.wte.", "transformer.wpe."))


def make_muon(groups, lr, betas, eps, o):
    mats, rest = [], []
    for g in groups:
        m = [p for n, p in zip(g["names"], g["params"]) if is_muon_matrix(n, p)]
        r = [p for n, p in zip(g["names"], g["params"]) if not is_muon_matrix(n, p)]
        if m:
            mats.append({"params": m, "weight_decay": g["weight_decay"]})
        if r:
            rest.append({"params": r, "weight_decay": g["weight_decay"]})
    muon = InOutMuon(mats, lr=lr, momentum=o["momentum"], nesterov=o["nesterov"],
                     ns_steps=o["ns_steps"], adjust_lr_fn=o["adjust_lr"])
    adamw = torch.optim.AdamW(rest, lr=lr, betas=betas, eps=eps, foreach=False, fused=False)
    return Hybrid([muon, adamw], lr)


def make_optimizer(name, groups, lr, betas, eps, o=None):
    """The optimizer of train.optimizer; o holds [train.optim] (SOAP, Muon)."""
    plain = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    if name == "adamw_hf":
        return AdamWHF(plain, lr=lr, betas=betas, eps=eps)
    if name == "adamw_torch":
        return torch.optim.AdamW(plain, lr=lr, betas=betas, eps=eps, foreach=False, fused=False)
    if name == "soap":
        from pytorch_optimizer import SOAP
        sb = o["shampoo_beta"]
        return SOAP(plain, lr=lr, betas=betas, eps=eps, shampoo_beta=None if sb < 0 else sb,
                    precondition_frequency=o["precondition_frequency"],
                    max_precondition_dim=o["max_precondition_dim"], precondition_1d=o["precondition_1d"],
                    normalize_gradient=o["normalize_gradient"])
    if name == "muon":
        return make_muon(groups, lr, betas, eps, o)
    raise ValueError(f"unknown optimizer {name!r}")


# ---------------------------------------------------------------------------
# Schedules and clipping: Hugging Face's and torch's own functions
# ---------------------------------------------------------------------------

SCHEDULES = ("polynomial", "linear", "cosine", "constant", "constant_with_warmup")


def warmup_steps(total: int, ratio: float) -> int:
    """HF TrainingArguments.get_warmup_steps with warmup_steps = ratio (a
    float in [0, 1) is a ratio of the total: ceil(ratio * total)). Called
    unbound: building TrainingArguments needs accelerate, which the
    reference does not install."""
    from types import SimpleNamespace

    from transformers import TrainingArguments

    if not 0 <= ratio < 1:
        raise ValueError(f"warmup ratio {ratio} is outside [0, 1)")
    return TrainingArguments.get_warmup_steps(SimpleNamespace(warmup_steps=ratio), total)


def scheduler_kwargs(kind: str, lr_end: float = 1e-7, power: float = 1.0) -> dict:
    """HF get_scheduler's scheduler_specific_kwargs (TrainingArguments'
    lr_scheduler_kwargs) for clm's [train] keys: only polynomial takes any
    (lr_end, power); cosine keeps HF's num_cycles 0.5."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}")
    return {"lr_end": lr_end, "power": power} if kind == "polynomial" else {}


def make_scheduler(opt, kind: str, warmup: int, total: int, lr_end: float = 1e-7, power: float = 1.0):
    """transformers.get_scheduler as HF Trainer.create_scheduler calls it; the
    learning rate of step s is base_lr * lambda(s) (torch LambdaLR)."""
    from transformers import get_scheduler

    return get_scheduler(kind, optimizer=opt, num_warmup_steps=warmup, num_training_steps=total,
                         scheduler_specific_kwargs=scheduler_kwargs(kind, lr_end, power))


def clip_grad_norm(params, max_norm: float) -> float:
    """The global gradient norm before clipping, as a float; clips with
    torch.nn.utils.clip_grad_norm_ when max_norm > 0 (HF Trainer's rule)."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm).item()
    return torch.nn.utils.get_total_norm([p.grad for p in params]).item()


# ---------------------------------------------------------------------------
# Loop
# ---------------------------------------------------------------------------


def train(a) -> dict:
    torch.use_deterministic_algorithms(True)
    dtype = M.DTYPES[a.dtype]
    cfg = M.Config.from_json(a.config)
    model = M.build(cfg)
    model.load_weights(M.load_tensors(a.weights))
    model.to(dtype)
    model.train()  # dropout is active only if the config sets it
    batches = M.load_tensors(a.batches)
    ids = batches["input_ids"].long()
    labels = batches["labels"].long() if "labels" in batches else ids
    need = a.steps * a.accum
    if ids.shape[0] < need:
        raise SystemExit(f"batches hold {ids.shape[0]} micro-batches, need steps*accum = {need}")

    groups = param_groups(model, a.weight_decay)
    opt = make_optimizer(a.optimizer, groups, a.lr, (a.beta1, a.beta2), a.eps, json.loads(a.optim))
    total = a.total_steps or a.steps
    warm = warmup_steps(total, a.warmup_ratio)
    sched = make_scheduler(opt, a.schedule, warm, total, a.lr_end, a.power)
    params = list(model.parameters())

    traj = []
    model.zero_grad(set_to_none=True)
    for step in range(a.steps):
        lr = opt.param_groups[0]["lr"]
        loss_sum = 0.0
        for j in range(a.accum):
            k = step * a.accum + j
            out = model(ids[k], labels=labels[k], pad_id=a.pad_id)
            (out["loss"] / a.accum).backward()
            loss_sum += out["loss"].item()
        gnorm = clip_grad_norm(params, a.max_grad_norm)
        opt.step()
        sched.step()
        model.zero_grad(set_to_none=True)
        rec = {"step": step + 1, "loss": loss_sum / a.accum, "lr": lr, "grad_norm": gnorm}
        traj.append(rec)
        print(json.dumps(rec), flush=True)

    result = {
        "optimizer": a.optimizer, "schedule": a.schedule, "warmup_steps": warm, "total_steps": total,
        "accum": a.accum, "dtype": a.dtype,
        "groups": [{"weight_decay": g["weight_decay"], "names": g["names"]} for g in groups],
        "steps": traj,
    }
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1)
    if a.out_weights:
        M.save_tensors(model.weights(), a.out_weights, metadata={"config": json.dumps(cfg.to_dict())})
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--batches", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--total-steps", type=int, default=0, help="schedule length (default: --steps)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--optimizer", choices=("adamw_hf", "adamw_torch", "soap", "muon"), default="adamw_hf")
    ap.add_argument("--optim", default="{}", help="[train.optim] as JSON (SOAP, Muon)")
    ap.add_argument("--schedule", choices=SCHEDULES, default="polynomial")
    ap.add_argument("--warmup-ratio", type=float, default=0.05)
    ap.add_argument("--lr-end", type=float, default=1e-7)
    ap.add_argument("--power", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping (norm still logged)")
    ap.add_argument("--pad-id", type=int, default=None)
    ap.add_argument("--dtype", choices=sorted(M.DTYPES), default="float32")
    ap.add_argument("--out", required=True, help="trajectory JSON")
    ap.add_argument("--out-weights", help="final weights (params and W_init buffers)")
    a = ap.parse_args(argv)
    if a.schedule == "polynomial" and not a.lr > a.lr_end:
        ap.error(f"lr_end ({a.lr_end}) must be smaller than lr ({a.lr})")
    train(a)


if __name__ == "__main__":
    main()
