"""Reference for data/nprand: NumPy's own default_rng draws.

Usage: numpy_permutation.py JOBS.json OUTDIR
JOBS is a list of {"seed": int, "n": int}; for each job i the script writes
OUTDIR/perm-<i>.bin, `numpy.random.default_rng(seed).permutation(n)` as
little-endian int64, and OUTDIR/raw-<i>.bin: 64 raw 64-bit outputs of
PCG64(seed) followed by 64 uint32 draws of a fresh default_rng(seed)
(the buffered 32-bit path).
"""
import json
import os
import sys

import numpy as np


def main():
    jobs = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    for i, job in enumerate(jobs):
        seed, n = int(job["seed"]), int(job["n"])
        perm = np.random.default_rng(seed).permutation(n).astype("<i8")
        perm.tofile(os.path.join(out, f"perm-{i}.bin"))
        raw = np.array([np.random.PCG64(seed).random_raw(64)], dtype="<u8").ravel()
        u32 = np.random.default_rng(seed).integers(0, 2**32, size=64, dtype=np.uint32).astype("<u8")
        np.concatenate([raw, u32]).astype("<u8").tofile(os.path.join(out, f"raw-{i}.bin"))


if __name__ == "__main__":
    main()
