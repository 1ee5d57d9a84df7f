"""Reference for the Go statistics of stats/stats.go (stats/stats_test.go).

  stats_check.py outlier IN.safetensors   hidden-state statistics
  stats_check.py entropy IN.safetensors   attention entropy

IN holds tensors by name: hidden states [B, T, d] for `outlier`, softmax
probabilities [B, H, T, T] for `entropy`. Every statistic is computed in the
tensor's own dtype, written out from the formulas of the outlier paper's
training code (He et al., NeurIPS 2024) as DESIGN.md section 3 states them.
The result is JSON on stdout, {name: {stat: value}} for `outlier` and
{name: entropy} for `entropy`; non-finite values are written as null.
"""

import json
import math
import sys

import torch
from safetensors.torch import load_file


def finite(v):
    v = float(v)
    return v if math.isfinite(v) else None


def outlier(x):
    x = x - x.mean(dim=-1, keepdim=True)  # centre across the width
    x_rms = (x**2).mean().sqrt() + 1e-8  # one scalar over the whole batch
    d = x.shape[-1]
    f = x.reshape(-1, d) / x_rms  # [N, d]
    n = f.shape[0]

    g = f.T @ f / n  # feature Gram
    s2 = torch.diagonal(g)  # squared neuron RMS
    off_g = g[~torch.eye(d, dtype=torch.bool)]

    b = f @ f.T / d  # token Gram, materialised (N x N)
    off_b = b[~torch.eye(n, dtype=torch.bool)]

    a = x.abs()
    ratio = a.max(dim=-1).values / a.median(dim=-1).values  # lower median

    return {
        "x_rms": finite(x_rms),
        "kurtosis": finite((s2**2).mean() / s2.mean() ** 2),
        "kurtosis_minus_one": finite(s2.var(correction=1)),
        "feat_corr_rms": finite(off_g.square().mean().sqrt()),
        "batch_corr_mean": finite(off_b.mean()),
        "batch_corr_rms": finite(off_b.square().mean().sqrt()),
        "max_median_ratio": finite(ratio.mean()),
        "s2_mean": finite(s2.mean()),
    }


def entropy(p):
    # nansum: 0 * log 0 at masked keys counts as 0.
    return finite((-torch.nansum(p * torch.log(p), dim=-1)).mean())


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("outlier", "entropy"):
        sys.exit(__doc__)
    tensors = load_file(sys.argv[2])
    fn = outlier if sys.argv[1] == "outlier" else entropy
    with torch.no_grad():
        out = {name: fn(t) for name, t in tensors.items()}
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
