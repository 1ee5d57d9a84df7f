"""Configuration of a clm model for transformers (remote code written by `clm export`).

The keys are GPT2Config's (sizes, dropouts, special tokens) plus every knob of
the block of "Simplifying Transformer Blocks" (He & Hofmann, ICLR 2024) and of
the OP block of "Understanding and Minimising Outlier Features in Transformer
Training" (He et al., NeurIPS 2024), under the original code's yaml names
(config/model/default.yaml). The defaults are the `default` preset; an export
writes every key, so they only matter for a config built by hand.
"""

from transformers import PreTrainedConfig


class CLMConfig(PreTrainedConfig):
    model_type = "clm"
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    # --- sizes ------------------------------------------------------------
    vocab_size: int = 52000
    n_positions: int = 1024  # rows of the position embedding
    context_length: int = 128  # training length; generate() sees the last context_length tokens
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    mlp_width_mult: float = 4.0  # MLP width int(n_embd * mlp_width_mult)
    n_inner: int | None = None  # that width, written for tools that read GPT2Config

    # --- normalisation ----------------------------------------------------
    norm_type: str = "rmsnorm"  # ln | rmsnorm | none (none keeps a LayerNorm as ln_1 of layer 0)
    norm_position: str = "pre"  # pre | post
    qk_norm_type: str = "none"  # none | rmsnorm (per head, on queries and keys)
    dot_norm_type: str = "none"  # none | tanh (30 * tanh(logits / 30))
    layer_norm_epsilon: float = 1e-5

    # --- dropout ----------------------------------------------------------
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    embd_pdrop: float = 0.0

    # --- block gains: h = resid_gain * f(x) + skip_gain * x ---------------
    attn_block_resid_gain: float = 1.0
    attn_block_skip_gain: float = 1.0
    mlp_block_resid_gain: float = 1.0
    mlp_block_skip_gain: float = 1.0

    # --- shaped attention, Eq. 5 ------------------------------------------
    attn_mat_resid_gain: float = 1.0
    attn_mat_skip_gain: float = 0.0
    centre_attn: bool = False
    centre_attn_gain: float = 1.0

    # --- reparameterised value and projection, Eq. 6 ----------------------
    value_resid_gain: float = 1.0
    value_skip_gain: float | None = None  # None: a plain matrix
    first_layer_value_resid_gain: float | None = None
    proj_resid_gain: float = 1.0
    proj_skip_gain: float | None = None
    last_layer_proj_resid_gain: float | None = None

    # --- which gains train --------------------------------------------------
    trainable_attn_block_gains: bool = False
    trainable_mlp_block_gains: bool = False
    trainable_attn_mat_gains: bool = False
    trainable_value_gains: bool = False
    trainable_proj_gains: bool = False
    # GPT-2's trainable biases of v_attn, attn.c_proj and the MLP (the
    # original freezes them at zero)
    trainable_biases: bool = False

    # --- initialisation (clm's training; an export carries its weights) ----
    initializer_range: float = 0.02
    val_proj_init_std: float | None = None
    query_init_std: float | None = None
    key_init_std: float | None = None
    val_init_type: str = "normal"  # normal | orth | id
    proj_init_type: str = "normal"
    tie_valproj_init: str | None = None

    # --- MLP ----------------------------------------------------------------
    activation_function: str = "leaky_relu"
    lrelu_neg_slope: float = 0.0  # 0: ReLU

    mlp_proj_init_std: float | None = None

    # --- topology -------------------------------------------------------------
    parallel_layers: bool = False  # the GPT-J parallel block

    # --- provenance and generation ------------------------------------------
    clm_preset: str | None = None
    clm_version: str | None = None
    use_cache: bool = False  # no key/value cache: generate() runs the whole sequence each step
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True


__all__ = ["CLMConfig"]
