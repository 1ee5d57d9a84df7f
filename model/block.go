package model

import (
	"fmt"

	"clm/torch"
)

func layerPrefix(i int) string { return fmt.Sprintf("transformer.h.%d.", i) }

// mlp is c_fc (d → n_inner, frozen zero bias), the activation, c_proj
// (n_inner → d, frozen zero bias) and dropout.
type mlp struct {
	fc, proj linear
	act      Activation
	slope    float64
	pdrop    float64
}

func newMLP(ps *Params, cfg *Config, layer int) mlp {
	p := layerPrefix(layer) + "mlp."
	d, inner := int64(cfg.NEmbd), int64(cfg.NInner)
	return mlp{
		fc:    newLinear(ps, p+"c_fc", LinearPlain, false, d, inner),
		proj:  newLinear(ps, p+"c_proj", LinearPlain, false, inner, d),
		act:   cfg.ActivationFunction,
		slope: cfg.LReLUNegSlope,
		pdrop: cfg.ResidPdrop,
	}
}

func (m *mlp) forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := activation(m.act, m.slope, m.fc.forward(x))
	return m.proj.forward(h).Dropout(m.pdrop, train && m.pdrop > 0)
}

// block is one transformer block with an explicit topology switch.
//
// Sequential (parallel_layers = false), pre-norm:
//
//	x ─┬─ ln_1 ─ attn ─ ×attn_block_resid_gain ─(+)─┬─ ln_2 ─ mlp ─ ×mlp_block_resid_gain ─(+)─▶
//	   └──────────── ×attn_block_skip_gain ─────────┘└──────────── ×mlp_block_skip_gain ────────┘
//
// Parallel (GPT-J):
//
//	x ─┬─ ln_1 ─┬─ attn ─ ×attn_block_resid_gain ──(+)─▶
//	   │        └─ mlp  ─ ×mlp_block_resid_gain  ──(+)
//	   └────────────── ×mlp_block_skip_gain ────────┘
//
// A skip path exists only if its configured gain is non-zero: the skipless
// blocks (SAS, SAS-P) have none. With norm_position post the norm is applied
// to the stream before it feeds both skip and branch.
type block struct {
	parallel, post          bool
	ln1, ln2                norm
	attn                    attention
	mlp                     mlp
	attnResid, attnSkip     *torch.Tensor // [1]
	mlpResid, mlpSkip       *torch.Tensor // [1]
	addAttnSkip, addMLPSkip bool
}

func newBlock(ps *Params, cfg *Config, layer int) block {
	p := layerPrefix(layer)
	ln1, ln2 := cfg.BlockNorms(layer)
	d := int64(cfg.NEmbd)
	return block{
		parallel:    cfg.ParallelLayers,
		post:        cfg.NormPosition == NormPost,
		ln1:         newNorm(ps, p+"ln_1", ln1, d, cfg.LayerNormEpsilon),
		ln2:         newNorm(ps, p+"ln_2", ln2, d, cfg.LayerNormEpsilon),
		attn:        newAttention(ps, cfg, layer),
		mlp:         newMLP(ps, cfg, layer),
		attnResid:   ps.get(p + "attn_block_resid_gain"),
		attnSkip:    ps.get(p + "attn_block_skip_gain"),
		mlpResid:    ps.get(p + "mlp_block_resid_gain"),
		mlpSkip:     ps.get(p + "mlp_block_skip_gain"),
		addAttnSkip: cfg.AttnBlockSkipGain != 0,
		addMLPSkip:  cfg.MLPBlockSkipGain != 0,
	}
}

func (b *block) forward(x *torch.Tensor, impl AttentionImpl, train, wantProbs bool) (y, probs *torch.Tensor) {
	if b.post {
		x = b.ln1.forward(x)
	}
	skip := x
	if !b.post {
		x = b.ln1.forward(x)
	}
	a, probs := b.attn.forward(x, impl, train, wantProbs)
	if b.parallel {
		y = b.mlpResid.Mul(b.mlp.forward(x, train)).Add(b.attnResid.Mul(a))
		if b.addMLPSkip {
			y = y.Add(b.mlpSkip.Mul(skip))
		}
		return y, probs
	}
	h := b.attnResid.Mul(a)
	if b.addAttnSkip {
		h = h.Add(b.attnSkip.Mul(skip))
	}
	if b.post {
		h = b.ln2.forward(h)
	}
	skip = h
	if !b.post {
		h = b.ln2.forward(h)
	}
	y = b.mlpResid.Mul(b.mlp.forward(h, train))
	if b.addMLPSkip {
		y = y.Add(b.mlpSkip.Mul(skip))
	}
	return y, probs
}
