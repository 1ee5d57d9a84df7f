package model

import "clm/torch"

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
	return torch.Try(func() {
		for _, p := range m.params.list {
			p.T.Fill(0)
		}
		for _, st := range m.inits {
			st.rule.fill(st.t)
		}
		m.tieValProjInit()
	})
}

// tieValProjInit ties the blocks' fixed W_init matrices
// (tie_valproj_init): all_blocks sets W^P_init = (W^V_init)ᵀ in every
// block; last_block sets the last block's W^P_init = (V₀P₀V₁P₁…V_{L−1})ᵀ.
func (m *Model) tieValProjInit() {
	var tie *torch.Tensor // running product V₀P₀…
	defer func() { tie.Free() }()
	for i := range m.blocks {
		vInit, pInit := m.blocks[i].attn.v.winit, m.blocks[i].attn.proj.winit
		switch m.cfg.TieValprojInit {
		case TieAllBlocks:
			torch.WithScope(func(*torch.Scope) { pInit.CopyFrom(vInit.T()) })
		case TieLastBlock:
			s := torch.NewScope()
			var next *torch.Tensor
			switch {
			case i == 0:
				next = vInit.Matmul(pInit)
			case i < len(m.blocks)-1:
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
}
