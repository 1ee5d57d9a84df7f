"""Python side of the torch/ benchmarks (torch/bench_test.go), same ops and
threads, printed in `go test -bench` format so benchstat can compare them.

usage: bench_torch.py [THREADS]
"""
import sys

import torch
import torch.nn.functional as F

from benchutil import bench


def main(threads=1):
    torch.set_num_threads(threads)
    a = torch.ones(1)
    b = torch.ones(1)
    bench("OpDispatch", lambda: a + b)

    torch.manual_seed(0)
    w1 = torch.empty(1024, 512).normal_(0, 0.1).requires_grad_()
    b1 = torch.zeros(1024, requires_grad=True)
    w2 = torch.empty(512, 1024).normal_(0, 0.1).requires_grad_()
    b2 = torch.zeros(512, requires_grad=True)
    opt = torch.optim.AdamW([dict(params=[w1, w2], weight_decay=0.1), dict(params=[b1, b2], weight_decay=0.0)],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    x = torch.randn(64, 512)
    y = torch.tensor([i * 7 % 512 for i in range(64)])
    params = [w1, b1, w2, b2]

    def step():
        h = F.linear(x, w1, b1).relu()
        loss = F.cross_entropy(F.linear(h, w2, b2), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    bench("MLPStep", step)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
