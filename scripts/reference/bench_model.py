"""Python side of model/bench_test.go: one micro-batch's forward and backward
of scripts/reference/model.py (eager PyTorch, the original's materialised
attention) for every preset and size, in `go test -bench` format.

usage: bench_model.py [THREADS]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import bench  # noqa: E402
import model  # noqa: E402

SIZES = [("small", 3, 64, 4, 8, 32, 512), ("mid", 6, 256, 8, 16, 128, 8192)]


def main(threads=1):
    torch.set_num_threads(threads)
    for size, L, d, h, B, T, V in SIZES:
        for preset in model.PRESETS:
            cfg = model.preset(preset, n_layer=L, n_embd=d, n_head=h, context_length=T, n_positions=T, vocab_size=V)
            net = model.build(cfg)
            g = torch.Generator().manual_seed(7)
            ids = torch.randint(0, V, (B, T), generator=g)

            def step():
                out = net(ids, labels=ids)
                out["loss"].backward()
                for p in net.parameters():
                    p.grad = None

            bench(f"ForwardBackward/{preset}/{size}", step)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
