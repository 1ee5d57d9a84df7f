"""Runs many model.py commands in one process (torch imports once).

usage: model_jobs.py JOBS.json

JOBS.json is a list of objects {"cmd": "init" | "forward", ...} whose other
keys are the command's options with underscores (config, weights, batch, out,
dtype, hidden, attn, pad_id, train_mode, seed, perturb).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # noqa: E402

DEFAULTS = {
    "init": dict(seed=0, perturb=0.0),
    "forward": dict(dtype="float64", hidden=False, attn=False, pad_id=None, train_mode=False),
}


def main(path):
    with open(path) as f:
        jobs = json.load(f)
    for job in jobs:
        cmd = job.pop("cmd")
        ns = argparse.Namespace(**{**DEFAULTS[cmd], **job})
        {"init": model.cmd_init, "forward": model.cmd_forward}[cmd](ns)


if __name__ == "__main__":
    main(sys.argv[1])
