"""Runs many train.py runs in one process (torch imports once).

usage: train_jobs.py JOBS.json

JOBS.json is a list of argument lists for train.py's main, e.g.
[["--config", "c.json", "--weights", "w.safetensors", ...], ...].
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def main(path):
    with open(path) as f:
        jobs = json.load(f)
    for argv in jobs:
        train.main(argv)


if __name__ == "__main__":
    main(sys.argv[1])
