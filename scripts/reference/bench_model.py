"""Python side of model/bench_test.go: one micro-batch's forward and backward
of scripts/reference/model.py (eager PyTorch, the original's materialised
attention) for every preset and size, in `go test -bench` format.

usage: bench_model.py [THREADS]
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # noqa: E402

SIZES = [("small", 3, 64, 4, 8, 32, 512), ("mid", 6, 256, 8, 16, 128, 8192)]


def bench(name, fn, min_time=1.0):
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            break
        n = max(n * 2, int(n * min_time / max(dt, 1e-9) * 1.2))
    print(f"BenchmarkForwardBackward/{name}-{torch.get_num_threads()}\t{n}\t{dt / n * 1e9:.1f} ns/op", flush=True)


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

            bench(f"{preset}/{size}", step)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
