"""clm's GPT-2 block variants for transformers (remote code written by `clm export`).

The model is GPT-2 (token and position embeddings, L blocks, a final
LayerNorm, a head tied to the token embedding) whose block is the
configurable block of "Simplifying Transformer Blocks" (He & Hofmann, ICLR
2024), which also gives the OP block of "Understanding and Minimising Outlier
Features in Transformer Training" (He et al., NeurIPS 2024):

    Block.forward            the sequential and the parallel (GPT-J) block,
                             with gains on every skip and residual branch
    Attention.forward        shaped attention, Eq. 5:
                             A = attn_mat_resid_gain * softmax(QK^T/sqrt(d_h))
                                 + attn_mat_skip_gain * I - centre_attn_gain * C
    ReparamConv1D.forward    the reparameterised value and projection, Eq. 6:
                             W = resid_gain * W_train + skip_gain * W_init

Parameter names and layouts are clm's, which are the original code's Hugging
Face module tree: linear weights are [in, out] (GPT-2's Conv1D), W_q and W_k
are the columns of attn.qk_attn.weight, and the fixed W_init of Eq. 6 is the
buffer `<layer>.id`. Every value is computed as clm computes it, so the logits
equal clm's forward.

Loading and generating:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(DIR)
    ids = tok("def fib(n):", return_tensors="pt").input_ids
    out = model.generate(ids, do_sample=False, max_new_tokens=40)

There is no key/value cache: generate() runs the model on the whole sequence
at each step, cut to its last context_length tokens as `clm sample` does.
Padded batches are refused (clm's blocks are defined on unpadded sequences).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_clm import CLMConfig

# The cap of dot_norm_type = tanh: logits -> 30 * tanh(logits / 30).
TANH_SOFTCAP = 30.0


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """y = scale * x / (||x||_2 * d^(-1/2) + eps): eps is added to the RMS,
    not under the square root."""

    def __init__(self, d, eps):
        super().__init__()
        self.d, self.eps = d, eps
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        rms = x.norm(2, dim=-1, keepdim=True) * self.d ** (-0.5)
        return self.scale * (x / (rms + self.eps))


def make_norm(kind, d, eps):
    """ln (LayerNorm), rmsnorm, or none (the identity)."""
    if kind == "ln":
        return nn.LayerNorm(d, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(d, eps)
    return nn.Identity()


class Conv1D(nn.Module):
    """y = x W + b with W stored [in, out]. Without a bias (bias=False) the
    bias is a frozen zero, as in the original."""

    def __init__(self, n_out, n_in, bias=True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_out), requires_grad=bias)
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class ReparamConv1D(nn.Module):
    """The reparameterised value or projection of Eq. 6:

        y = x (resid_gain * W_train + skip_gain * W_init) + b

    W_train (`weight`) trains, W_init (the buffer `id`) is fixed, b is a frozen
    zero (unless trainable_biases) and the two gains are [1] parameters. When resid_gain is 0 and W_init
    is the identity, the layer is b + skip_gain * x (tested at every forward,
    as clm does), without a matrix product."""

    def __init__(self, d, resid_gain, skip_gain, trainable_gains, init_type, bias=False):
        super().__init__()
        self.init_type = init_type
        self.bias = nn.Parameter(torch.zeros(d), requires_grad=bias)
        self.resid_gain = nn.Parameter(torch.tensor([float(resid_gain)]), requires_grad=trainable_gains)
        self.skip_gain = nn.Parameter(torch.tensor([float(skip_gain)]), requires_grad=trainable_gains)
        self.weight = nn.Parameter(torch.zeros(d, d))
        self.register_buffer("id", torch.eye(d))  # W_init; the export holds its value

    def forward(self, x):
        x2 = x.reshape(-1, x.shape[-1])
        if self.init_type == "id" and self.resid_gain.item() == 0:
            return (self.bias + x2 * self.skip_gain).reshape(x.shape)
        w = self.resid_gain * self.weight + self.skip_gain * self.id  # Eq. 6
        return torch.addmm(self.bias, x2, w).reshape(x.shape)


def value_or_projection(cfg, skip_gain, resid_gain, init_type, trainable_gains):
    """The value or projection layer: a plain matrix when skip_gain is None,
    the identity when the layer would compute exactly x (skip 1, resid 0,
    W_init the identity), else Eq. 6."""
    d = cfg.n_embd
    if skip_gain is None:
        return Conv1D(d, d, bias=cfg.trainable_biases)
    if skip_gain == 1 and resid_gain == 0 and init_type == "id":
        return nn.Identity()
    return ReparamConv1D(d, resid_gain, skip_gain, trainable_gains, init_type, cfg.trainable_biases)


def activation(name, slope):
    """The MLP nonlinearity by transformers' ACT2FN name, plus leaky_relu with
    clm's slope (0: ReLU)."""
    if name == "leaky_relu":
        return lambda x: torch.where(x >= 0.0, x, x * slope)
    if name == "gelu_new":  # GPT-2's tanh approximation, written out
        c = math.sqrt(2.0 / math.pi)
        return lambda x: 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "gelu_fast":
        return lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    functions = {
        "relu": F.relu,
        "gelu": F.gelu,
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "silu": F.silu,
        "swish": F.silu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }
    if name not in functions:
        raise ValueError(f"unknown activation_function {name!r}")
    return functions[name]


# ---------------------------------------------------------------------------
# Attention (Eq. 5), MLP, block
# ---------------------------------------------------------------------------


class Attention(nn.Module):
    """Causal self-attention with shaped attention (Eq. 5), per head:

        P = softmax(mask(dot_norm(q_norm(Q) k_norm(K)^T / sqrt(d_h))))
        A = attn_mat_resid_gain * P [+ attn_mat_skip_gain * I - centre_attn_gain * C]
        out = c_proj(merge(A V))

    where C is the causal uniform matrix, C[i, j] = 1/(i+1) for j <= i, and the
    bracket is present when centre_attn is set. The gains are [1, H, 1, 1]."""

    def __init__(self, cfg, layer):
        super().__init__()
        d, H = cfg.n_embd, cfg.n_head
        self.n_head, self.head_dim = H, d // H
        self.centre_attn = cfg.centre_attn
        self.dot_norm_type = cfg.dot_norm_type

        self.qk_attn = Conv1D(2 * d, d)  # [d, 2d]: columns [:d] are W_q, [d:] W_k
        v_resid = cfg.value_resid_gain
        if cfg.first_layer_value_resid_gain is not None and layer == 0:
            v_resid = cfg.first_layer_value_resid_gain
        self.v_attn = value_or_projection(cfg, cfg.value_skip_gain, v_resid, cfg.val_init_type, cfg.trainable_value_gains)
        p_resid = cfg.proj_resid_gain
        if cfg.last_layer_proj_resid_gain is not None and layer == cfg.n_layer - 1:
            p_resid = cfg.last_layer_proj_resid_gain
        self.c_proj = value_or_projection(cfg, cfg.proj_skip_gain, p_resid, cfg.proj_init_type, cfg.trainable_proj_gains)

        qk_norm = cfg.qk_norm_type == "rmsnorm"
        self.q_norm = RMSNorm(self.head_dim, cfg.layer_norm_epsilon) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, cfg.layer_norm_epsilon) if qk_norm else nn.Identity()
        self.attn_dropout = nn.Dropout(cfg.attn_pdrop)
        self.resid_dropout = nn.Dropout(cfg.resid_pdrop)

        train = cfg.trainable_attn_mat_gains
        ones = torch.ones(1, H, 1, 1)
        self.attn_mat_resid_gain = nn.Parameter(cfg.attn_mat_resid_gain * ones, requires_grad=train)
        self.attn_mat_skip_gain = nn.Parameter(cfg.attn_mat_skip_gain * ones, requires_grad=train)
        self.centre_attn_gain = nn.Parameter(cfg.centre_attn_gain * ones, requires_grad=train and cfg.centre_attn_gain != 0)

    def heads(self, t):  # [B, T, d] -> [B, H, T, d_h]
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

    def forward(self, x):
        B, T, d = x.shape
        q, k = self.qk_attn(x).split(d, dim=2)
        v = self.v_attn(x)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        q, k = self.q_norm(q), self.k_norm(k)

        logits = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], self.head_dim**0.5, dtype=q.dtype)
        if self.dot_norm_type == "tanh":
            up = torch.promote_types(logits.dtype, torch.float32)
            logits = TANH_SOFTCAP * torch.tanh(logits.to(up) / TANH_SOFTCAP)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        logits = logits.masked_fill(~causal, torch.finfo(logits.dtype).min)
        probs = torch.softmax(logits, dim=-1)

        # Shaped attention, Eq. 5.
        A = self.attn_mat_resid_gain * probs.to(v.dtype)
        if self.centre_attn:
            eye = torch.eye(T, dtype=v.dtype, device=x.device)
            C = causal.to(v.dtype) / torch.arange(1, T + 1, dtype=v.dtype, device=x.device).view(-1, 1)
            A = A + (self.attn_mat_skip_gain * eye - self.centre_attn_gain * C)
        A = self.attn_dropout(A)

        out = torch.matmul(A, v).transpose(1, 2).reshape(B, T, d)
        return self.resid_dropout(self.c_proj(out)), probs


class MLP(nn.Module):
    """c_proj(act(c_fc(x))), with frozen zero biases unless trainable_biases."""

    def __init__(self, cfg):
        super().__init__()
        d, inner = cfg.n_embd, int(cfg.n_embd * cfg.mlp_width_mult)
        self.c_fc = Conv1D(inner, d, bias=cfg.trainable_biases)
        self.c_proj = Conv1D(d, inner, bias=cfg.trainable_biases)
        self.act = activation(cfg.activation_function, cfg.lrelu_neg_slope)
        self.dropout = nn.Dropout(cfg.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """The configurable block. Sequential, pre-norm:

        h = attn_block_resid_gain * attn(ln_1(x)) [+ attn_block_skip_gain * x]
        y = mlp_block_resid_gain  * mlp(ln_2(h))  [+ mlp_block_skip_gain  * h]

    Parallel (GPT-J):

        y = mlp_block_resid_gain * mlp(ln_1(x)) + attn_block_resid_gain * attn(ln_1(x))
            [+ mlp_block_skip_gain * x]

    A skip term [...] exists when its configured gain is not 0. With
    norm_position post the stream itself is normalised before it is used as
    skip and branch input: x <- ln_1(x) on entry, h <- ln_2(h) between the
    sub-blocks. With norm_type none only layer 0 has a norm, a LayerNorm ln_1
    on the embedding."""

    def __init__(self, cfg, layer):
        super().__init__()
        self.parallel = cfg.parallel_layers
        self.post = cfg.norm_position == "post"
        tb, tm = cfg.trainable_attn_block_gains, cfg.trainable_mlp_block_gains

        def gain(v, trainable):
            return nn.Parameter(torch.tensor([float(v)]), requires_grad=trainable)

        self.attn_block_resid_gain = gain(cfg.attn_block_resid_gain, tb)
        self.attn_block_skip_gain = gain(cfg.attn_block_skip_gain, tb and not self.parallel)
        self.mlp_block_resid_gain = gain(cfg.mlp_block_resid_gain, tm)
        self.mlp_block_skip_gain = gain(cfg.mlp_block_skip_gain, tm and not self.parallel)
        self.attn_skip = cfg.attn_block_skip_gain != 0
        self.mlp_skip = cfg.mlp_block_skip_gain != 0

        d, eps = cfg.n_embd, cfg.layer_norm_epsilon
        if cfg.norm_type == "none":
            self.ln_1 = nn.LayerNorm(d, eps=eps) if layer == 0 else nn.Identity()
            self.ln_2 = nn.Identity()
        else:
            self.ln_1 = make_norm(cfg.norm_type, d, eps)
            self.ln_2 = make_norm(cfg.norm_type, d, eps)
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x):
        if self.post:
            x = self.ln_1(x)
        skip = x
        if not self.post:
            x = self.ln_1(x)
        a, probs = self.attn(x)
        if self.parallel:
            h = self.mlp_block_resid_gain * self.mlp(x) + self.attn_block_resid_gain * a
            if self.mlp_skip:
                h = h + self.mlp_block_skip_gain * skip
            return h, probs

        h = self.attn_block_resid_gain * a
        if self.attn_skip:
            h = h + self.attn_block_skip_gain * skip
        if self.post:
            h = self.ln_2(h)
        skip = h
        if not self.post:
            h = self.ln_2(h)
        y = self.mlp_block_resid_gain * self.mlp(h)
        if self.mlp_skip:
            y = y + self.mlp_block_skip_gain * skip
        return y, probs


class Transformer(nn.Module):
    """Embeddings, blocks and the final LayerNorm (GPT-2's `transformer`)."""

    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.h = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)


# ---------------------------------------------------------------------------
# The transformers model
# ---------------------------------------------------------------------------


class CLMPreTrainedModel(PreTrainedModel):
    config_class = CLMConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]

    def _init_weights(self, module):
        # clm initialises in training; an export carries every weight.
        pass


class CLMForCausalLM(CLMPreTrainedModel, GenerationMixin):
    """GPT-2 with clm's blocks and the head tied to the token embedding."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, labels=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, return_dict=True, **kwargs):
        """Logits [B, T, V]; with labels, the mean cross entropy of
        logits[:, :-1] against labels[:, 1:], ignoring -100 (clm's rule; clm's
        training and evaluation also set labels equal to the eos token to
        -100, as the original's collator does). hidden_states are the inputs
        of the blocks, then ln_f of the last output; attentions the softmax P
        of each layer (before the Eq. 5 gains)."""
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("clm models compute unpadded sequences: attention_mask must be all ones")
        t = self.transformer
        T = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0)
        x = t.drop(t.wte(input_ids) + t.wpe(position_ids))
        hidden, attentions = [], []
        for block in t.h:
            hidden.append(x)
            x, probs = block(x)
            attentions.append(probs)
        x = t.ln_f(x)
        hidden.append(x)
        logits = self.lm_head(x)

        loss = None
        if labels is not None:
            V = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1, :].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
        out = CausalLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        """Every generation step runs the whole sequence (there is no cache),
        cut to its last context_length tokens as `clm sample` does."""
        n = self.config.context_length
        if attention_mask is not None:
            attention_mask = attention_mask[:, -n:]
        return {"input_ids": input_ids[:, -n:], "attention_mask": attention_mask}


__all__ = ["CLMConfig", "CLMForCausalLM", "CLMPreTrainedModel"]
