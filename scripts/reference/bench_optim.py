"""Python side of train/bench_test.go's BenchmarkOptimizerStep: one
optimizer step alone (the gradients of one forward and backward, kept) of
torch.optim.AdamW, pytorch_optimizer.SOAP and torch.optim.Muon + AdamW, over
the default preset at the mid size (6 layers, width 256, vocabulary 8192),
built by scripts/reference/train.py as the trainer builds them; in
`go test -bench` format.

usage: bench_optim.py [THREADS]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import bench  # noqa: E402
import model as M  # noqa: E402
import train as T  # noqa: E402

L, D, H, B, CTX, V = 6, 256, 8, 16, 128, 8192
# clm's [train.optim] defaults, but:
# SOAP leaves the vocabulary side of wte to the identity (4096 < 8192), as at
# the paper's size.
OPTIM = {"precondition_frequency": 10, "max_precondition_dim": 4096, "shampoo_beta": -1,
         "precondition_1d": False, "normalize_gradient": False,
         "momentum": 0.95, "nesterov": True, "ns_steps": 5, "adjust_lr": "original"}


def main(threads=1):
    torch.set_num_threads(threads)
    for name in ("adamw_torch", "soap", "muon"):
        cfg = M.preset("default", n_layer=L, n_embd=D, n_head=H, context_length=CTX, n_positions=CTX, vocab_size=V)
        net = M.build(cfg)
        net.train()
        opt = T.make_optimizer(name, T.param_groups(net, 0.1), 1e-3, (0.9, 0.999), 1e-8, OPTIM)
        ids = torch.randint(0, V, (B, CTX), generator=torch.Generator().manual_seed(7))
        net(ids, labels=ids)["loss"].backward()
        bench(f"OptimizerStep/{name}", opt.step)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
