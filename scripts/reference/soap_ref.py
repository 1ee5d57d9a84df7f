"""PyTorch side of optim/soap_test.go: pytorch_optimizer.SOAP (4.1.0).

usage: soap_ref.py IN.safetensors CONFIG.json OUT.safetensors [IN CONFIG OUT ...]

Builds SOAP over the parameters p.<name> of IN in the groups of CONFIG
(names and weight_decay each; the options under "options"), then for each
of `steps` steps sets every group's lr to lrs[k], sets each gradient to
g.<k>.<name> (None when IN lacks it) and steps. It writes every parameter
after every step as step<k>.<name>. Several triples run one after another
(one Python start for all of a test's cases).
"""
import json
import sys

import torch
from pytorch_optimizer import SOAP
from safetensors.torch import load_file, save_file


def run(in_path, cfg_path, out_path):
    t = load_file(in_path)
    with open(cfg_path) as f:
        cfg = json.load(f)
    names = cfg["names"]
    params = {n: t[f"p.{n}"].clone() for n in names}
    groups = [dict(params=[params[n] for n in g["names"]], weight_decay=g["weight_decay"]) for g in cfg["groups"]]
    o = cfg["options"]
    opt = SOAP(groups, lr=cfg["lrs"][0], betas=(o["beta1"], o["beta2"]), shampoo_beta=o["shampoo_beta"],
               precondition_frequency=o["precondition_frequency"], max_precondition_dim=o["max_precondition_dim"],
               precondition_1d=o["precondition_1d"], correct_bias=o["correct_bias"],
               normalize_gradient=o["normalize_gradient"], eps=o["eps"])
    out = {}
    for k in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = cfg["lrs"][k]
        for n in names:
            g = t.get(f"g.{k}.{n}")
            params[n].grad = None if g is None else g.clone()
        opt.step()
        for n in names:
            out[f"step{k}.{n}"] = params[n].detach().clone()
    save_file(out, out_path)


def main(args):
    torch.set_num_threads(1)
    if not args or len(args) % 3:
        raise SystemExit(__doc__)
    for i in range(0, len(args), 3):
        run(*args[i:i + 3])


if __name__ == "__main__":
    main(sys.argv[1:])
