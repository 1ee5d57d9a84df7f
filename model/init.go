package model

import (
	"math"

	"clm/torch"
)

// Init initialises every parameter and buffer from the default generator
// (seed it with torch.ManualSeed), following the original: Hugging Face's
// GPT-2 init for what GPT2LMHeadModel owns, and the replaced blocks' own
// init for the blocks (no depth scaling of c_proj, unlike GPT-2's paper).
//
//   - wte, wpe: normal(0, initializer_range)             (HF _init_weights)
//   - ln_f, block LayerNorms: weight 1, bias 0; RMSNorm scale 1
//   - block gains: their configured values
//   - qk_attn: weight normal(0, 0.02), bias 0; then W^Q (columns [0, d))
//     normal(0, query_init_std) and W^K normal(0, key_init_std) when set —
//     query_init_std 0 makes W^Q = 0, so that shaped attention starts as
//     the identity (Simplifying Transformer Blocks, §4.1)
//   - value/projection, plain: normal(0, 0.02), orthogonal, or identity
//   - value/projection, Eq. 6: W_train 0; W_init identity, orthogonal, or
//     normal(0, 1/√d); val_proj_init_std re-inits W (or W_train)
//   - tie_valproj_init: all_blocks sets W^P_init = (W^V_init)ᵀ; last_block
//     sets the last layer's W^P_init = (V₀P₀V₁P₁…V_{L−1})ᵀ
//   - MLP: c_fc, c_proj normal(0, 0.02), mlp_proj_init_std re-inits c_proj;
//     the frozen biases are 0
func (m *Model) Init() error {
	return torch.Try(func() { m.init() })
}

func (m *Model) init() {
	cfg, ps := &m.cfg, m.params
	d := int64(cfg.NEmbd)
	for _, p := range ps.list {
		p.T.Fill(0)
	}
	ps.get("transformer.wte.weight").FillNormal(0, cfg.InitializerRange)
	ps.get("transformer.wpe.weight").FillNormal(0, cfg.InitializerRange)
	var tie *torch.Tensor // running product for tie_valproj_init = last_block
	defer func() { tie.Free() }()
	for i := 0; i < cfg.NLayer; i++ {
		p := layerPrefix(i)
		ps.get(p + "attn_block_resid_gain").Fill(cfg.AttnBlockResidGain)
		ps.get(p + "attn_block_skip_gain").Fill(cfg.AttnBlockSkipGain)
		ps.get(p + "mlp_block_resid_gain").Fill(cfg.MLPBlockResidGain)
		ps.get(p + "mlp_block_skip_gain").Fill(cfg.MLPBlockSkipGain)
		for _, n := range []string{"ln_1", "ln_2", "attn.q_norm", "attn.k_norm"} {
			if w := ps.opt(p + n + ".weight"); w != nil {
				w.Fill(1)
			}
			if sc := ps.opt(p + n + ".scale"); sc != nil {
				sc.Fill(1)
			}
		}
		ps.get(p + "attn.attn_mat_resid_gain").Fill(cfg.AttnMatResidGain)
		ps.get(p + "attn.attn_mat_skip_gain").Fill(cfg.AttnMatSkipGain)
		ps.get(p + "attn.centre_attn_gain").Fill(cfg.CentreAttnGain)

		qk := ps.get(p + "attn.qk_attn.weight")
		qk.FillNormal(0, LinearInitStd)
		initVP(ps, p+"attn.v_attn", cfg.ValueLayer(i), d)
		initVP(ps, p+"attn.c_proj", cfg.ProjLayer(i), d)
		torch.WithScope(func(*torch.Scope) {
			if cfg.QueryInitStd != nil {
				qk.Narrow(1, 0, d).FillNormal(0, *cfg.QueryInitStd)
			}
			if cfg.KeyInitStd != nil {
				qk.Narrow(1, d, d).FillNormal(0, *cfg.KeyInitStd)
			}
		})
		if cfg.ValProjInitStd != nil {
			ps.get(p+"attn.v_attn.weight").FillNormal(0, *cfg.ValProjInitStd)
			ps.get(p+"attn.c_proj.weight").FillNormal(0, *cfg.ValProjInitStd)
		}
		ps.get(p+"mlp.c_fc.weight").FillNormal(0, LinearInitStd)
		ps.get(p+"mlp.c_proj.weight").FillNormal(0, LinearInitStd)
		if cfg.MLPProjInitStd != nil {
			ps.get(p+"mlp.c_proj.weight").FillNormal(0, *cfg.MLPProjInitStd)
		}

		switch cfg.TieValprojInit {
		case TieAllBlocks:
			torch.WithScope(func(*torch.Scope) {
				ps.get(p + "attn.c_proj.id").CopyFrom(ps.get(p + "attn.v_attn.id").T())
			})
		case TieLastBlock:
			vInit, pInit := ps.get(p+"attn.v_attn.id"), ps.get(p+"attn.c_proj.id")
			s := torch.NewScope()
			var next *torch.Tensor
			switch {
			case i == 0:
				next = vInit.Matmul(pInit)
			case i < cfg.NLayer-1:
				next = tie.Matmul(vInit).Matmul(pInit)
			default:
				pInit.CopyFrom(tie.Matmul(vInit).T())
			}
			if next != nil {
				s.Keep(next)
			}
			s.Close()
			tie.Free()
			tie = next
		}
	}
	ps.get("transformer.ln_f.weight").Fill(1)
}

// initVP initialises a value or projection layer (Eq. 6 when reparameterised).
func initVP(ps *Params, prefix string, l VPLayer, d int64) {
	switch l.Form {
	case LinearPlain:
		w := ps.get(prefix + ".weight")
		switch l.Init {
		case InitOrth:
			w.FillOrthogonal(1)
		case InitID:
			torch.WithScope(func(*torch.Scope) { w.CopyFrom(torch.Eye(d, d, w.DType(), w.Device())) })
		default:
			w.FillNormal(0, LinearInitStd)
		}
	case LinearReparam:
		ps.get(prefix + ".resid_gain").Fill(l.ResidGain)
		ps.get(prefix + ".skip_gain").Fill(l.SkipGain)
		id := ps.get(prefix + ".id")
		switch l.Init {
		case InitOrth:
			id.FillOrthogonal(1)
		case InitID:
			torch.WithScope(func(*torch.Scope) { id.CopyFrom(torch.Eye(d, d, id.DType(), id.Device())) })
		default:
			id.FillNormal(0, 1/math.Sqrt(float64(d)))
		}
	}
}
