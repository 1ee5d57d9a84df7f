"""PyTorch side of torch/parity_test.go: every op case of the Go binding.

usage: ops.py IN.safetensors CASES.json OUT.safetensors

For each case in CASES.json (name, inputs, grads, seed, cot) this loads the
inputs written by Go, seeds the generator if asked, runs the op below of the
same name, back-propagates sum(out * cot) when the case has gradients, and
writes `<case>.out` and `<case>.grad.<input>`.
"""
import json
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def compare(x, y, dt):
    parts = [x == y, x != y, x < y, x <= y, x > y, x >= y,
             x == 0, x != 0, x < 0.2, x <= 0.2, x > -0.3, x >= -0.3, torch.logical_not(x > 0)]
    return torch.stack([p.to(dt) for p in parts], 0)


def split(x):
    parts = x.split(3, 1)
    return torch.cat([p * float(i + 1) for i, p in enumerate(parts)], 1)


def to_dtype(x, dt):
    other = torch.float32 if dt == torch.float64 else torch.float64
    return x.to(other).to(dt)


def copy_fill_inplace(x, dt):
    t = torch.zeros(3, 4, dtype=dt).copy_(x).mul_(2)
    t.add_(torch.full((3, 4), 1.0, dtype=dt), alpha=0.5)
    u = torch.zeros(2, dtype=dt).fill_(-3)
    return torch.cat([t.reshape(-1), u], 0)


def creation(dt):
    return torch.cat([
        torch.arange(0, 6, 1, dtype=dt), torch.arange(-1, 1, 0.5, dtype=dt), torch.eye(2, 3, dtype=dt).reshape(-1),
        torch.full((2,), 3.25, dtype=dt), torch.ones(1, dtype=dt), torch.zeros(1, dtype=dt),
        torch.full((), 2.5, dtype=dt).reshape(1),
    ], 0)


def sdpa_mask_scale(q, k, v, m):
    m = m | torch.eye(5, dtype=torch.bool)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3)


OPS = {
    "neg": lambda x, dt: -x,
    "exp": lambda x, dt: x.exp(),
    "log": lambda x, dt: x.log(),
    "sqrt": lambda x, dt: x.sqrt(),
    "rsqrt": lambda x, dt: x.rsqrt(),
    "tanh": lambda x, dt: x.tanh(),
    "relu": lambda x, dt: x.relu(),
    "sigmoid": lambda x, dt: x.sigmoid(),
    "abs": lambda x, dt: x.abs(),
    "sign": lambda x, dt: x.sign(),
    "square": lambda x, dt: x.square(),
    "clone": lambda x, dt: x.clone(),
    "t_contiguous": lambda x, dt: x.t().contiguous(),
    "add": lambda x, y, dt: x + y,
    "sub": lambda x, y, dt: x - y,
    "mul": lambda x, y, dt: x * y,
    "div": lambda x, y, dt: x / y,
    "pow": lambda x, y, dt: x.pow(y),
    "matmul": lambda x, y, dt: x @ y,
    "maximum": lambda x, y, dt: torch.maximum(x, y),
    "minimum": lambda x, y, dt: torch.minimum(x, y),
    "add_scalar": lambda x, dt: x + 0.5,
    "mul_scalar": lambda x, dt: x * -1.5,
    "div_scalar": lambda x, dt: x / 3,
    "pow_scalar": lambda x, dt: x ** 1.5,
    "rsub_scalar": lambda x, dt: 2 - x,
    "clamp_min": lambda x, dt: x.clamp_min(0.1),
    "clamp_max": lambda x, dt: x.clamp_max(0.1),
    "compare": compare,
    "where": lambda x, y, dt: torch.where(x >= 0, x, y * 0.1),
    "addmm": lambda x, y, w, dt: torch.addmm(x, y, w),
    "addmm_scaled": lambda x, y, w, dt: torch.addmm(x, y, w, beta=-4.775, alpha=2.0315),
    "addmm_scaled_bf16": lambda x, y, dt: torch.addmm(
        x.bfloat16(), y.bfloat16(), x.bfloat16().T, beta=3.4445).to(dt),
    "lerp": lambda x, y, dt: torch.cat([x.lerp(y, 0.05), x.lerp(y, 0.95)], 0),
    "lerp_inplace": lambda x, y, dt: torch.cat([x.clone().lerp_(y, 0.05), x.clone().lerp_(y, 0.95)], 0),
    "linear": lambda x, w, b, dt: F.linear(x, w, b),
    "linear_nobias": lambda x, w, dt: F.linear(x, w),
    "embedding": lambda w, i, dt: F.embedding(i, w),
    "softmax": lambda x, dt: x.softmax(-1),
    "log_softmax": lambda x, dt: x.log_softmax(1),
    "gelu": lambda x, dt: F.gelu(x),
    "gelu_tanh": lambda x, dt: F.gelu(x, approximate="tanh"),
    "leaky_relu": lambda x, dt: F.leaky_relu(x, 0.1),
    "layer_norm": lambda x, w, b, dt: F.layer_norm(x, (8,), w, b, 1e-5),
    "dropout": lambda x, dt: F.dropout(x, 0.3, True),
    "dropout_eval": lambda x, dt: F.dropout(x, 0.3, False),
    "cross_entropy_mean": lambda x, t, dt: F.cross_entropy(x, t, ignore_index=-100),
    "cross_entropy_sum": lambda x, t, dt: F.cross_entropy(x, t, ignore_index=-100, reduction="sum"),
    "cross_entropy_none": lambda x, t, dt: F.cross_entropy(x, t, ignore_index=3, reduction="none"),
    "sdpa_causal": lambda q, k, v, dt: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "sdpa_mask_scale": lambda q, k, v, m, dt: sdpa_mask_scale(q, k, v, m),
    "sum_all": lambda x, dt: x.sum(),
    "sum_dims": lambda x, dt: x.sum((0, 2), keepdim=True),
    "mean_all": lambda x, dt: x.mean(),
    "mean_dim": lambda x, dt: x.mean(-1),
    "var_bessel": lambda x, dt: x.var(1, correction=1),
    "var_population": lambda x, dt: x.var(0, correction=0, keepdim=True),
    "var_all": lambda x, dt: x.var(),
    "norm_dim": lambda x, dt: torch.linalg.vector_norm(x, 2, 1),
    "norm_all": lambda x, dt: torch.linalg.vector_norm(x, 2),
    "amax": lambda x, dt: x.abs().amax(1, keepdim=True),
    "max_dim": lambda x, dt: x.max(0).values,
    "max_all": lambda x, dt: x.max(),
    "median_dim": lambda x, dt: x.median(1).values,
    "median_all": lambda x, dt: x.median(),
    "cumsum": lambda x, dt: x.cumsum(1),
    "eigh_vals": lambda x, dt: torch.linalg.eigh(x + x.T).eigenvalues,
    "eigh_vecs_abs": lambda x, dt: torch.linalg.eigh(x + x.T).eigenvectors.abs(),
    "qr_q": lambda x, dt: torch.linalg.qr(x).Q,
    "qr_r": lambda x, dt: torch.linalg.qr(x).R,
    "sort_desc": lambda x, dt: torch.sort(x, 1, descending=True).values,
    "sort_idx": lambda x, dt: torch.sort(x, 0).indices.to(dt),
    "fake_quant_tensor": lambda x, dt: torch.fake_quantize_per_tensor_affine(x * 10, 0.1, 3, -128, 127),
    "fake_quant_clamped": lambda x, dt: torch.fake_quantize_per_tensor_affine(x, 0.01, 0, -8, 7),
    "fake_quant_channel": lambda x, s, z, dt: torch.fake_quantize_per_channel_affine(
        x * 10, s.float(), z.to(torch.int32), 0, -128, 127),
    "reshape_view": lambda x, dt: x.reshape(6, -1).view(4, 6) * 2,
    "permute_transpose": lambda x, dt: x.permute(2, 0, 1).transpose(0, 1).contiguous(),
    "unsqueeze_expand_squeeze": lambda x, dt: x.unsqueeze(1).expand(3, 2, 4).unsqueeze(0).squeeze(0).contiguous(),
    "narrow": lambda x, dt: x.narrow(1, 2, 3),
    "index_select": lambda x, i, dt: x.index_select(0, i),
    "cat": lambda x, y, dt: torch.cat([x, y], 0),
    "stack": lambda x, y, dt: torch.stack([x, y], 1),
    "split": lambda x, dt: split(x),
    "tril": lambda x, dt: x.tril(0),
    "triu": lambda x, dt: x.triu(1),
    "masked_fill": lambda x, m, dt: x.masked_fill(m, -7.5),
    "to_dtype": to_dtype,
    "normal_": lambda dt: torch.zeros(5, 6, dtype=dt).normal_(0.5, 0.02),
    "uniform_": lambda dt: torch.zeros(5, 6, dtype=dt).uniform_(-0.1, 0.3),
    "orthogonal_tall": lambda dt: torch.nn.init.orthogonal_(torch.zeros(6, 4, dtype=dt), 1.5),
    "orthogonal_wide": lambda dt: torch.nn.init.orthogonal_(torch.zeros(3, 5, dtype=dt), 1),
    "randn": lambda dt: torch.randn(4, 3, dtype=dt),
    "rand": lambda dt: torch.rand(4, 3, dtype=dt),
    "creation": creation,
    "copy_fill_inplace": copy_fill_inplace,
}


def main(in_path, cases_path, out_path):
    torch.set_num_threads(1)
    tensors = load_file(in_path)
    with open(cases_path) as f:
        cases = json.load(f)
    out = {}
    dtype = None
    for c in cases:
        name = c["name"]
        if name not in OPS:
            raise SystemExit(f"ops.py: no reference for case {name!r}")
        inputs = [tensors[f"{name}.{i}"].clone() for i in c["inputs"] or []]
        for n, t in zip(c["inputs"] or [], inputs):
            if n in (c["grads"] or []):
                t.requires_grad_(True)
            if t.is_floating_point():
                dtype = t.dtype
        dt = dtype if dtype is not None else tensors[next(k for k in tensors if tensors[k].is_floating_point())].dtype
        if c["seed"]:
            torch.manual_seed(c["seed"])
        y = OPS[name](*inputs, dt)
        out[f"{name}.out"] = y.detach().contiguous()
        if c["cot"]:
            (y * tensors[f"{name}.cot"]).sum().backward()
            for n, t in zip(c["inputs"], inputs):
                if n in c["grads"]:
                    out[f"{name}.grad.{n}"] = t.grad.contiguous()
    save_file(out, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
