"""PyTorch side of optim/muon_test.go.

usage: muon_ref.py IN.safetensors CONFIG.json OUT.safetensors
       muon_ref.py --defaults


Runs torch.optim.Muon on the matrices and torch.optim.AdamW on the rest of
the parameters p.<name> of IN for `steps` steps, with the gradients
g.<step>.<name> (a parameter without one for a step has no gradient then),
the learning rate lrs[step] set on every group of both before each step,
and writes every parameter after each step as step<k>.<name>.

CONFIG: names, steps, lrs, muon_groups and adamw_groups (lists of
{"names": [...], "weight_decay": x}), momentum, nesterov, ns_coefficients,
ns_steps, eps, adjust_lr_fn, betas, adamw_eps, and in_out: the names of
matrices stored [in, out], which torch's Muon (assuming nn.Linear's
[out, in]) updates as their transposes; they are read, given their
gradients and written back transposed.

--defaults prints torch.optim.Muon's and torch.optim.AdamW's defaults as JSON.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file


def build(cfg, params):
    def groups(key):
        return [dict(params=[params[n] for n in g["names"]], lr=cfg["lrs"][0], weight_decay=g["weight_decay"])
                for g in cfg[key]]

    muon = torch.optim.Muon(
        groups("muon_groups"), lr=cfg["lrs"][0], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
        ns_coefficients=tuple(cfg["ns_coefficients"]), ns_steps=cfg["ns_steps"], eps=cfg["eps"],
        adjust_lr_fn=cfg["adjust_lr_fn"])
    opts = [muon]
    if cfg["adamw_groups"]:
        opts.append(torch.optim.AdamW(groups("adamw_groups"), lr=cfg["lrs"][0], betas=tuple(cfg["betas"]),
                                      eps=cfg["adamw_eps"], foreach=False))
    return opts


def main(in_path, cfg_path, out_path):
    torch.set_num_threads(1)
    t = load_file(in_path)
    with open(cfg_path) as f:
        cfg = json.load(f)
    names = cfg["names"]
    flip = set(cfg.get("in_out", []))

    def torch_layout(n, x):
        return x.t().contiguous() if n in flip else x

    params = {n: torch_layout(n, t[f"p.{n}"]).clone().requires_grad_(True) for n in names}
    opts = build(cfg, params)
    out = {}
    for k in range(cfg["steps"]):
        for o in opts:
            o.zero_grad(set_to_none=True)
            for g in o.param_groups:
                g["lr"] = cfg["lrs"][k]
        for n in names:
            g = t.get(f"g.{k}.{n}")
            if g is not None:
                params[n].grad = torch_layout(n, g).clone()
        for o in opts:
            o.step()
        for n in names:
            out[f"step{k}.{n}"] = torch_layout(n, params[n].detach()).clone()
    save_file(out, out_path)


def defaults():
    p = [torch.zeros(2, 2, requires_grad=True)]
    muon, adamw = torch.optim.Muon(p).defaults, torch.optim.AdamW(p).defaults
    print(json.dumps({
        "momentum": muon["momentum"], "nesterov": muon["nesterov"], "ns_coefficients": list(muon["ns_coefficients"]),
        "ns_steps": muon["ns_steps"], "eps": muon["eps"], "adjust_lr_fn": muon["adjust_lr_fn"] or "original",
        "betas": list(adamw["betas"]), "adamw_eps": adamw["eps"],
    }))


if __name__ == "__main__":
    if sys.argv[1:] == ["--defaults"]:
        defaults()
    else:
        main(*sys.argv[1:])
