"""The PyTorch peers of scripts/bench-peers.sh (`make bench-peers`), and its
helpers. One process per measurement, so that a process's peak RSS is that
configuration's.

  bench_peers.py peer --mode eager|compile --size mid|paper --preset P \
      --threads N --warmup W --steps S
      trains the reference model (scripts/reference/model.py) with SDPA
      attention on random token batches of the size's shapes: accumulation,
      clipping at 1 (foreach), torch.optim.AdamW(foreach=True) with weight
      decay 0.1 on the original's decay group, lr 1e-3, HF's polynomial
      schedule with 5% warmup (the clm defaults). mode compile wraps the
      model in torch.compile (Inductor, default mode). W warm-up steps (for
      compile: the compilation) are timed apart from the S steady steps.
      Prints one `result` line of key=value fields; --profile prints
      torch.profiler's table of the last step (self CPU time per op) first.
  bench_peers.py pair --size mid|paper --preset P --threads N --warmup W --steps S
      eager PyTorch and torch.compile in one process, from the same weights,
      alternating steps (W warm-up steps each, then S measured); prints one
      `pair` line with each one's median step time and compile's speed-up
      over eager (the median's and the per-step pairs' range). Finer than
      comparing separate processes on a noisy machine, for these two peers.
  bench_peers.py measure -- CMD [ARG...]
      runs CMD, then prints `measure peak_rss_kib=N wall_s=X rc=R` (the
      child's own peak resident set size, from wait4's rusage).
  bench_peers.py clm-metrics METRICS.JSONL --warmup W
      clm's steady-state throughput from a run's metrics.jsonl (log_every 1):
      the tokens of the train records after step W over the time between
      the records of steps W and the last; prints one `result` line.
  bench_peers.py trajectory --config cfg.json --weights w.safetensors \
      --batches b.safetensors --steps S --accum K --mode eager|compile --out traj.json
      the peer's training step (the same code as `peer`) from the given
      weights on the given micro-batches; writes each step's loss as
      train.py does, for train/bench_peers_test.go to compare with clm's.
  bench_peers.py check
      the benchmarks' forward (SDPA attention, loss_only, no dropout
      modules) against the plain materialised one (float64, four presets,
      loss and gradients).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

# model.py and train.py, the reference beside this script (imported where
# needed, with torch).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# name -> (n_layer, n_embd, n_head, vocab_size, context, micro_batch, accumulation)
SIZES = {
    "mid": (6, 256, 8, 8192, 128, 16, 2),
    "paper": (18, 768, 12, 52000, 128, 8, 1),
}


def polynomial(warmup, total, lr, lr_end=1e-7, power=1.0):
    """transformers' get_polynomial_decay_schedule_with_warmup as a LambdaLR
    factor (train.py's make_scheduler; written out here because importing
    transformers costs a benchmark process tens of seconds)."""
    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        if step > total:
            return lr_end / lr
        left = 1 - (step - warmup) / (total - warmup)
        return ((lr - lr_end) * left**power + lr_end) / lr
    return factor


class Peer:
    """One peer's model, optimizer and schedule, and its training step."""

    def __init__(self, net, mode, total, accum, compile_mode="default"):
        import torch

        import train as T

        self.net, self.accum = net, accum
        groups = T.param_groups(net, 0.1)
        plain = [{k: v for k, v in g.items() if k != "names"} for g in groups]
        self.opt = torch.optim.AdamW(plain, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=True)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, polynomial(math.ceil(0.05 * total), total, 1e-3))
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.fwd = torch.compile(net, mode=compile_mode) if mode == "compile" else net

    def step(self, batches):
        import torch

        loss = 0.0
        for ids in batches:
            out = self.fwd(ids, labels=ids, loss_only=True)  # the head only where the loss looks
            (out["loss"] / self.accum).backward()
            loss += out["loss"].item()
        grads = [p for p in self.params if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(grads, 1.0, foreach=True).item()
        self.opt.step()
        self.sched.step()
        self.net.zero_grad(set_to_none=True)
        return loss / self.accum


def lean(net):
    """What a user writing the step for speed would drop: dropout of
    probability 0 (every preset's) becomes nn.Identity, and the
    reparameterised layers (Eq. 6) whose resid gain starts non-zero skip
    the test of that gain at every forward (a .item(), which breaks
    torch.compile's graph and made it run the model's forward eagerly)."""
    import torch.nn as nn

    import model as M

    for name, mod in list(net.named_modules()):
        if isinstance(mod, M.Conv1D) and mod.skip and mod.resid_gain.item() != 0:
            mod.zero_gain_shortcut = False
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.Dropout) and child.p == 0:
                setattr(mod, child_name, nn.Identity())
    return net


def profiler(on):
    """torch.profiler over the CPU ops when on, else a context that does
    nothing."""
    import contextlib

    import torch

    if not on:
        return contextlib.nullcontext()
    return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


def build_net(a):
    """The reference model of a.size and a.preset with SDPA attention, and
    the size's random batches."""
    import torch

    import model as M

    torch.set_num_threads(a.threads)
    L, D, H, V, CTX, B, ACCUM = SIZES[a.size]
    cfg = M.preset(a.preset, n_layer=L, n_embd=D, n_head=H, vocab_size=V, context_length=CTX)
    net = lean(M.set_attention(M.build(cfg), "sdpa"))
    net.train()
    g = torch.Generator().manual_seed(7)
    batches = [torch.randint(0, V, (B, CTX), generator=g) for _ in range(ACCUM)]
    return net, batches


def cmd_peer(a):
    import torch

    t_build = time.perf_counter()
    net, batches = build_net(a)
    B, CTX, ACCUM = SIZES[a.size][5], SIZES[a.size][4], SIZES[a.size][6]
    total = a.warmup + a.steps
    peer = Peer(net, a.mode, total, ACCUM, a.compile_mode)
    build_s = time.perf_counter() - t_build

    times = []
    for i in range(total):
        prof = profiler(a.profile and i == total - 1)
        t0 = time.perf_counter()
        with prof:
            loss = peer.step(batches)
        times.append(time.perf_counter() - t0)
        if a.profile and i == total - 1:
            print(f"profile of the last step ({a.mode}):")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=52))
    steady = times[a.warmup:]
    tokens = a.steps * B * ACCUM * CTX
    breaks = 0
    if a.mode == "compile":
        from torch._dynamo.utils import counters
        breaks = sum(counters["graph_break"].values())
    print(f"result peer={a.mode} size={a.size} preset={a.preset} threads={torch.get_num_threads()} "
          f"tokens_per_s={tokens / sum(steady):.1f} step_s={sum(steady) / len(steady):.4f} "
          f"warmup_s={sum(times[:a.warmup]):.2f} build_s={build_s:.2f} steps={a.steps} warmup={a.warmup} "
          f"loss={loss:.4f} graph_breaks={breaks} compile_mode={a.compile_mode} torch={torch.__version__}", flush=True)


def cmd_pair(a):
    """Eager and torch.compile in one process, from the same weights, one
    step of each in turn: machine-wide slow spells hit both alike, which
    separate processes cannot promise."""
    import copy
    import statistics

    net, batches = build_net(a)
    total = a.warmup + a.steps
    peers = {m: Peer(copy.deepcopy(net), m, total, SIZES[a.size][6], a.compile_mode) for m in ("eager", "compile")}
    times = {m: [] for m in peers}
    for i in range(total):
        for m, peer in peers.items():
            t0 = time.perf_counter()
            peer.step(batches)
            if i >= a.warmup:
                times[m].append(time.perf_counter() - t0)
    ratios = [e / c for e, c in zip(times["eager"], times["compile"])]
    med = {m: statistics.median(t) for m, t in times.items()}
    print(f"pair size={a.size} preset={a.preset} threads={a.threads} steps={a.steps} "
          f"eager_step_s={med['eager']:.4f} compile_step_s={med['compile']:.4f} "
          f"compile_speedup={med['eager'] / med['compile']:.3f} "
          f"per_step_speedup_min={min(ratios):.3f} per_step_speedup_max={max(ratios):.3f}", flush=True)


def cmd_measure(a):
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    print(f"measure peak_rss_kib={ru.ru_maxrss} wall_s={time.perf_counter() - t0:.2f} rc={p.returncode}", flush=True)
    return p.returncode


def cmd_clm_metrics(a):
    recs = []
    with open(a.metrics) as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("kind") == "train":
                recs.append(r)
    recs.sort(key=lambda r: r["step"])
    by_step = {r["step"]: r for r in recs}
    last = recs[-1] if recs else None
    if a.warmup not in by_step or last is None or last["step"] <= a.warmup:
        raise SystemExit(f"clm-metrics: {a.metrics}: need train records of step {a.warmup} and later "
                         f"(have steps {[r['step'] for r in recs]}; log_every must be 1)")
    w = by_step[a.warmup]
    dt = last["time"] - w["time"]
    tokens = last["tokens"] - w["tokens"]
    print(f"result peer=clm tokens_per_s={tokens / dt:.1f} step_s={dt / (last['step'] - a.warmup):.4f} "
          f"steps={last['step'] - a.warmup} warmup={a.warmup} loss={last['loss']:.4f}", flush=True)


def cmd_trajectory(a):
    import torch

    import model as M

    torch.manual_seed(0)
    net = M.build(M.Config.from_json(a.config))
    net.load_weights(M.load_tensors(a.weights))
    net = lean(M.set_attention(net, "sdpa")).float()
    net.train()
    ids = M.load_tensors(a.batches)["input_ids"].long()
    if ids.shape[0] < a.steps * a.accum:
        raise SystemExit(f"trajectory: {a.batches} holds {ids.shape[0]} micro-batches, need {a.steps * a.accum}")
    peer = Peer(net, a.mode, a.steps, a.accum, a.compile_mode)
    steps = []
    for i in range(a.steps):
        loss = peer.step([ids[i * a.accum + j] for j in range(a.accum)])
        steps.append({"step": i + 1, "loss": loss})
    from torch._dynamo.utils import counters
    breaks = sum(counters["graph_break"].values())
    with open(a.out, "w") as fh:
        json.dump({"mode": a.mode, "compile_mode": a.compile_mode, "graph_breaks": breaks, "steps": steps}, fh, indent=1)


def cmd_check(a):
    """The benchmarks' forward (SDPA, loss_only, lean) against the plain
    materialised forward, in float64: loss and every gradient."""
    import torch

    import model as M

    worst = 0.0
    for preset in ("default", "skipless-parallel", "skipless", "op"):
        cfg = M.preset(preset, n_layer=2, n_embd=32, n_head=4, vocab_size=97, context_length=16, n_positions=16)
        ids = torch.randint(0, 97, (3, 16), generator=torch.Generator().manual_seed(1))
        res = {}
        for impl in ("materialised", "sdpa"):
            net = M.set_attention(M.build(cfg), impl).double()
            net.perturb(0.02, torch.Generator().manual_seed(2))
            if impl == "sdpa":
                net = lean(net)
            out = net(ids, labels=ids, loss_only=impl == "sdpa")
            out["loss"].backward()
            res[impl] = [out["loss"]] + [p.grad for p in net.parameters() if p.grad is not None]
        err = max((x - y).abs().max().item() for x, y in zip(res["materialised"], res["sdpa"]))
        print(f"check {preset}: max |plain - benchmark forward| = {err:.3g} over the loss and "
              f"{len(res['sdpa']) - 1} gradients")
        worst = max(worst, err)
    if worst > 1e-10:
        raise SystemExit("check: the benchmarks' forward differs from the plain one")
    print("check: the benchmarks' forward matches the plain one")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd_name", required=True)
    def run_parser(name, fn, warmup, steps):
        r = sub.add_parser(name)
        r.add_argument("--size", choices=sorted(SIZES), required=True)
        r.add_argument("--preset", required=True)
        r.add_argument("--threads", type=int, default=1)
        r.add_argument("--warmup", type=int, default=warmup)
        r.add_argument("--steps", type=int, default=steps)
        r.add_argument("--compile-mode", default="default",
                       help="torch.compile's mode (default, max-autotune-no-cudagraphs, ...)")
        r.set_defaults(fn=fn)
        return r

    pp = run_parser("peer", cmd_peer, 2, 4)
    pp.add_argument("--mode", choices=("eager", "compile"), required=True)
    pp.add_argument("--profile", action="store_true", help="print torch.profiler's table of the last step")
    run_parser("pair", cmd_pair, 3, 8)
    m = sub.add_parser("measure")
    m.add_argument("cmd", nargs=argparse.REMAINDER)
    m.set_defaults(fn=cmd_measure)
    c = sub.add_parser("clm-metrics")
    c.add_argument("metrics")
    c.add_argument("--warmup", type=int, default=2)
    c.set_defaults(fn=cmd_clm_metrics)
    j = sub.add_parser("trajectory")
    for flag in ("--config", "--weights", "--batches", "--out"):
        j.add_argument(flag, required=True)
    j.add_argument("--steps", type=int, required=True)
    j.add_argument("--accum", type=int, required=True)
    j.add_argument("--mode", choices=("eager", "compile"), required=True)
    j.add_argument("--compile-mode", default="default")
    j.set_defaults(fn=cmd_trajectory)
    k = sub.add_parser("check")
    k.set_defaults(fn=cmd_check)
    a = ap.parse_args()
    return a.fn(a) or 0


if __name__ == "__main__":
    sys.exit(main())
