package model

import "clm/torch"

// mlp is c_fc (d → n_inner, frozen zero bias), the activation, c_proj
// (n_inner → d, frozen zero bias) and dropout.
type mlp struct {
	fc, proj linear
	act      Activation
	slope    float64
	pdrop    float64
}

// newMLP declares c_fc and c_proj under p; mlp_proj_init_std re-initialises
// c_proj's weight.
func newMLP(p path, cfg *Config) mlp {
	d, inner := int64(cfg.NEmbd), int64(cfg.NInner)
	m := mlp{
		fc:    newLinear(p.sub("c_fc"), plainLinear, cfg.TrainableBiases, d, inner),
		proj:  newLinear(p.sub("c_proj"), plainLinear, cfg.TrainableBiases, inner, d),
		act:   cfg.ActivationFunction,
		slope: cfg.LReLUNegSlope,
		pdrop: cfg.ResidPdrop,
	}
	if cfg.MLPProjInitStd != nil {
		p.reinit(m.proj.weight, normal(*cfg.MLPProjInitStd))
	}
	return m
}

func (m *mlp) forward(p *pass, x *torch.Tensor) *torch.Tensor {
	h := activation(p.k, m.act, m.slope, m.fc.forward(p, x))
	return m.proj.forward(p, h).Dropout(m.pdrop, p.train && m.pdrop > 0)
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

// newBlock declares block `layer` under p (transformer.h.<layer>), in the
// original's named_parameters order: the four block gains, ln_1, ln_2, the
// attention and the MLP. A skip gain is frozen in the parallel block, which
// has a single skip.
func newBlock(p path, cfg *Config, layer int) block {
	ln1, ln2 := cfg.BlockNorms(layer)
	d := int64(cfg.NEmbd)
	attnGains, mlpGains := cfg.TrainableAttnBlockGains, cfg.TrainableMLPBlockGains
	b := block{
		parallel:    cfg.ParallelLayers,
		post:        cfg.NormPosition == NormPost,
		attnResid:   p.param("attn_block_resid_gain", RoleGain, attnGains, constant(cfg.AttnBlockResidGain), 1),
		attnSkip:    p.param("attn_block_skip_gain", RoleGain, attnGains && !cfg.ParallelLayers, constant(cfg.AttnBlockSkipGain), 1),
		mlpResid:    p.param("mlp_block_resid_gain", RoleGain, mlpGains, constant(cfg.MLPBlockResidGain), 1),
		mlpSkip:     p.param("mlp_block_skip_gain", RoleGain, mlpGains && !cfg.ParallelLayers, constant(cfg.MLPBlockSkipGain), 1),
		addAttnSkip: cfg.AttnBlockSkipGain != 0,
		addMLPSkip:  cfg.MLPBlockSkipGain != 0,
	}
	b.ln1 = newNorm(p.sub("ln_1"), ln1, d, cfg.LayerNormEpsilon)
	b.ln2 = newNorm(p.sub("ln_2"), ln2, d, cfg.LayerNormEpsilon)
	b.attn = newAttention(p.sub("attn"), cfg, layer)
	b.mlp = newMLP(p.sub("mlp"), cfg)
	return b
}

// forward maps the block input x [B, T, d] to its output, and the
// attention probabilities when the pass asks for them.
func (b *block) forward(p *pass, x *torch.Tensor) (y, probs *torch.Tensor) {
	if b.post {
		x = b.ln1.forward(p, x)
	}
	skip := x
	if !b.post {
		x = b.ln1.forward(p, x)
	}
	a, probs := b.attn.forward(p, x)
	if b.parallel {
		gains, terms := []*torch.Tensor{b.mlpResid, b.attnResid}, []*torch.Tensor{b.mlp.forward(p, x), a}
		if b.addMLPSkip {
			gains, terms = append(gains, b.mlpSkip), append(terms, skip)
		}
		return p.k.combine(gains, terms), probs
	}
	h := b.residual(p, b.attnResid, a, b.attnSkip, skip, b.addAttnSkip)
	if b.post {
		h = b.ln2.forward(p, h)
	}
	skip = h
	if !b.post {
		h = b.ln2.forward(p, h)
	}
	return b.residual(p, b.mlpResid, b.mlp.forward(p, h), b.mlpSkip, skip, b.addMLPSkip), probs
}

// residual is resid·branch + skip·x, or resid·branch without a skip path.
func (b *block) residual(p *pass, resid, branch, skip, x *torch.Tensor, hasSkip bool) *torch.Tensor {
	if !hasSkip {
		return resid.Mul(branch)
	}
	return p.k.combine([]*torch.Tensor{resid, skip}, []*torch.Tensor{branch, x})
}
