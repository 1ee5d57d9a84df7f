"""PyTorch reference of `clm quant` (package quant): int8 post-training
quantisation simulated with torch.fake_quantize_per_tensor_affine and
torch.fake_quantize_per_channel_affine at the points of model.py's
quantisation hook (GPT.set_quant), and the evaluation loss.

Schemes (the same numbers as quant/quantizer.go):
  weights  none | per_tensor (scale max|W|/127) | per_channel (per output
           channel, a column of the [in, out] weight); symmetric, grid
           [-127, 127], zero point 0.
  acts     none | static (per tensor, asymmetric, grid [-128, 127], from
           min-max ranges observed on calibration batches in full
           precision) | dynamic (per token, symmetric, [-127, 127]).
  residual the stream after every block, with the acts scheme.
Scales are at least 1e-8. Static: lo = min(min, 0), hi = max(max, 0),
scale = (hi - lo)/255, zero point = -128 - round(lo/scale) (ties to even),
clamped to [-128, 127].

usage: quant_ref.py JOBS.json
JOBS.json is a list of {"config", "weights", "batches" (safetensors with
int64 "calib" and "valid" rows [N, T]), "batch" (rows per forward),
"calib_batches", "pad_id", "schemes": [{"weights", "acts", "residual"}]}.
Prints one JSON line per job: {"fp": loss, "int8": [loss per scheme]},
losses the mean next-token loss per sequence (float32 model).
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402

SYM_MAX = 127
ASYM_MIN, ASYM_MAX = -128, 127
MIN_SCALE = 1e-8


def residual_name(layer):
    return f"transformer.h.{layer}"


def affine(r):
    lo, hi = min(r[0], 0.0), max(r[1], 0.0)
    scale = max((hi - lo) / (ASYM_MAX - ASYM_MIN), MIN_SCALE)
    zp = ASYM_MIN - round(lo / scale)  # Python's round is ties-to-even
    return scale, int(max(ASYM_MIN, min(ASYM_MAX, zp)))


def symmetric_along(t, axis):
    scale = (t.abs().amax(1 - axis) / SYM_MAX).clamp_min(MIN_SCALE).float()
    zp = torch.zeros(t.shape[axis], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(t, scale, zp, axis, -SYM_MAX, SYM_MAX)


def quantize_weight(w, scheme):
    if scheme == "per_tensor":
        scale = max(w.abs().amax().item() / SYM_MAX, MIN_SCALE)
        return torch.fake_quantize_per_tensor_affine(w, scale, 0, -SYM_MAX, SYM_MAX)
    if scheme == "per_channel":
        return symmetric_along(w, 1)
    assert scheme == "none", scheme
    return w


class Quant:
    """The hook of one scheme."""

    def __init__(self, scheme, ranges):
        self.s, self.ranges = scheme, ranges

    def acts(self, name, x):
        if self.s["acts"] == "static":
            scale, zp = affine(self.ranges[name])
            return torch.fake_quantize_per_tensor_affine(x, scale, zp, ASYM_MIN, ASYM_MAX)
        if self.s["acts"] == "dynamic":
            return symmetric_along(x, 0)
        return x

    def linear(self, name, x, w):
        return self.acts(name, x), quantize_weight(w, self.s["weights"])

    def residual(self, layer, h):
        if not self.s["residual"]:
            return h
        return self.acts(residual_name(layer), h.reshape(-1, h.shape[-1])).view(h.shape)


class Observer:
    """Records the min-max range of every linear input and block output."""

    def __init__(self):
        self.ranges = {}

    def see(self, name, t):
        lo, hi = t.min().item(), t.max().item()
        if name in self.ranges:
            lo, hi = min(lo, self.ranges[name][0]), max(hi, self.ranges[name][1])
        self.ranges[name] = (lo, hi)

    def linear(self, name, x, w):
        self.see(name, x)
        return x, w

    def residual(self, layer, h):
        self.see(residual_name(layer), h)
        return h


def batches(rows, n, b):
    return [rows[a:min(a + b, n)] for a in range(0, n, b)]


def eval_loss(model, rows, b, pad_id):
    total = 0.0
    for x in batches(rows, rows.shape[0], b):
        total += model(x, labels=x, pad_id=pad_id)["loss"].item() * x.shape[0]
    return total / rows.shape[0]


def run(job):
    cfg = M.Config.from_json(job["config"])
    model = M.build(cfg)
    model.load_weights(M.load_tensors(job["weights"]))
    model.float().eval()
    data = M.load_tensors(job["batches"])
    calib, valid = data["calib"].long(), data["valid"].long()
    b, pad = job["batch"], job["pad_id"]
    out = {"int8": []}
    with torch.no_grad():
        out["fp"] = eval_loss(model, valid, b, pad)
        obs = Observer()
        model.set_quant(obs)
        for x in batches(calib, min(calib.shape[0], job["calib_batches"] * b), b):
            model(x)
        for s in job["schemes"]:
            model.set_quant(Quant(s, obs.ranges))
            out["int8"].append(eval_loss(model, valid, b, pad))
        model.set_quant(None)
    print(json.dumps(out))


def main(path):
    torch.use_deterministic_algorithms(True)
    with open(path) as f:
        for job in json.load(f):
            run(job)


if __name__ == "__main__":
    main(sys.argv[1])
