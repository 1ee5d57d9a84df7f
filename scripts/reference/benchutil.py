"""Timing for the Python sides of the Go benchmarks: runs fn until min_time
seconds have passed and prints a `go test -bench` line, so that
scripts/bench-compare.sh (and benchstat) read both sides alike."""
import time

import torch


def bench(name, fn, min_time=1.0):
    """Prints `Benchmark<name>-<threads>  <n>  <ns> ns/op` for fn."""
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
    print(f"Benchmark{name}-{torch.get_num_threads()}\t{n}\t{dt / n * 1e9:.1f} ns/op", flush=True)
