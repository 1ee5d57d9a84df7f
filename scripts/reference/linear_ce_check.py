"""PyTorch side of torch/loss_test.go (TestLinearCrossEntropyPyTorch).

usage: linear_ce_check.py IN.safetensors IGNORE_INDEX OUT.safetensors

Reads h [N, d], w [V, d] (float64) and target [N] (int64) from IN, computes
F.cross_entropy(h @ w.T, target, ignore_index=IGNORE_INDEX) (mean) and writes
loss, grad_h and grad_w.
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def main(in_path, ignore_index, out_path):
    torch.set_num_threads(1)
    t = load_file(in_path)
    h = t["h"].clone().requires_grad_(True)
    w = t["w"].clone().requires_grad_(True)
    loss = F.cross_entropy(h @ w.T, t["target"], ignore_index=int(ignore_index))
    loss.backward()
    save_file({"loss": loss.detach().reshape(1), "grad_h": h.grad, "grad_w": w.grad}, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
