"""PyTorch side of torch/optim_test.go.

usage: optim_check.py IN.safetensors CONFIG.json OUT.safetensors

Runs `steps` optimizer steps on the parameters p.<name> of IN with the
gradients g.<step>.<name> (set through backward of sum(p * g), as Go does),
clipping the global grad norm first, and writes every parameter after each
step as step<k>.<name>, and the pre-clip norm as norm<k>.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file

from adamw_hf import AdamWHF


def main(in_path, cfg_path, out_path):
    torch.set_num_threads(1)
    t = load_file(in_path)
    with open(cfg_path) as f:
        cfg = json.load(f)
    names = cfg["names"]
    params = {n: t[f"p.{n}"].clone().requires_grad_(True) for n in names}
    groups = [dict(params=[params[n] for n in g["names"]], lr=cfg["lrs"][0], weight_decay=g["weight_decay"])
              for g in cfg["groups"]]
    betas = (cfg["beta1"], cfg["beta2"])
    if cfg["flavour"] == "adamw_torch":
        opt = torch.optim.AdamW(groups, lr=cfg["lrs"][0], betas=betas, eps=cfg["eps"], foreach=False)
    else:
        opt = AdamWHF(groups, lr=cfg["lrs"][0], betas=betas, eps=cfg["eps"])
    out = {}
    for k in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = cfg["lrs"][k]
        opt.zero_grad(set_to_none=True)
        loss = sum((params[n] * t[f"g.{k}.{n}"]).sum() for n in names if f"g.{k}.{n}" in t)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), cfg["max_norm"])
        out[f"norm{k}"] = norm.detach().reshape(())
        opt.step()
        for n in names:
            out[f"step{k}.{n}"] = params[n].detach().clone()
    save_file(out, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
