"""PyTorch reference of the clm GPT-2 block variants, written from the math.

This file is to clm what llm.c's train_gpt2.py is to the C code: a small,
readable model that the Go implementation is compared against, tensor by
tensor. It re-derives the blocks of "Simplifying Transformer Blocks" (He &
Hofmann, ICLR 2024) and the OP block of "Understanding and Minimising Outlier
Features in Transformer Training" (He et al., NeurIPS 2024) with parameter
names, layouts and registration order equal to the original Hugging Face
module tree (GPT2LMHeadModel whose blocks are swapped for the paper's
configurable block), so that one safetensors file of weights serves both.

Differences from the original module tree, all deliberate:
  * the fixed matrices W_init of reparameterised value/projection layers
    (Eq. 6) are persistent buffers named `<layer>.id`, so that they are saved
    with the weights (the original keeps them as plain attributes, so its
    checkpoints lose them);
  * there is no `lm_head` key: the head is the tied `transformer.wte.weight`;
  * `dot_norm_type = tanh` computes the capped logits in
    promote(dtype, float32) rather than always float32, so that float64
    reference runs stay float64 (identical for float32/fp16/bf16).

Usage (see docs/testing.md):
  python model.py forward --config cfg.json --weights w.safetensors \
      --batch b.safetensors --out out.safetensors [--dtype float64|float32] \
      [--hidden] [--attn] [--pad-id N]
  python model.py init --config cfg.json --seed S [--perturb 0.02] --out w.safetensors
  python model.py params --config cfg.json [--list]
  python model.py preset NAME [--set key=value ...] [--out cfg.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_TYPES = ("ln", "rmsnorm", "none")
NORM_POSITIONS = ("pre", "post")
QK_NORM_TYPES = ("none", "rmsnorm")
DOT_NORM_TYPES = ("none", "tanh")
INIT_TYPES = ("normal", "orth", "id")
TIE_VALPROJ = (None, "last_block", "all_blocks")
ACTIVATIONS = (
    "leaky_relu",
    "relu",
    "gelu",
    "gelu_new",
    "gelu_pytorch_tanh",
    "gelu_fast",
    "quick_gelu",
    "silu",
    "swish",
    "tanh",
    "sigmoid",
)

# Softcap of dot_norm_type = tanh (as in Grok-1, which the original cites).
TANH_SOFTCAP = 30.0
# Weight std that the original's linear layer (MyConv1D) hard-codes for its
# "normal" init. It is NOT initializer_range, which only reaches wte and wpe.
LINEAR_INIT_STD = 0.02


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


@dataclass
class Config:
    """Every knob of the original model yaml (config/model/default.yaml), same
    names. Optional values are None where the original has null. Defaults are
    the original's `default` preset (Pre-LN with RMSNorm, 12 layers)."""

    # --- sizes -----------------------------------------------------------
    vocab_size: int = 52000
    n_positions: int = 1024  # rows of wpe (HF GPT-2 default); also the size of the attention buffers
    context_length: int = 128  # training sequence length (HF n_ctx); <= n_positions
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    mlp_width_mult: float = 4  # n_inner = int(n_embd * mlp_width_mult)

    # --- normalisation -----------------------------------------------------
    norm_type: str = "rmsnorm"  # ln | rmsnorm | none (none keeps an LN as ln_1 of layer 0)
    norm_position: str = "pre"  # pre | post
    qk_norm_type: str = "none"  # none | rmsnorm (per head, on q and k)
    dot_norm_type: str = "none"  # none | tanh (30*tanh(logits/30))
    layer_norm_epsilon: float = 1e-5

    # --- dropout -----------------------------------------------------------
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    embd_pdrop: float = 0.0

    # --- block gains: h = resid_gain * f(x) + skip_gain * x ---------------------
    attn_block_resid_gain: float = 1.0
    attn_block_skip_gain: float = 1.0
    mlp_block_resid_gain: float = 1.0
    mlp_block_skip_gain: float = 1.0

    # --- shaped attention (Eq. 5): A = resid*softmax + skip*I - centre*C -----
    attn_mat_resid_gain: float = 1.0
    attn_mat_skip_gain: float = 0.0
    centre_attn: bool = False
    centre_attn_gain: float = 1.0  # yaml: ${model.attn_mat_resid_gain}

    # --- value / projection (Eq. 6): W = resid*W_train + skip*W_init ---------
    value_resid_gain: float = 1.0
    value_skip_gain: Optional[float] = None  # None: plain linear, no reparameterisation
    first_layer_value_resid_gain: Optional[float] = None  # overrides value_resid_gain in layer 0
    proj_resid_gain: float = 1.0  # yaml: ${model.value_resid_gain}
    proj_skip_gain: Optional[float] = None
    last_layer_proj_resid_gain: Optional[float] = None  # overrides proj_resid_gain in layer n_layer-1

    # --- which gains are trainable ----------------------------------------
    trainable_attn_block_gains: bool = False
    trainable_mlp_block_gains: bool = False
    trainable_attn_mat_gains: bool = False
    trainable_value_gains: bool = False
    trainable_proj_gains: bool = False
    # clm's extension (not in the original yaml): GPT-2's trainable biases of
    # v_attn, attn.c_proj, mlp.c_fc and mlp.c_proj (the original freezes them
    # at zero).
    trainable_biases: bool = False

    # --- initialisation ------------------------------------------------------
    initializer_range: float = 0.02  # std of wte and wpe only
    val_proj_init_std: Optional[float] = None  # re-init of v_attn.weight and c_proj.weight
    query_init_std: Optional[float] = None  # re-init of the W^Q half of qk_attn
    key_init_std: Optional[float] = None  # re-init of the W^K half of qk_attn
    val_init_type: str = "normal"  # normal | orth | id
    proj_init_type: str = "normal"  # yaml: ${model.val_init_type}
    tie_valproj_init: Optional[str] = None  # None | last_block | all_blocks

    # --- MLP ---------------------------------------------------------------
    activation_function: str = "leaky_relu"
    lrelu_neg_slope: float = 0.0  # 0: ReLU
    mlp_proj_init_std: Optional[float] = None  # re-init of mlp.c_proj.weight

    # --- block topology -------------------------------------------------------
    parallel_layers: bool = False  # GPT-J parallel block

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_inner(self) -> int:
        return int(self.n_embd * self.mlp_width_mult)

    # Per-layer value / projection settings (the layer overrides applied).
    def value_resid_gain_at(self, layer: int) -> float:
        if self.first_layer_value_resid_gain is not None and layer == 0:
            return self.first_layer_value_resid_gain
        return self.value_resid_gain

    def proj_resid_gain_at(self, layer: int) -> float:
        if self.last_layer_proj_resid_gain is not None and layer == self.n_layer - 1:
            return self.last_layer_proj_resid_gain
        return self.proj_resid_gain

    @staticmethod
    def is_identity_layer(skip_gain, resid_gain, init_type) -> bool:
        # The original replaces the whole layer by nn.Identity (no parameters)
        # when it would compute exactly x: skip 1, resid 0, W_init = I.
        return skip_gain == 1 and resid_gain == 0 and init_type == "id"

    def check(self) -> None:
        """Rejects settings the original cannot build (a subset of Go's Validate)."""
        assert self.n_embd % self.n_head == 0, "n_embd must be divisible by n_head"
        assert self.norm_type in NORM_TYPES, self.norm_type
        assert self.norm_position in NORM_POSITIONS, self.norm_position
        assert self.qk_norm_type in QK_NORM_TYPES, self.qk_norm_type
        assert self.dot_norm_type in DOT_NORM_TYPES, self.dot_norm_type
        assert self.val_init_type in INIT_TYPES, self.val_init_type
        assert self.proj_init_type in INIT_TYPES, self.proj_init_type
        assert self.tie_valproj_init in TIE_VALPROJ, self.tie_valproj_init
        assert self.activation_function in ACTIVATIONS, self.activation_function
        assert self.context_length <= self.n_positions
        if self.tie_valproj_init is not None:
            assert self.value_skip_gain is not None and self.proj_skip_gain is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        cfg = cls(**d)
        # JSON writers may write 1 for 1.0; keep float knobs float.
        for f in fields(cls):
            v = getattr(cfg, f.name)
            if f.type in ("float", "Optional[float]") and isinstance(v, int) and not isinstance(v, bool):
                setattr(cfg, f.name, float(v))
        return cfg

    @classmethod
    def from_json(cls, path: str) -> "Config":
        with open(path) as fh:
            return cls.from_dict(json.load(fh))


# ---------------------------------------------------------------------------
# Presets: the original config/model/*.yaml, resolved. LINKS are the yaml's
# interpolations (${model.x}); an override of the source key moves the linked
# key too unless that key is overridden itself, as hydra does.
# ---------------------------------------------------------------------------

DEFAULT_LINKS = {
    "proj_resid_gain": "value_resid_gain",
    "centre_attn_gain": "attn_mat_resid_gain",
    "proj_init_type": "val_init_type",
}

_SKIPLESS = dict(
    attn_block_skip_gain=0.0,
    mlp_block_resid_gain=0.1,
    attn_mat_skip_gain=1.0,
    value_resid_gain=0.0,
    value_skip_gain=1.0,
    first_layer_value_resid_gain=1.0,
    proj_resid_gain=0.0,
    proj_skip_gain=1.0,
    centre_attn=True,
    centre_attn_gain=1.0,
    trainable_attn_block_gains=True,
    trainable_mlp_block_gains=True,
    trainable_attn_mat_gains=True,
    trainable_value_gains=True,
    trainable_proj_gains=True,
    query_init_std=0.0,
    val_init_type="id",
    proj_init_type="id",
)

# name -> (overrides of Config(), links)
PRESETS: Dict[str, Tuple[dict, dict]] = {
    # Pre-LN baseline (RMSNorm), Fig. 2 of the ICLR paper.
    "default": ({}, DEFAULT_LINKS),
    # Parallel Pre-LN block (GPT-J).
    "default-parallel": (dict(attn_block_skip_gain=0.0, parallel_layers=True), DEFAULT_LINKS),
    # SAS: skipless with shaped attention and identity V/P (Fig. 9 in exp_scripts).
    "skipless": (_SKIPLESS, DEFAULT_LINKS),
    # SAS-P: parallel skipless (Fig. 10 in exp_scripts).
    "skipless-parallel": (dict(_SKIPLESS, mlp_block_skip_gain=0.0, parallel_layers=True), DEFAULT_LINKS),
    # OP block (He et al. 2024): no norm except layer-0 ln_1, QK-RMSNorm, down-weighted residuals.
    "op": (
        dict(mlp_block_resid_gain=0.2, attn_block_resid_gain=0.2, norm_type="none", qk_norm_type="rmsnorm"),
        dict(DEFAULT_LINKS, attn_block_resid_gain="mlp_block_resid_gain"),
    ),
    # Value-SkipInit (exp_scripts/baseline_comparison.sh): skipless with plain
    # orthogonal V and P (proj_init_type follows val_init_type).
    "value-skipinit": (
        dict(_SKIPLESS, value_skip_gain=None, proj_skip_gain=None, val_init_type="orth", proj_init_type="orth"),
        DEFAULT_LINKS,
    ),
}


def preset(name: str, **overrides) -> Config:
    """Returns a preset with overrides applied, following the yaml links."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; have {sorted(PRESETS)}")
    base, links = PRESETS[name]
    d = Config().to_dict()
    d.update(base)
    d.update(overrides)
    for dst, src in links.items():
        if src in overrides and dst not in overrides:
            d[dst] = d[src]
    return Config.from_dict(d)


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """y = scale * x / (||x||_2 * d^(-1/2) + eps): eps is added to the RMS, not
    inside the square root. The parameter is named `scale` (not `weight`)."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.d = d
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        rms = x.norm(2, dim=-1, keepdim=True) * self.d ** (-0.5)
        return self.scale * (x / (rms + self.eps))


def make_norm(kind: str, d: int, eps: float) -> nn.Module:
    if kind == "ln":
        return nn.LayerNorm(d, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(d, eps)
    if kind == "none":
        return nn.Identity()
    raise ValueError(kind)


class Conv1D(nn.Module):
    """Linear layer with weight stored [in, out] (HF Conv1D layout): y = x W + b.

    Plain form (skip_gain None): W is a parameter, init normal(0, 0.02),
    orthogonal or identity.

    Reparameterised form (Eq. 6): W = resid_gain * W_train + skip_gain * W_init,
    W_train zero-init, W_init a fixed buffer `id` (identity, orthogonal, or
    normal(0, 1/sqrt(d))); both gains are [1] parameters, trainable per flag.
    If resid_gain == 0 and init is id, the layer computes b + skip_gain * x
    (the test reads the gain's current value at every forward), so W_train
    and resid_gain receive no gradient.

    `bias` always exists; without a bias it is a frozen zero parameter.
    Registration order (as in the original): bias, resid_gain, skip_gain, weight.
    """

    def __init__(self, n_out, n_in, resid_gain=None, skip_gain=None, trainable_gains=False, init_type="normal", bias=True):
        super().__init__()
        self.n_out = n_out
        self.bias = nn.Parameter(torch.zeros(n_out), requires_grad=bias)
        self.init_type = init_type
        self.skip = skip_gain is not None
        if not self.skip:
            self.weight = nn.Parameter(torch.empty(n_in, n_out))
            with torch.no_grad():
                if init_type == "orth":
                    nn.init.orthogonal_(self.weight)
                elif init_type == "id":
                    self.weight.copy_(torch.eye(n_in))
                elif init_type == "normal":
                    self.weight.normal_(0.0, LINEAR_INIT_STD)
                else:
                    raise ValueError(init_type)
        else:
            assert n_in == n_out, "a reparameterised layer must be square"
            self.resid_gain = nn.Parameter(torch.tensor([float(resid_gain)]), requires_grad=trainable_gains)
            self.skip_gain = nn.Parameter(torch.tensor([float(skip_gain)]), requires_grad=trainable_gains)
            self.weight = nn.Parameter(torch.zeros(n_in, n_in))
            if init_type == "orth":
                w_init = nn.init.orthogonal_(torch.empty(n_in, n_in))
            elif init_type == "id":
                w_init = torch.eye(n_in)
            elif init_type == "normal":
                w_init = torch.empty(n_in, n_in).normal_(0.0, 1.0 / math.sqrt(n_in))
            else:
                raise ValueError(init_type)
            self.register_buffer("id", w_init)

    # Quantisation hook (quant_ref.py), off by default: an object with
    # linear(name, x2, w) -> (x2, w) that sees the flattened input and the
    # effective weight of the matrix product; `qname` is the module's path.
    quant = None
    qname = ""
    # zero_gain_shortcut: test resid_gain at every forward (as clm does).
    # The benchmarks' peers turn it off where the gain starts non-zero, so
    # that torch.compile meets no .item() (a graph break); the matrix
    # product then gives the same values, should the gain reach 0.
    zero_gain_shortcut = True

    def forward(self, x):
        out_shape = x.shape[:-1] + (self.n_out,)
        x2 = x.reshape(-1, x.shape[-1])
        if self.skip and self.zero_gain_shortcut and self.init_type == "id" and self.resid_gain.item() == 0:
            return (self.bias + x2 * self.skip_gain).reshape(out_shape)  # no matrix product
        if self.skip:
            w = self.resid_gain * self.weight + self.skip_gain * self.id  # Eq. 6
        else:
            w = self.weight
        if self.quant is not None:
            x2, w = self.quant.linear(self.qname, x2, w)
        return torch.addmm(self.bias, x2, w).reshape(out_shape)


def activation(name: str, slope: float):
    """MLP nonlinearities by HF ACT2FN name, written from their formulas."""
    if name == "leaky_relu":
        return lambda x: torch.where(x >= 0.0, x, x * slope)
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu  # exact (erf)
    if name == "gelu_new":  # tanh approximation, written out as in GPT-2
        c = math.sqrt(2.0 / math.pi)
        return lambda x: 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu_fast":
        return lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name in ("silu", "swish"):
        return F.silu
    if name == "tanh":
        return torch.tanh
    if name == "sigmoid":
        return torch.sigmoid
    raise ValueError(f"unknown activation_function {name!r}")


class Attention(nn.Module):
    """Causal self-attention with shaped attention (Eq. 5) and optionally
    reparameterised / identity value and projection (Eq. 6).

    Per head:  P = softmax(mask(dot_norm(q_norm(Q) k_norm(K)^T / sqrt(hd))))
               A = attn_mat_resid_gain * P
                   [+ attn_mat_skip_gain * I - centre_attn_gain * C]  if centre_attn   (Eq. 5)
               out = c_proj(merge(A V))
    where C is the causal uniform matrix, C[i, j] = 1/(i+1) for j <= i (0-based).

    `impl` selects how A V is computed: "materialised" (the default, as the
    original: P and A are [B, H, T, T] tensors) or "sdpa", the same sum by
    linearity without A: attn_mat_resid_gain * SDPA(Q, K, V) [+ attn_mat_skip_gain * V
    - centre_attn_gain * cumsum(V) / (i+1)] (C V is the causal running mean of
    V). sdpa needs dot_norm_type none and no attention dropout in training, and
    reports no probabilities (set_attention; the peer benchmarks use it).
    """

    impl = "materialised"

    def __init__(self, cfg: Config, layer_idx: int):
        super().__init__()
        d, H = cfg.n_embd, cfg.n_head
        self.n_head, self.head_dim, self.n_embd = H, cfg.head_dim, d
        self.centre_attn = cfg.centre_attn
        self.dot_norm_type = cfg.dot_norm_type

        # Registration order equals the original: own gains first (they are
        # yielded first by named_parameters anyway), then children.
        self.qk_attn = Conv1D(2 * d, d)  # [d, 2d]: columns [:d] are W^Q, [d:] W^K

        v_resid = cfg.value_resid_gain_at(layer_idx)
        if Config.is_identity_layer(cfg.value_skip_gain, v_resid, cfg.val_init_type):
            self.v_attn = nn.Identity()
        else:
            self.v_attn = Conv1D(d, d, resid_gain=v_resid, skip_gain=cfg.value_skip_gain,
                                 trainable_gains=cfg.trainable_value_gains, init_type=cfg.val_init_type,
                                 bias=cfg.trainable_biases)

        p_resid = cfg.proj_resid_gain_at(layer_idx)
        if Config.is_identity_layer(cfg.proj_skip_gain, p_resid, cfg.proj_init_type):
            self.c_proj = nn.Identity()
        else:
            self.c_proj = Conv1D(d, d, resid_gain=p_resid, skip_gain=cfg.proj_skip_gain,
                                 trainable_gains=cfg.trainable_proj_gains, init_type=cfg.proj_init_type,
                                 bias=cfg.trainable_biases)

        with torch.no_grad():
            w_q, w_k = self.qk_attn.weight.split(d, dim=1)
            if cfg.query_init_std is not None:
                w_q.normal_(0.0, cfg.query_init_std)
            if cfg.key_init_std is not None:
                w_k.normal_(0.0, cfg.key_init_std)
            if cfg.val_proj_init_std is not None:
                self.v_attn.weight.normal_(0.0, cfg.val_proj_init_std)
                self.c_proj.weight.normal_(0.0, cfg.val_proj_init_std)

        if cfg.qk_norm_type == "rmsnorm":
            self.q_norm = RMSNorm(self.head_dim, cfg.layer_norm_epsilon)
            self.k_norm = RMSNorm(self.head_dim, cfg.layer_norm_epsilon)
        else:
            self.q_norm = nn.Identity()
            self.k_norm = nn.Identity()

        self.attn_dropout = nn.Dropout(cfg.attn_pdrop)
        self.resid_dropout = nn.Dropout(cfg.resid_pdrop)

        g = torch.ones(1, H, 1, 1)
        self.attn_mat_resid_gain = nn.Parameter(cfg.attn_mat_resid_gain * g, requires_grad=cfg.trainable_attn_mat_gains)
        self.attn_mat_skip_gain = nn.Parameter(cfg.attn_mat_skip_gain * g, requires_grad=cfg.trainable_attn_mat_gains)
        self.centre_attn_gain = nn.Parameter(cfg.centre_attn_gain * g,
                                             requires_grad=cfg.trainable_attn_mat_gains and cfg.centre_attn_gain != 0)

    def _heads(self, t):  # [B, T, d] -> [B, H, T, hd]
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x):
        B, T, d = x.shape
        q, k = self.qk_attn(x).split(d, dim=2)  # [B, T, d] each
        v = self.v_attn(x)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # [B, H, T, hd]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.impl == "sdpa":
            return self._sdpa(q, k, v, B, T, d), None

        logits = torch.matmul(q, k.transpose(-1, -2))  # [B, H, T, T]
        logits = logits / torch.full([], self.head_dim ** 0.5, dtype=logits.dtype)
        if self.dot_norm_type == "tanh":
            up = torch.promote_types(logits.dtype, torch.float32)
            logits = TANH_SOFTCAP * torch.tanh(logits.to(up) / TANH_SOFTCAP)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        logits = torch.where(causal, logits, torch.full([], torch.finfo(logits.dtype).min, dtype=logits.dtype))
        probs = torch.softmax(logits, dim=-1)  # the "attention probabilities" reported

        # Shaped attention, Eq. 5.
        A = self.attn_mat_resid_gain * probs.to(v.dtype)
        if self.centre_attn:
            eye = torch.eye(T, dtype=v.dtype, device=x.device)
            C = causal.to(v.dtype) / torch.arange(1, T + 1, dtype=v.dtype, device=x.device).view(-1, 1)
            A = A + (self.attn_mat_skip_gain * eye - self.centre_attn_gain * C)
        A = self.attn_dropout(A)

        out = torch.matmul(A, v)  # [B, H, T, hd]
        out = out.permute(0, 2, 1, 3).reshape(B, T, d)
        out = self.resid_dropout(self.c_proj(out))
        return out, probs

    def _sdpa(self, q, k, v, B, T, d):
        """A V of Eq. 5 without the T×T matrices (impl "sdpa")."""
        if self.dot_norm_type != "none":
            raise ValueError("attention impl sdpa: dot_norm_type must be none")
        if self.training and getattr(self.attn_dropout, "p", 0) > 0:
            raise ValueError("attention impl sdpa: attn_pdrop must be 0 in training")
        # SDPA's default scale is 1/sqrt(head_dim), as the materialised logits.
        out = self.attn_mat_resid_gain.to(v.dtype) * F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if self.centre_attn:
            pos = torch.arange(1, T + 1, dtype=v.dtype, device=v.device).view(-1, 1)
            out = out + self.attn_mat_skip_gain * v - self.centre_attn_gain * (v.cumsum(dim=2) / pos)
        out = out.permute(0, 2, 1, 3).reshape(B, T, d)
        return self.resid_dropout(self.c_proj(out))


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d, inner = cfg.n_embd, cfg.n_inner
        self.c_fc = Conv1D(inner, d, bias=cfg.trainable_biases)  # [d, inner], a frozen zero bias unless trainable_biases
        self.c_proj = Conv1D(d, inner, bias=cfg.trainable_biases)  # [inner, d]
        self.act = activation(cfg.activation_function, cfg.lrelu_neg_slope)
        self.dropout = nn.Dropout(cfg.resid_pdrop)
        if cfg.mlp_proj_init_std is not None:
            with torch.no_grad():
                self.c_proj.weight.normal_(0.0, cfg.mlp_proj_init_std)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """One configurable block.

    Sequential (parallel_layers false), pre-norm:
        h = attn_block_resid_gain * attn(ln_1(x)) [+ attn_block_skip_gain * x]
        y = mlp_block_resid_gain  * mlp(ln_2(h))  [+ mlp_block_skip_gain  * h]
    Parallel (GPT-J):
        y = mlp_block_resid_gain * mlp(ln_1(x)) + attn_block_resid_gain * attn(ln_1(x))
            [+ mlp_block_skip_gain * x]
    A skip term [...] exists iff its configured gain is non-zero. With
    norm_position post, the norm is applied to the stream *before* it is used
    as both skip and branch input: x <- ln_1(x) at block entry, h <- ln_2(h)
    between the sub-blocks (the block output itself is not normalised).
    """

    def __init__(self, cfg: Config, layer_idx: int):
        super().__init__()
        d = cfg.n_embd
        self.parallel = cfg.parallel_layers
        self.norm_position = cfg.norm_position
        tb, tm = cfg.trainable_attn_block_gains, cfg.trainable_mlp_block_gains
        # Gains first: the original registers them after the children, but a
        # module's own parameters come first in named_parameters either way.
        self.attn_block_resid_gain = nn.Parameter(torch.tensor([float(cfg.attn_block_resid_gain)]), requires_grad=tb)
        self.attn_block_skip_gain = nn.Parameter(torch.tensor([float(cfg.attn_block_skip_gain)]),
                                                 requires_grad=tb and not self.parallel)
        self.mlp_block_resid_gain = nn.Parameter(torch.tensor([float(cfg.mlp_block_resid_gain)]), requires_grad=tm)
        self.mlp_block_skip_gain = nn.Parameter(torch.tensor([float(cfg.mlp_block_skip_gain)]),
                                                requires_grad=tm and not self.parallel)
        self.add_attn_skip = cfg.attn_block_skip_gain != 0
        self.add_mlp_skip = cfg.mlp_block_skip_gain != 0

        if cfg.norm_type == "none":
            # Layer 0 keeps a LayerNorm to normalise the embedding; no ln_2.
            self.ln_1 = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon) if layer_idx == 0 else nn.Identity()
            self.ln_2 = nn.Identity()
        else:
            self.ln_1 = make_norm(cfg.norm_type, d, cfg.layer_norm_epsilon)
            self.ln_2 = make_norm(cfg.norm_type, d, cfg.layer_norm_epsilon)
        self.attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)

    def forward(self, x):
        if self.norm_position == "post":
            x = self.ln_1(x)
        skip = x
        if self.norm_position == "pre":
            x = self.ln_1(x)
        a, probs = self.attn(x)
        if self.parallel:
            h = self.mlp_block_resid_gain * self.mlp(x) + self.attn_block_resid_gain * a
            if self.add_mlp_skip:
                h = h + self.mlp_block_skip_gain * skip
            return h, probs
        h = self.attn_block_resid_gain * a
        if self.add_attn_skip:
            h = h + self.attn_block_skip_gain * skip
        if self.norm_position == "post":
            h = self.ln_2(h)
        skip = h
        if self.norm_position == "pre":
            h = self.ln_2(h)
        y = self.mlp_block_resid_gain * self.mlp(h)
        if self.add_mlp_skip:
            y = y + self.mlp_block_skip_gain * skip
        return y, probs


class Transformer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        with torch.no_grad():
            self.wte.weight.normal_(0.0, cfg.initializer_range)
            self.wpe.weight.normal_(0.0, cfg.initializer_range)
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.h = nn.ModuleList()
        for i in range(cfg.n_layer):
            self.h.append(Block(cfg, i))
            tie_valproj(cfg, self.h, i)
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)


def tie_valproj(cfg: Config, blocks: nn.ModuleList, i: int) -> None:
    """tie_valproj_init, applied right after block i is built.

    all_blocks: P_i_init = V_i_init^T in every layer.
    last_block: only the last layer's P_init changes, to
        (V_0 P_0 V_1 P_1 ... V_{L-2} P_{L-2} V_{L-1})^T   (all W_init),
    so that the product of all W_init along the skip path is the identity for
    orthogonal inits. With n_layer 1 it does nothing (as in the original)."""
    if cfg.tie_valproj_init is None:
        return
    attn = blocks[i].attn
    if cfg.tie_valproj_init == "all_blocks":
        attn.c_proj.id.copy_(attn.v_attn.id.T)
        return
    L = cfg.n_layer
    if i == 0:
        blocks._tie_mat = attn.v_attn.id.clone() @ attn.c_proj.id.clone()
        return
    m = blocks._tie_mat @ attn.v_attn.id.clone()
    if i < L - 1:
        m = m @ attn.c_proj.id.clone()
        blocks._tie_mat = m
    else:
        attn.c_proj.id.copy_(m.T)
        del blocks._tie_mat


class GPT(nn.Module):
    """GPT2LMHeadModel with the paper's blocks; lm_head tied to wte."""

    def __init__(self, cfg: Config):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.transformer = Transformer(cfg)
        self.quant = None

    def set_quant(self, q) -> None:
        """Installs a quantisation hook (None removes it): q.linear(name, x2,
        w) on every linear layer with a matrix product, q.residual(layer, h)
        on the stream after every block (see quant_ref.py)."""
        self.quant = q
        for name, mod in self.named_modules():
            if isinstance(mod, Conv1D):
                mod.quant, mod.qname = q, name

    def forward(self, input_ids, labels=None, pad_id: Optional[int] = None,
                output_hidden_states=False, output_attentions=False, loss_only=False):
        """Returns dict(logits, loss, hidden_states, attentions).

        loss: mean cross entropy of logits[:, :-1] against labels[:, 1:],
        ignoring labels equal to -100 and (DataCollatorForLanguageModeling
        semantics) labels equal to pad_id (= eos id in the original).
        loss_only (with labels; the benchmarks' training step): ln_f and the
        head run only at the T-1 positions that have a target, and logits is
        None: the same loss and gradients without the last position's logits
        and the copy of the slice logits[:, :-1]; the positions are the
        slice wpe.weight[:T] rather than a lookup of arange(T) (the same
        values, and a slice's backward rather than embedding_dense_backward).
        hidden_states (HF semantics): L+1 tensors, the inputs of blocks
        0..L-1 (entry 0 = embedding output) then ln_f(last block output).
        attentions: per layer, the softmax probabilities P (before Eq. 5 gains)."""
        t = self.transformer
        B, T = input_ids.shape
        if loss_only:
            x = t.drop(t.wte(input_ids) + t.wpe.weight[:T])  # rows 0..T-1: a slice, no lookup
        else:
            x = t.drop(t.wte(input_ids) + t.wpe(torch.arange(T, device=input_ids.device)))
        hidden, attns = [], []
        for i, block in enumerate(t.h):
            if output_hidden_states:
                hidden.append(x)
            x, probs = block(x)
            if output_attentions and probs is None:
                raise ValueError("output_attentions needs the materialised attention (set_attention)")
            if self.quant is not None:
                x = self.quant.residual(i, x)
            if output_attentions:
                attns.append(probs)
        lab = labels
        if lab is not None and pad_id is not None:
            lab = lab.masked_fill(lab == pad_id, -100)
        if loss_only and lab is not None and not output_hidden_states:
            h = t.ln_f(x[:, :-1])
            logits = h @ t.wte.weight.T  # [B, T-1, V], contiguous
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1), ignore_index=-100)
            return dict(logits=None, loss=loss, hidden_states=None, attentions=attns or None)
        x = t.ln_f(x)
        if output_hidden_states:
            hidden.append(x)
        logits = x @ t.wte.weight.T  # tied head, [B, T, V]
        loss = None
        if lab is not None:
            loss = F.cross_entropy(logits[:, :-1, :].reshape(-1, logits.shape[-1]),
                                   lab[:, 1:].reshape(-1), ignore_index=-100)
        return dict(logits=logits, loss=loss, hidden_states=hidden or None, attentions=attns or None)

    def weights(self) -> Dict[str, torch.Tensor]:
        """All parameters and persistent buffers (W_init `.id`), contiguous."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def load_weights(self, tensors: Dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(tensors))
        extra = sorted(set(tensors) - set(own))
        if missing or extra:
            raise ValueError(f"weights do not match the config: missing {missing[:8]}, unexpected {extra[:8]}")
        for k, v in tensors.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"{k}: shape {tuple(v.shape)}, want {tuple(own[k].shape)}")
        self.load_state_dict(tensors, strict=True)

    def perturb(self, std: float, generator: torch.Generator) -> None:
        """Adds normal(0, std) noise to every parameter (frozen ones too) so
        that tests are not blind to zero-init weights and unit gains. Buffers
        (W_init) are left alone, and so is a reparameterised layer's resid_gain
        that is exactly 0 with init id: that zero selects the x*skip_gain path."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(".resid_gain"):
                    mod = self.get_submodule(name.rsplit(".", 1)[0])
                    if mod.init_type == "id" and p.item() == 0:
                        continue
                p.add_(std * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def set_attention(model: nn.Module, impl: str) -> nn.Module:
    """Sets every Attention of model to impl ("materialised" or "sdpa")."""
    if impl not in ("materialised", "sdpa"):
        raise ValueError(f"unknown attention impl {impl!r}")
    for mod in model.modules():
        if isinstance(mod, Attention):
            mod.impl = impl
    return model


def count_params(model: nn.Module) -> Tuple[int, int]:
    """(all parameters as the original prints them, trainable ones); tied
    weights once; buffers excluded."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def build(cfg: Config, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


def load_tensors(path: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(path)


def save_tensors(tensors: Dict[str, torch.Tensor], path: str, metadata: Optional[dict] = None) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def cmd_forward(a):
    torch.use_deterministic_algorithms(True)
    cfg = Config.from_json(a.config)
    dtype = DTYPES[a.dtype]
    model = build(cfg)
    model.load_weights(load_tensors(a.weights))
    model.to(dtype)
    model.train(a.train_mode)
    batch = load_tensors(a.batch)
    ids = batch["input_ids"].long()
    labels = batch["labels"].long() if "labels" in batch else ids
    out = model(ids, labels=labels, pad_id=a.pad_id, output_hidden_states=a.hidden, output_attentions=a.attn)
    out["loss"].backward()
    res = {"logits": out["logits"], "loss": out["loss"].reshape(())}
    no_grad = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            no_grad.append(name)
        else:
            res["grad." + name] = p.grad
    if a.hidden:
        for i, h in enumerate(out["hidden_states"]):
            res[f"hidden.{i}"] = h
    if a.attn:
        for i, p in enumerate(out["attentions"]):
            res[f"attn.{i}"] = p
    meta = {"grad_none": json.dumps(no_grad), "dtype": a.dtype, "config": json.dumps(cfg.to_dict())}
    save_tensors(res, a.out, metadata=meta)
    print(json.dumps({"loss": out["loss"].item(), "grad_none": no_grad}))


def cmd_init(a):
    cfg = Config.from_json(a.config)
    model = build(cfg, a.seed)
    if a.perturb:
        g = torch.Generator().manual_seed(a.seed + 1)
        model.perturb(a.perturb, g)
    save_tensors(model.weights(), a.out, metadata={"config": json.dumps(cfg.to_dict())})


def cmd_params(a):
    cfg = Config.from_json(a.config) if a.config else preset(a.preset)
    with torch.device("meta"):
        model = GPT(cfg) if cfg.tie_valproj_init is None else None
    if model is None:  # tying multiplies matrices; build for real
        model = build(cfg)
    total, trainable = count_params(model)
    if a.list:
        for name, p in model.named_parameters():
            print(f"param  {name} {list(p.shape)} {'trainable' if p.requires_grad else 'frozen'}")
        for name, b in model.named_buffers():
            print(f"buffer {name} {list(b.shape)}")
    print(json.dumps({"params": total, "trainable": trainable}))


def cmd_describe(a):
    """One JSON line per config: the config as read, parameters in
    named_parameters order as [name, shape, trainable], buffers as
    [name, shape], and the counts."""
    for path in a.configs:
        cfg = Config.from_json(path)
        model = build(cfg)
        total, trainable = count_params(model)
        print(json.dumps({
            "config": cfg.to_dict(),
            "params": [[n, list(p.shape), p.requires_grad] for n, p in model.named_parameters()],
            "buffers": [[n, list(b.shape)] for n, b in model.named_buffers()],
            "total": total,
            "trainable": trainable,
        }))


def cmd_presets(a):
    print(json.dumps({name: preset(name).to_dict() for name in PRESETS}))


def cmd_preset(a):
    overrides = {}
    for kv in a.set or []:
        k, _, v = kv.partition("=")
        overrides[k] = json.loads(v)
    cfg = preset(a.name, **overrides)
    text = json.dumps(cfg.to_dict(), indent=2)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)



def cmd_selftest(a):
    """Checks the reference against Hugging Face GPT-2 (norm ln, gelu_new,
    Pre-LN, sequential): same logits, loss and hidden states in float64."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    V, P, d, L, H = 101, 64, 48, 3, 4
    cfg = preset("default", norm_type="ln", activation_function="gelu_new", n_layer=L, n_embd=d,
                 n_head=H, vocab_size=V, n_positions=P, context_length=32)
    hf_cfg = GPT2Config(vocab_size=V, n_positions=P, n_embd=d, n_layer=L, n_head=H, activation_function="gelu_new",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        bos_token_id=0, eos_token_id=0)
    hf_cfg._attn_implementation = "eager"
    hf = GPT2LMHeadModel(hf_cfg).double().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = GPT(cfg).double().eval()
    h = hf.state_dict()
    sd = dict(ours.state_dict())
    for k in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"):
        sd["transformer." + k] = h["transformer." + k]
    for i in range(L):
        p = f"transformer.h.{i}."
        for n in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_proj.weight", "attn.c_proj.bias",
                  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
            sd[p + n] = h[p + n]
        w, b = h[p + "attn.c_attn.weight"], h[p + "attn.c_attn.bias"]  # [d, 3d] = [W_q | W_k | W_v]
        sd[p + "attn.qk_attn.weight"], sd[p + "attn.qk_attn.bias"] = w[:, : 2 * d], b[: 2 * d]
        sd[p + "attn.v_attn.weight"], sd[p + "attn.v_attn.bias"] = w[:, 2 * d:], b[2 * d:]
    ours.load_weights({k: v.contiguous() for k, v in sd.items()})
    ids = torch.randint(0, V, (2, 32))
    a_out = hf(ids, labels=ids, output_hidden_states=True)
    b_out = ours(ids, labels=ids, output_hidden_states=True)
    errs = {
        "logits": (a_out.logits - b_out["logits"]).abs().max().item(),
        "loss": abs(a_out.loss.item() - b_out["loss"].item()),
        "hidden": max((x - y).abs().max().item() for x, y in zip(a_out.hidden_states, b_out["hidden_states"])),
    }
    print(json.dumps(errs))
    # HF computes the loss in float32 upcast; everything else in float64.
    ok = errs["logits"] < 1e-10 and errs["hidden"] < 1e-10 and errs["loss"] < 1e-5
    if not ok:
        raise SystemExit("selftest: reference differs from HF GPT-2")
    print("selftest: matches HF GPT-2")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("forward", help="forward + backward on exact weights")
    f.add_argument("--config", required=True)
    f.add_argument("--weights", required=True)
    f.add_argument("--batch", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    f.add_argument("--hidden", action="store_true")
    f.add_argument("--attn", action="store_true")
    f.add_argument("--pad-id", type=int, default=None, help="labels equal to this id are ignored (eos in the original)")
    f.add_argument("--train-mode", action="store_true", help="model.train() (dropout on); default eval")
    f.set_defaults(fn=cmd_forward)

    i = sub.add_parser("init", help="original init (+ perturbation) to safetensors")
    i.add_argument("--config", required=True)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--perturb", type=float, default=0.0)
    i.add_argument("--out", required=True)
    i.set_defaults(fn=cmd_init)

    p = sub.add_parser("params", help="parameter count (tied head once)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config")
    g.add_argument("--preset")
    p.add_argument("--list", action="store_true")
    p.set_defaults(fn=cmd_params)

    s = sub.add_parser("preset", help="write a preset's config JSON")
    s.add_argument("name", choices=sorted(PRESETS))
    s.add_argument("--set", action="append", help="key=JSON value, e.g. n_layer=18 or value_skip_gain=null")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_preset)

    e = sub.add_parser("describe", help="JSON lines: config as read, parameter list, counts")
    e.add_argument("configs", nargs="+")
    e.set_defaults(fn=cmd_describe)

    e = sub.add_parser("presets", help="all presets as one JSON object")
    e.set_defaults(fn=cmd_presets)

    t = sub.add_parser("selftest", help="compare with HF GPT-2 (needs transformers)")
    t.set_defaults(fn=cmd_selftest)

    a = ap.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
