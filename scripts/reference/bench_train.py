"""Python side of train/bench_test.go: one optimizer step of the reference
training loop (scripts/reference/train.py: 2 micro-batches of 16 × 128
tokens, clipping, adamw_hf, schedule) at the mid size (6 layers, width 256,
vocabulary 8192), every preset, in `go test -bench` format.

usage: bench_train.py [THREADS]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import bench  # noqa: E402
import model as M  # noqa: E402
import train as T  # noqa: E402

L, D, H, B, CTX, V, ACCUM = 6, 256, 8, 16, 128, 8192, 2


def main(threads=1):
    torch.set_num_threads(threads)
    for preset in M.PRESETS:
        cfg = M.preset(preset, n_layer=L, n_embd=D, n_head=H, context_length=CTX, n_positions=CTX, vocab_size=V)
        net = M.build(cfg)
        net.train()
        groups = T.param_groups(net, 0.1)
        opt = T.make_optimizer("adamw_hf", groups, 1e-3, (0.9, 0.999), 1e-8)
        sched = T.make_scheduler(opt, "polynomial", 10, 10**6)
        params = list(net.parameters())
        g = torch.Generator().manual_seed(7)
        batches = [torch.randint(0, V, (B, CTX), generator=g) for _ in range(ACCUM)]

        def step():
            total = 0.0
            for ids in batches:
                out = net(ids, labels=ids)
                (out["loss"] / ACCUM).backward()
                total += out["loss"].item()
            T.clip_grad_norm(params, 1.0)
            opt.step()
            sched.step()
            net.zero_grad(set_to_none=True)

        bench(f"TrainStep/{preset}", step, min_time=2.0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
