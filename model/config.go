// Package model holds the GPT-2 block variants of "Simplifying Transformer
// Blocks" (He & Hofmann, ICLR 2024) and of "Understanding and Minimising
// Outlier Features in Transformer Training" (He et al., NeurIPS 2024).
//
// This file is the configuration: one Config with every knob of the original
// code (bobby-he/simplified_transformers, config/model/default.yaml), under
// the original's names, plus Validate, which rejects impossible combinations
// and derives sizes. It does not depend on the torch binding.
//
// The PyTorch reference scripts/reference/model.py reads the JSON that
// Config.JSON writes; both use the same keys.
package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"clm/internal/errjoin"
)

// NormType selects the normalisation layers of a block (key norm_type).
type NormType string

// Normalisations.
const (
	// NormLN is LayerNorm with weight and bias.
	NormLN NormType = "ln"
	// NormRMS is RMSNorm: scale * x / (||x||₂·d^-½ + eps), one parameter
	// named "scale"; eps is added to the RMS, not inside the square root.
	NormRMS NormType = "rmsnorm"
	// NormNone drops the block norms, except that layer 0 keeps a
	// LayerNorm as ln_1 to normalise the embedding.
	NormNone NormType = "none"
)

// NormPosition places the block norms (key norm_position).
type NormPosition string

// Norm positions.
const (
	// NormPre normalises the input of each sub-block; the skip carries the
	// unnormalised stream.
	NormPre NormPosition = "pre"
	// NormPost normalises the stream itself: x ← ln_1(x) at block entry and
	// h ← ln_2(h) between the sub-blocks, so skip and branch both see the
	// normalised value. The block output is not normalised (the next
	// block's ln_1, or ln_f, does it).
	NormPost NormPosition = "post"
)

// QKNormType selects a per-head norm on queries and keys (key qk_norm_type).
type QKNormType string

// Query/key norms.
const (
	QKNormNone QKNormType = "none"
	// QKNormRMS is RMSNorm over head_dim on q and k (the OP block), with
	// parameters attn.q_norm.scale and attn.k_norm.scale.
	QKNormRMS QKNormType = "rmsnorm"
)

// DotNormType transforms the scaled attention logits (key dot_norm_type).
type DotNormType string

// Logit transforms.
const (
	DotNormNone DotNormType = "none"
	// DotNormTanh caps the logits: 30·tanh(logits/30), computed in fp32
	// (the original casts to float32; the reference keeps float64 in
	// float64 runs).
	DotNormTanh DotNormType = "tanh"
)

// InitType is the initialisation of a value or projection matrix (keys
// val_init_type, proj_init_type). For a plain layer it is the weight's init;
// for a reparameterised layer (Eq. 6) it is the fixed W_init.
type InitType string

// Initialisations.
const (
	// InitNormal is normal(0, 0.02) for a plain layer, normal(0, 1/√d) for
	// W_init.
	InitNormal InitType = "normal"
	// InitOrth is a random orthogonal matrix (torch.nn.init.orthogonal_).
	InitOrth InitType = "orth"
	// InitID is the identity.
	InitID InitType = "id"
)

// TieValProj ties the fixed W_init of projections to those of values (key
// tie_valproj_init). The empty value is the original's null and is written
// as JSON null.
type TieValProj string

// Value/projection ties.
const (
	// TieNone (JSON null) ties nothing.
	TieNone TieValProj = ""
	// TieLastBlock sets the last layer's W^P_init to
	// (V₀P₀V₁P₁…V_{L-2}P_{L-2}V_{L-1})ᵀ, the product of all other W_init,
	// so that the whole skip path is the identity for orthogonal inits.
	TieLastBlock TieValProj = "last_block"
	// TieAllBlocks sets W^P_init = (W^V_init)ᵀ in every layer.
	TieAllBlocks TieValProj = "all_blocks"
)

// MarshalJSON writes TieNone as null.
func (t TieValProj) MarshalJSON() ([]byte, error) {
	if t == TieNone {
		return []byte("null"), nil
	}
	return json.Marshal(string(t))
}

// UnmarshalJSON reads null as TieNone.
func (t *TieValProj) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*t = TieNone
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = TieValProj(s)
	return nil
}

// Activation is the MLP nonlinearity, by Hugging Face ACT2FN name, plus
// leaky_relu (key activation_function).
type Activation string

// Activations.
const (
	// ActLeakyReLU is where(x ≥ 0, x, lrelu_neg_slope·x); slope 0 is ReLU.
	ActLeakyReLU Activation = "leaky_relu"
	// ActReLU is max(x, 0).
	ActReLU Activation = "relu"
	// ActGELU is the exact (erf) GELU.
	ActGELU Activation = "gelu"
	// ActGELUNew is GPT-2's tanh GELU written out:
	// 0.5x(1+tanh(√(2/π)(x+0.044715x³))).
	ActGELUNew Activation = "gelu_new"
	// ActGELUPyTorchTanh is torch's gelu(approximate="tanh").
	ActGELUPyTorchTanh Activation = "gelu_pytorch_tanh"
	// ActGELUFast is 0.5x(1+tanh(0.7978845608·x(1+0.044715x²))).
	ActGELUFast Activation = "gelu_fast"
	// ActQuickGELU is x·sigmoid(1.702x).
	ActQuickGELU Activation = "quick_gelu"
	// ActSiLU is x·sigmoid(x).
	ActSiLU Activation = "silu"
	// ActSwish is another name of silu.
	ActSwish Activation = "swish"
	// ActTanh is tanh.
	ActTanh Activation = "tanh"
	// ActSigmoid is the logistic sigmoid.
	ActSigmoid Activation = "sigmoid"
)

var activations = []Activation{ActLeakyReLU, ActReLU, ActGELU, ActGELUNew, ActGELUPyTorchTanh,
	ActGELUFast, ActQuickGELU, ActSiLU, ActSwish, ActTanh, ActSigmoid}

// LinearInitStd is the std of the normal init of every plain block linear
// (qk_attn, plain v_attn/c_proj, mlp.c_fc, mlp.c_proj): the original's
// linear layer hard-codes 0.02, whatever initializer_range is, and applies no
// depth scaling.
const LinearInitStd = 0.02

// TanhSoftcap is the cap of DotNormTanh.
const TanhSoftcap = 30.0

// Config is every knob of the original model yaml, under its names (json and
// toml keys). Optional values are pointers: nil is the original's null, which
// differs from 0. Call Validate before use: it also sets the derived fields.
type Config struct {
	// ---- Sizes ----

	// VocabSize is the number of token embeddings (52000 for the CodeParrot
	// tokenizer).
	VocabSize int `json:"vocab_size" toml:"vocab_size"`
	// NPositions is the number of learned position embeddings (HF GPT-2's
	// 1024); the attention buffers of the original have this size too.
	NPositions int `json:"n_positions" toml:"n_positions"`
	// ContextLength is the training sequence length (the yaml's
	// context_length, HF's n_ctx), at most NPositions.
	ContextLength int `json:"context_length" toml:"context_length"`
	// NEmbd is the width d.
	NEmbd int `json:"n_embd" toml:"n_embd"`
	// NLayer is the number of blocks L.
	NLayer int `json:"n_layer" toml:"n_layer"`
	// NHead is the number of attention heads H; NEmbd must be divisible by it.
	NHead int `json:"n_head" toml:"n_head"`
	// MLPWidthMult sets the MLP hidden width int(n_embd·mlp_width_mult)
	// (truncated, as Python's int()).
	MLPWidthMult float64 `json:"mlp_width_mult" toml:"mlp_width_mult"`

	// ---- Normalisation ----

	// NormType is the block norm (ln, rmsnorm, none). ln_f is always a
	// LayerNorm.
	NormType NormType `json:"norm_type" toml:"norm_type"`
	// NormPosition is pre or post.
	NormPosition NormPosition `json:"norm_position" toml:"norm_position"`
	// QKNormType is the per-head norm on q and k (none, rmsnorm).
	QKNormType QKNormType `json:"qk_norm_type" toml:"qk_norm_type"`
	// DotNormType transforms the attention logits (none, tanh).
	DotNormType DotNormType `json:"dot_norm_type" toml:"dot_norm_type"`
	// LayerNormEpsilon is the eps of every norm, ln_f included (1e-5).
	LayerNormEpsilon float64 `json:"layer_norm_epsilon" toml:"layer_norm_epsilon"`

	// ---- Dropout (all 0 in the paper) ----

	// ResidPdrop drops the attention output (after c_proj) and the MLP output.
	ResidPdrop float64 `json:"resid_pdrop" toml:"resid_pdrop"`
	// AttnPdrop drops the shaped attention matrix A (after Eq. 5).
	AttnPdrop float64 `json:"attn_pdrop" toml:"attn_pdrop"`
	// EmbdPdrop drops the embedding output wte[x] + wpe[t].
	EmbdPdrop float64 `json:"embd_pdrop" toml:"embd_pdrop"`

	// ---- Block gains: h = resid_gain·f(x) + skip_gain·x ----
	// Each is a [1] parameter per block. A skip term exists only if its
	// configured gain is non-zero. In the parallel form the attention skip
	// is unused and the block skip gains are never trainable.

	// AttnBlockResidGain multiplies the attention sub-block output.
	AttnBlockResidGain float64 `json:"attn_block_resid_gain" toml:"attn_block_resid_gain"`
	// AttnBlockSkipGain multiplies the skip around attention (sequential form).
	AttnBlockSkipGain float64 `json:"attn_block_skip_gain" toml:"attn_block_skip_gain"`
	// MLPBlockResidGain multiplies the MLP sub-block output.
	MLPBlockResidGain float64 `json:"mlp_block_resid_gain" toml:"mlp_block_resid_gain"`
	// MLPBlockSkipGain multiplies the skip around the MLP; in the parallel
	// form it is the block's only skip.
	MLPBlockSkipGain float64 `json:"mlp_block_skip_gain" toml:"mlp_block_skip_gain"`

	// ---- Shaped attention (Eq. 5) ----
	// A = attn_mat_resid_gain·softmax(…) [+ attn_mat_skip_gain·I −
	// centre_attn_gain·C if centre_attn], per head, with C[i,j] = 1/(i+1)
	// for j ≤ i (0-based). The gains are [1, H, 1, 1] parameters.

	// AttnMatResidGain multiplies the softmax.
	AttnMatResidGain float64 `json:"attn_mat_resid_gain" toml:"attn_mat_resid_gain"`
	// AttnMatSkipGain multiplies the identity; ignored unless CentreAttn.
	AttnMatSkipGain float64 `json:"attn_mat_skip_gain" toml:"attn_mat_skip_gain"`
	// CentreAttn adds attn_mat_skip_gain·I − centre_attn_gain·C.
	CentreAttn bool `json:"centre_attn" toml:"centre_attn"`
	// CentreAttnGain multiplies C (yaml default: attn_mat_resid_gain).
	CentreAttnGain float64 `json:"centre_attn_gain" toml:"centre_attn_gain"`

	// ---- Value and projection (Eq. 6) ----
	// With a skip gain, W = resid_gain·W_train + skip_gain·W_init (W_train
	// zero-init, W_init fixed); without (nil), a plain linear. See
	// ValueLayer and ProjLayer for the per-layer form.

	// ValueResidGain is the value resid gain of every layer but the first
	// if FirstLayerValueResidGain is set. Ignored when ValueSkipGain is nil.
	ValueResidGain float64 `json:"value_resid_gain" toml:"value_resid_gain"`
	// ValueSkipGain reparameterises W^V (Eq. 6) when not nil.
	ValueSkipGain *float64 `json:"value_skip_gain" toml:"value_skip_gain"`
	// FirstLayerValueResidGain overrides ValueResidGain in layer 0.
	FirstLayerValueResidGain *float64 `json:"first_layer_value_resid_gain" toml:"first_layer_value_resid_gain"`
	// ProjResidGain is the projection resid gain (yaml default:
	// value_resid_gain). Ignored when ProjSkipGain is nil.
	ProjResidGain float64 `json:"proj_resid_gain" toml:"proj_resid_gain"`
	// ProjSkipGain reparameterises W^P (Eq. 6) when not nil.
	ProjSkipGain *float64 `json:"proj_skip_gain" toml:"proj_skip_gain"`
	// LastLayerProjResidGain overrides ProjResidGain in layer n_layer−1.
	LastLayerProjResidGain *float64 `json:"last_layer_proj_resid_gain" toml:"last_layer_proj_resid_gain"`

	// ---- Trainable gains ----

	// TrainableAttnBlockGains makes attn_block_{resid,skip}_gain trainable
	// (the skip gain only in the sequential form).
	TrainableAttnBlockGains bool `json:"trainable_attn_block_gains" toml:"trainable_attn_block_gains"`
	// TrainableMLPBlockGains makes mlp_block_{resid,skip}_gain trainable
	// (the skip gain only in the sequential form).
	TrainableMLPBlockGains bool `json:"trainable_mlp_block_gains" toml:"trainable_mlp_block_gains"`
	// TrainableAttnMatGains makes the Eq. 5 gains trainable; centre_attn_gain
	// only if it is non-zero.
	TrainableAttnMatGains bool `json:"trainable_attn_mat_gains" toml:"trainable_attn_mat_gains"`
	// TrainableValueGains makes the Eq. 6 gains of v_attn trainable.
	TrainableValueGains bool `json:"trainable_value_gains" toml:"trainable_value_gains"`
	// TrainableProjGains makes the Eq. 6 gains of attn.c_proj trainable.
	TrainableProjGains bool `json:"trainable_proj_gains" toml:"trainable_proj_gains"`

	// TrainableBiases trains the biases of v_attn, attn.c_proj, mlp.c_fc
	// and mlp.c_proj, as GPT-2 does; the original freezes them at zero (only
	// qk_attn's bias trains). A Hugging Face GPT-2 opened as a run sets it.
	TrainableBiases bool `json:"trainable_biases" toml:"trainable_biases"`

	// ---- Initialisation ----

	// InitializerRange is the std of wte and wpe (only; block linears use
	// LinearInitStd).
	InitializerRange float64 `json:"initializer_range" toml:"initializer_range"`
	// ValProjInitStd re-inits v_attn.weight and attn.c_proj.weight with
	// normal(0, std) (for a reparameterised layer that is W_train).
	ValProjInitStd *float64 `json:"val_proj_init_std" toml:"val_proj_init_std"`
	// QueryInitStd re-inits W^Q (columns [0, d) of qk_attn.weight); 0 gives
	// W^Q = 0 (the skipless blocks).
	QueryInitStd *float64 `json:"query_init_std" toml:"query_init_std"`
	// KeyInitStd re-inits W^K (columns [d, 2d) of qk_attn.weight).
	KeyInitStd *float64 `json:"key_init_std" toml:"key_init_std"`
	// ValInitType is the value init (normal, orth, id).
	ValInitType InitType `json:"val_init_type" toml:"val_init_type"`
	// ProjInitType is the projection init (yaml default: val_init_type).
	ProjInitType InitType `json:"proj_init_type" toml:"proj_init_type"`
	// TieValprojInit ties W^P_init to W^V_init (null, last_block, all_blocks).
	TieValprojInit TieValProj `json:"tie_valproj_init" toml:"tie_valproj_init"`

	// ---- MLP ----

	// ActivationFunction is the MLP nonlinearity.
	ActivationFunction Activation `json:"activation_function" toml:"activation_function"`
	// LReLUNegSlope is the negative slope of leaky_relu (0: ReLU).
	LReLUNegSlope float64 `json:"lrelu_neg_slope" toml:"lrelu_neg_slope"`
	// MLPProjInitStd re-inits mlp.c_proj.weight with normal(0, std).
	MLPProjInitStd *float64 `json:"mlp_proj_init_std" toml:"mlp_proj_init_std"`

	// ---- Topology ----

	// ParallelLayers selects the GPT-J parallel block:
	// h = mlp_resid·mlp(n1(x)) + attn_resid·attn(n1(x)) + mlp_skip·x.
	ParallelLayers bool `json:"parallel_layers" toml:"parallel_layers"`

	// ---- Derived by Validate ----

	// HeadDim is n_embd / n_head.
	HeadDim int `json:"-" toml:"-"`
	// NInner is the MLP hidden width int(n_embd·mlp_width_mult).
	NInner int `json:"-" toml:"-"`
}

// F returns a pointer to v, for the optional fields.
func F(v float64) *float64 { return &v }

// Clone returns a deep copy (the optional fields are not shared).
func (c Config) Clone() Config {
	for _, p := range []**float64{&c.ValueSkipGain, &c.FirstLayerValueResidGain, &c.ProjSkipGain,
		&c.LastLayerProjResidGain, &c.ValProjInitStd, &c.QueryInitStd, &c.KeyInitStd, &c.MLPProjInitStd} {
		if *p != nil {
			*p = F(**p)
		}
	}
	return c
}

// ---- Per-layer structure ----

// LinearForm is how a value or projection layer is built.
type LinearForm int

// Linear forms.
const (
	// LinearIdentity: the layer is the identity and has no parameters
	// (skip gain 1, resid gain 0, init id).
	LinearIdentity LinearForm = iota
	// LinearPlain: y = x·W + b with W [d, d] trainable and b a frozen zero.
	LinearPlain
	// LinearReparam: y = x·(resid_gain·W_train + skip_gain·W_init) + b
	// (Eq. 6), W_train [d, d] zero-init, W_init a fixed buffer `id`, b a
	// frozen zero, gains [1] parameters trainable per flag.
	LinearReparam
)

// VPLayer describes the value (attn.v_attn) or projection (attn.c_proj)
// layer of one block.
type VPLayer struct {
	// Form is the layer's structure.
	Form LinearForm
	// ResidGain and SkipGain are the Eq. 6 gains (LinearReparam only; the
	// layer overrides applied).
	ResidGain, SkipGain float64
	// Init is the weight init (plain) or the W_init (reparam).
	Init InitType
	// TrainableGains says whether the two gains are trainable.
	TrainableGains bool
	// ScaleOnly is true for a reparameterised layer with resid gain 0 and
	// init id: the original then computes b + skip_gain·x, re-testing
	// resid_gain == 0 at every forward. W_train and resid_gain are outside
	// the graph, get no gradient, and so keep their values in training.
	ScaleOnly bool
}

func vpLayer(skip *float64, resid float64, init InitType, trainable bool) VPLayer {
	if skip == nil {
		return VPLayer{Form: LinearPlain, Init: init}
	}
	if *skip == 1 && resid == 0 && init == InitID {
		return VPLayer{Form: LinearIdentity, Init: init}
	}
	return VPLayer{Form: LinearReparam, ResidGain: resid, SkipGain: *skip, Init: init,
		TrainableGains: trainable, ScaleOnly: resid == 0 && init == InitID}
}

// ValueLayer is the value layer of block `layer` (first_layer_value_resid_gain
// applied in layer 0).
func (c *Config) ValueLayer(layer int) VPLayer {
	r := c.ValueResidGain
	if c.FirstLayerValueResidGain != nil && layer == 0 {
		r = *c.FirstLayerValueResidGain
	}
	return vpLayer(c.ValueSkipGain, r, c.ValInitType, c.TrainableValueGains)
}

// ProjLayer is the projection layer of block `layer`
// (last_layer_proj_resid_gain applied in the last layer).
func (c *Config) ProjLayer(layer int) VPLayer {
	r := c.ProjResidGain
	if c.LastLayerProjResidGain != nil && layer == c.NLayer-1 {
		r = *c.LastLayerProjResidGain
	}
	return vpLayer(c.ProjSkipGain, r, c.ProjInitType, c.TrainableProjGains)
}

// BlockNorms returns the norms ln_1 and ln_2 of block `layer`; NormNone
// means the identity (no parameters). With norm_type none, ln_1 of layer 0
// is a LayerNorm.
func (c *Config) BlockNorms(layer int) (ln1, ln2 NormType) {
	if c.NormType == NormNone {
		if layer == 0 {
			return NormLN, NormNone
		}
		return NormNone, NormNone
	}
	return c.NormType, c.NormType
}

// ---- Validation ----

// Validate checks the config and sets the derived fields HeadDim and NInner.
// Every problem is reported, as "model.<key>: <reason>", joined into one
// error.
func (c *Config) Validate() error {
	var p configProblems
	c.validateSizes(&p)
	c.validateEnums(&p)
	c.validateGains(&p)
	c.validateInitStds(&p)
	c.validateCombinations(&p)
	return errjoin.OneLine(p.errs)
}

// configProblems collects the problems Validate finds, in the order found,
// each as "model.<key>: <reason>".
type configProblems struct {
	errs []error
}

// bad records a problem with the key `key`.
func (p *configProblems) bad(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("model.%s: %s", key, fmt.Sprintf(format, args...)))
}

// positive reports v unless it is above 0.
func (p *configProblems) positive(key string, v int) {
	if v <= 0 {
		p.bad(key, "%d must be positive", v)
	}
}

// finite reports v if it is NaN or infinite, and says whether it is finite.
func (p *configProblems) finite(key string, v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		p.bad(key, "%v is not a finite number", v)
		return false
	}
	return true
}

// nonNeg reports v unless it is finite and not below 0.
func (p *configProblems) nonNeg(key string, v float64) {
	if p.finite(key, v) && v < 0 {
		p.bad(key, "%v must not be negative", v)
	}
}

// prob reports v unless it is a finite number in [0, 1).
func (p *configProblems) prob(key string, v float64) {
	if p.finite(key, v) && (v < 0 || v >= 1) {
		p.bad(key, "%v is outside [0, 1)", v)
	}
}

// oneOf reports v unless it is one of allowed.
func (p *configProblems) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.bad(key, "unknown value %q (want one of %s)", v, quoteList(allowed))
}

// validateSizes checks the sizes (vocabulary, positions, context, width,
// depth, heads, MLP width) and sets HeadDim and NInner, leaving each 0 when
// it cannot be derived.
func (c *Config) validateSizes(p *configProblems) {
	p.positive("vocab_size", c.VocabSize)
	p.positive("n_positions", c.NPositions)
	p.positive("context_length", c.ContextLength)
	if c.ContextLength > 0 && c.NPositions > 0 && c.ContextLength > c.NPositions {
		p.bad("context_length", "%d is longer than n_positions %d", c.ContextLength, c.NPositions)
	}
	p.positive("n_embd", c.NEmbd)
	p.positive("n_layer", c.NLayer)
	p.positive("n_head", c.NHead)
	c.HeadDim = 0
	if c.NEmbd > 0 && c.NHead > 0 {
		if c.NEmbd%c.NHead != 0 {
			p.bad("n_embd", "%d is not divisible by n_head %d", c.NEmbd, c.NHead)
		} else {
			c.HeadDim = c.NEmbd / c.NHead
		}
	}
	c.NInner = 0
	if p.finite("mlp_width_mult", c.MLPWidthMult) {
		inner := int(float64(c.NEmbd) * c.MLPWidthMult)
		if c.MLPWidthMult <= 0 || inner < 1 {
			p.bad("mlp_width_mult", "%v gives an MLP width int(n_embd·mlp_width_mult) = %d < 1", c.MLPWidthMult, inner)
		} else {
			c.NInner = inner
		}
	}
}

// validateEnums checks that every enumerated setting (norms, inits, tying,
// activation) has a known value.
func (c *Config) validateEnums(p *configProblems) {
	p.oneOf("norm_type", string(c.NormType), string(NormLN), string(NormRMS), string(NormNone))
	p.oneOf("norm_position", string(c.NormPosition), string(NormPre), string(NormPost))
	p.oneOf("qk_norm_type", string(c.QKNormType), string(QKNormNone), string(QKNormRMS))
	p.oneOf("dot_norm_type", string(c.DotNormType), string(DotNormNone), string(DotNormTanh))
	p.oneOf("val_init_type", string(c.ValInitType), string(InitNormal), string(InitOrth), string(InitID))
	p.oneOf("proj_init_type", string(c.ProjInitType), string(InitNormal), string(InitOrth), string(InitID))
	if c.TieValprojInit != TieNone {
		p.oneOf("tie_valproj_init", string(c.TieValprojInit), string(TieLastBlock), string(TieAllBlocks))
	}
	acts := make([]string, len(activations))
	for i, a := range activations {
		acts[i] = string(a)
	}
	p.oneOf("activation_function", string(c.ActivationFunction), acts...)
}

// validateGains checks the norm epsilon, the dropout probabilities and that
// every gain (and the leaky ReLU slope) is a finite number.
func (c *Config) validateGains(p *configProblems) {
	p.nonNeg("layer_norm_epsilon", c.LayerNormEpsilon)
	p.prob("resid_pdrop", c.ResidPdrop)
	p.prob("attn_pdrop", c.AttnPdrop)
	p.prob("embd_pdrop", c.EmbdPdrop)
	for _, g := range []struct {
		key string
		v   float64
	}{
		{"attn_block_resid_gain", c.AttnBlockResidGain}, {"attn_block_skip_gain", c.AttnBlockSkipGain},
		{"mlp_block_resid_gain", c.MLPBlockResidGain}, {"mlp_block_skip_gain", c.MLPBlockSkipGain},
		{"attn_mat_resid_gain", c.AttnMatResidGain}, {"attn_mat_skip_gain", c.AttnMatSkipGain},
		{"centre_attn_gain", c.CentreAttnGain}, {"value_resid_gain", c.ValueResidGain},
		{"proj_resid_gain", c.ProjResidGain}, {"lrelu_neg_slope", c.LReLUNegSlope},
	} {
		p.finite(g.key, g.v)
	}
	for _, g := range []struct {
		key string
		v   *float64
	}{
		{"value_skip_gain", c.ValueSkipGain}, {"first_layer_value_resid_gain", c.FirstLayerValueResidGain},
		{"proj_skip_gain", c.ProjSkipGain}, {"last_layer_proj_resid_gain", c.LastLayerProjResidGain},
	} {
		if g.v != nil {
			p.finite(g.key, *g.v)
		}
	}
}

// validateInitStds checks that the initialisation standard deviations that
// are set are finite and not negative.
func (c *Config) validateInitStds(p *configProblems) {
	p.nonNeg("initializer_range", c.InitializerRange)
	for _, s := range []struct {
		key string
		v   *float64
	}{
		{"val_proj_init_std", c.ValProjInitStd}, {"query_init_std", c.QueryInitStd},
		{"key_init_std", c.KeyInitStd}, {"mlp_proj_init_std", c.MLPProjInitStd},
	} {
		if s.v != nil {
			p.nonNeg(s.key, *s.v)
		}
	}
}

// validateCombinations reports settings that have no effect, or cannot
// work, given the others: a skip gain the parallel block lacks, a slope
// without leaky ReLU, and value/projection settings that need a weight.
func (c *Config) validateCombinations(p *configProblems) {
	if c.ParallelLayers && c.AttnBlockSkipGain != 0 {
		p.bad("attn_block_skip_gain", "%v has no effect when parallel_layers is true (the parallel block's only skip is mlp_block_skip_gain); set it to 0", c.AttnBlockSkipGain)
	}
	if c.ActivationFunction != ActLeakyReLU && c.LReLUNegSlope != 0 {
		p.bad("lrelu_neg_slope", "%v has no effect with activation_function %q", c.LReLUNegSlope, c.ActivationFunction)
	}
	if c.NLayer > 0 {
		c.validateValueProj(p)
	}
}

// validateValueProj checks val_proj_init_std and tie_valproj_init against
// the value and projection layers (n_layer must be positive).
func (c *Config) validateValueProj(p *configProblems) {
	firstIdentity := c.firstIdentityLayer()
	if c.ValProjInitStd != nil && firstIdentity >= 0 {
		p.bad("val_proj_init_std", "is set but the value or projection of layer %d is the identity (skip gain 1, resid gain 0, init id) and has no weight", firstIdentity)
	}
	if c.TieValprojInit != TieNone {
		switch {
		case c.ValueSkipGain == nil || c.ProjSkipGain == nil:
			p.bad("tie_valproj_init", "%q needs value_skip_gain and proj_skip_gain (it ties the fixed W_init of Eq. 6)", c.TieValprojInit)
		case firstIdentity >= 0:
			p.bad("tie_valproj_init", "%q needs a W_init in every layer, but the value or projection of layer %d is the identity", c.TieValprojInit, firstIdentity)
		case c.TieValprojInit == TieLastBlock && c.NLayer < 2:
			p.bad("tie_valproj_init", "%q has no effect with n_layer %d", c.TieValprojInit, c.NLayer)
		}
	}
}

// firstIdentityLayer is the first layer whose value or projection is the
// identity (no weight), or -1 if there is none. Only layer 0 (value) and the
// last (projection) differ from the rest, so three layers answer for all of
// them.
func (c *Config) firstIdentityLayer() int {
	for _, i := range []int{0, 1, c.NLayer - 1} {
		if i < c.NLayer && (c.ValueLayer(i).Form == LinearIdentity || c.ProjLayer(i).Form == LinearIdentity) {
			return i
		}
	}
	return -1
}

func quoteList(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}

// ---- JSON (shared with scripts/reference/model.py) ----

// JSON returns the config as the JSON object that scripts/reference/model.py
// reads: the original's keys, null for unset optional values.
func (c Config) JSON() ([]byte, error) {
	return json.MarshalIndent(c, "", "  ")
}

// ParseJSON reads a config written by JSON or by model.py. Keys missing from
// data keep the values of the `default` preset; unknown keys are errors. The
// result is not validated.
func ParseJSON(data []byte) (Config, error) {
	c := Default()
	if err := decodeStrict(data, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

func decodeStrict(data []byte, c *Config) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("model.%s: want %s, not %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("model config: %w", err)
	}
	if dec.More() {
		return errors.New("model config: trailing data after the JSON object")
	}
	return nil
}

// ---- Parameters ----

// ParamSpec is one tensor of the model's state: its PyTorch state-dict name,
// shape, and whether it is a trainable parameter, a frozen parameter, or a
// buffer (the fixed W_init of Eq. 6, named `<layer>.id`).
type ParamSpec struct {
	// Name equals the key of the original HF module tree.
	Name string
	// Shape is the tensor shape; linear weights are [in, out].
	Shape []int64
	// Trainable is requires_grad (false for frozen parameters and buffers).
	Trainable bool
	// Buffer marks a fixed matrix W_init (saved with the weights, never
	// optimised).
	Buffer bool
	// Role is what the tensor is to its module, declared with it: the
	// optimizer's groups and the statistics derive from it, never from the
	// name.
	Role Role
}

// Role is what a declared tensor is to the module that declares it.
type Role int

const (
	// RoleMatrix is a linear layer's weight W [in, out] (or W_train of
	// Eq. 6).
	RoleMatrix Role = iota
	// RoleBias is a linear layer's bias.
	RoleBias
	// RoleGain is a scalar or per-head gain: the block gains α, β, the
	// attention gains of Eq. 5 and the resid/skip gains of Eq. 6.
	RoleGain
	// RoleNorm is a LayerNorm's weight or bias or an RMSNorm's scale.
	RoleNorm
	// RoleEmbedding is the token embedding wte (also the tied LM head).
	RoleEmbedding
	// RolePosition is the position embedding wpe.
	RolePosition
	// RoleInit is the fixed W_init of Eq. 6 (a buffer).
	RoleInit
)

var roleNames = [...]string{"matrix", "bias", "gain", "norm", "embedding", "position", "init"}

// String is the role's name ("matrix", "bias", …).
func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("Role(%d)", int(r))
	}
	return roleNames[r]
}

// Decays reports whether the original applies weight decay to a tensor of
// this role: to matrices and embeddings, not to biases, gains and norms
// (its rule by name: no decay for LayerNorm/RMSNorm modules and for names
// containing "bias" or "gain").
func (r Role) Decays() bool {
	return r == RoleMatrix || r == RoleEmbedding || r == RolePosition
}

// Params lists the parameters in the original's named_parameters order (the
// order of optimizer state and clipping sums), followed by the W_init
// buffers: what the modules declare (see vars.go), without allocating
// anything. The tied lm_head has no entry of its own. Call Validate first.
func (c *Config) Params() []ParamSpec {
	s := &store{}
	m := &Model{cfg: *c}
	m.declare(s)
	specs := make([]ParamSpec, 0, len(s.params)+len(s.buffers))
	for _, p := range s.registry().All() {
		specs = append(specs, p.ParamSpec)
	}
	return specs
}

// Footprint sizes a model in O(1) time whatever its depth, for refusing a
// model that cannot fit before allocating it: trainable and frozen
// parameter counts (buffers counted as frozen), as float64 so that absurd
// sizes do not overflow. Layers 1 to L-2 are alike, so the counts are
// affine in L from three layers on. Call Validate first.
func (c *Config) Footprint() (trainable, frozen float64) {
	count := func(layers int) (tr, fr float64) {
		d := c.Clone()
		d.NLayer = layers
		for _, p := range d.Params() {
			n := 1.0
			for _, s := range p.Shape {
				n *= float64(s)
			}
			if p.Trainable {
				tr += n
			} else {
				fr += n
			}
		}
		return tr, fr
	}
	if c.NLayer <= 4 {
		return count(c.NLayer)
	}
	t3, f3 := count(3)
	t4, f4 := count(4)
	extra := float64(c.NLayer - 3)
	return t3 + extra*(t4-t3), f3 + extra*(f4-f3)
}

// ParamCount returns the number of parameter elements (frozen ones
// included, as the original prints it; tied head once; buffers excluded) and
// the number of trainable ones. Call Validate first.
func (c *Config) ParamCount() (total, trainable int64) {
	for _, p := range c.Params() {
		if p.Buffer {
			continue
		}
		n := int64(1)
		for _, s := range p.Shape {
			n *= s
		}
		total += n
		if p.Trainable {
			trainable += n
		}
	}
	return total, trainable
}
