package model

import (
	"fmt"
	"math"

	"clm/torch"
)

// AttentionImpl selects how shaped attention is computed.
type AttentionImpl int

const (
	// AttentionAuto uses AttentionFused where it is exact (no tanh logit
	// capping, no attention dropout while training, attention
	// probabilities not requested) and AttentionMaterialised otherwise.
	AttentionAuto AttentionImpl = iota
	// AttentionFused never builds the T×T matrix. Eq. 5 distributes over V:
	//
	//	A'·V = attn_mat_resid_gain·softmax(QKᵀ/√d_h)·V
	//	       + attn_mat_skip_gain·V − centre_attn_gain·C·V
	//
	// where softmax(…)·V is libtorch's scaled_dot_product_attention and
	// C·V, the causal uniform matrix times V, is the running mean of V
	// along the sequence (cumsum divided by position).
	AttentionFused
	// AttentionMaterialised builds A' [B, H, T, T] as the original does.
	AttentionMaterialised
)

// checkAttention reports whether impl can compute cfg's attention exactly.
func checkAttention(cfg *Config, impl AttentionImpl) error {
	if impl != AttentionFused {
		return nil
	}
	switch {
	case cfg.DotNormType != DotNormNone:
		return fmt.Errorf("model: fused attention cannot apply dot_norm_type %q; use auto or materialised", cfg.DotNormType)
	case cfg.AttnPdrop > 0:
		return fmt.Errorf("model: fused attention cannot apply attn_pdrop %v to the shaped matrix; use auto or materialised", cfg.AttnPdrop)
	}
	return nil
}

// ParseAttentionImpl parses "auto", "fused" or "materialised" (also
// "materialized").
func ParseAttentionImpl(s string) (AttentionImpl, error) {
	switch s {
	case "auto", "":
		return AttentionAuto, nil
	case "fused":
		return AttentionFused, nil
	case "materialised", "materialized":
		return AttentionMaterialised, nil
	}
	return AttentionAuto, fmt.Errorf("unknown attention implementation %q (want auto, fused or materialised)", s)
}

// MarshalText writes the name ParseAttentionImpl reads (experiment files).
func (a AttentionImpl) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses a name, as ParseAttentionImpl.
func (a *AttentionImpl) UnmarshalText(b []byte) error {
	v, err := ParseAttentionImpl(string(b))
	if err == nil {
		*a = v
	}
	return err
}

func (a AttentionImpl) String() string {
	switch a {
	case AttentionFused:
		return "fused"
	case AttentionMaterialised:
		return "materialised"
	}
	return "auto"
}

// attention is the attention sub-block of one layer: qk_attn, the value
// and projection layers (Eq. 6), optional per-head q/k norms (the OP block)
// and the shaped-attention gains (Eq. 5).
type attention struct {
	cfg            *Config
	qk             linear // d → 2d; columns [0, d) are W^Q, [d, 2d) W^K
	v, proj        linear
	qNorm, kNorm   norm
	matResid       *torch.Tensor // attn_mat_resid_gain [1, H, 1, 1]
	matSkip        *torch.Tensor // attn_mat_skip_gain  [1, H, 1, 1]
	centre         *torch.Tensor // centre_attn_gain    [1, H, 1, 1]
	nHead, headDim int64
	nEmbd          int64
}

// newAttention declares the attention of block `layer` under p, in the
// original's order: the Eq. 5 gains [1, H, 1, 1], qk_attn, v_attn, c_proj
// and the OP block's q/k norms. Then the original's re-initialisations:
// W^Q and W^K (query_init_std, key_init_std; 0 makes W^Q = 0, so that
// shaped attention starts as the identity, Simplifying Transformer Blocks
// §4.1), and the value and projection weights (val_proj_init_std).
func newAttention(p path, cfg *Config, layer int) attention {
	d, H, hd := int64(cfg.NEmbd), int64(cfg.NHead), int64(cfg.HeadDim)
	gains := cfg.TrainableAttnMatGains
	a := attention{cfg: cfg, nHead: H, headDim: hd, nEmbd: d}
	a.matResid = p.param("attn_mat_resid_gain", RoleGain, gains, constant(cfg.AttnMatResidGain), 1, H, 1, 1)
	a.matSkip = p.param("attn_mat_skip_gain", RoleGain, gains, constant(cfg.AttnMatSkipGain), 1, H, 1, 1)
	a.centre = p.param("centre_attn_gain", RoleGain, gains && cfg.CentreAttnGain != 0, constant(cfg.CentreAttnGain), 1, H, 1, 1)
	a.qk = newLinear(p.sub("qk_attn"), plainLinear, true, d, 2*d)
	a.v = newLinear(p.sub("v_attn"), cfg.ValueLayer(layer), cfg.TrainableBiases, d, d)
	a.proj = newLinear(p.sub("c_proj"), cfg.ProjLayer(layer), cfg.TrainableBiases, d, d)
	if cfg.QKNormType == QKNormRMS {
		a.qNorm = newNorm(p.sub("q_norm"), NormRMS, hd, cfg.LayerNormEpsilon)
		a.kNorm = newNorm(p.sub("k_norm"), NormRMS, hd, cfg.LayerNormEpsilon)
	}
	if cfg.QueryInitStd != nil {
		p.reinit(a.qk.weight, columns(0, d, normal(*cfg.QueryInitStd)))
	}
	if cfg.KeyInitStd != nil {
		p.reinit(a.qk.weight, columns(d, d, normal(*cfg.KeyInitStd)))
	}
	if cfg.ValProjInitStd != nil {
		p.reinit(a.v.weight, normal(*cfg.ValProjInitStd))
		p.reinit(a.proj.weight, normal(*cfg.ValProjInitStd))
	}
	return a
}

// heads splits [B, T, d] into [B, H, T, d_h].
func (a *attention) heads(t *torch.Tensor, B, T int64) *torch.Tensor {
	return t.View(B, T, a.nHead, a.headDim).Permute(0, 2, 1, 3)
}

// forward returns the sub-block output [B, T, d] and, when the pass asks
// for them, the softmax probabilities [B, H, T, T] (before the Eq. 5
// gains).
func (a *attention) forward(p *pass, x *torch.Tensor) (out, probs *torch.Tensor) {
	s := x.Shape()
	B, T := s[0], s[1]
	qk := a.qk.forward(p, x).Split(a.nEmbd, 2) // 2 × [B, T, d]
	v := a.heads(a.v.forward(p, x), B, T)      // [B, H, T, d_h]
	q, k := a.qNorm.forward(p, a.heads(qk[0], B, T)), a.kNorm.forward(p, a.heads(qk[1], B, T))

	impl, train, wantProbs := p.impl, p.train, p.probs
	if impl == AttentionAuto {
		impl = AttentionMaterialised
		if a.cfg.DotNormType == DotNormNone && !(train && a.cfg.AttnPdrop > 0) {
			impl = AttentionFused
		}
	}
	if wantProbs {
		impl = AttentionMaterialised // the probabilities are the T×T matrix itself
	}
	var y *torch.Tensor // [B, H, T, d_h]
	if impl == AttentionFused {
		y = a.shapedFused(p.k, q, k, v, T)
	} else {
		y, probs = a.shapedMaterialised(q, k, v, T, train)
	}
	y = y.Permute(0, 2, 1, 3).Reshape(B, T, a.nEmbd) // merge heads
	out = a.proj.forward(p, y).Dropout(a.cfg.ResidPdrop, train && a.cfg.ResidPdrop > 0)
	if !wantProbs {
		probs = nil
	}
	return out, probs
}

// shapedMaterialised is Eq. 5 as the original computes it: out =
// dropout(A')·V with A' from shapedMatrix.
func (a *attention) shapedMaterialised(q, k, v *torch.Tensor, T int64, train bool) (out, probs *torch.Tensor) {
	A, probs := a.shapedMatrix(q, k, T, v.DType())
	A = A.Dropout(a.cfg.AttnPdrop, train && a.cfg.AttnPdrop > 0)
	return A.Matmul(v), probs
}

// shapedMatrix is the shaped attention matrix of Eq. 5, [B, H, T, T]:
//
//	P  = softmax(mask(QKᵀ/√d_h))           (optionally 30·tanh(·/30) first)
//	A' = attn_mat_resid_gain·P [+ attn_mat_skip_gain·I − centre_attn_gain·C]
//
// with C[i, j] = 1/(i+1) for j ≤ i, the causal uniform matrix. It returns A'
// (in dt) and P.
func (a *attention) shapedMatrix(q, k *torch.Tensor, T int64, dt torch.DType) (A, probs *torch.Tensor) {
	dev := q.Device()
	logits := q.Matmul(k.Transpose(-1, -2)) // [B, H, T, T]
	logits = logits.Div(torch.Scalar(math.Sqrt(float64(a.headDim)), logits.DType(), dev))
	if a.cfg.DotNormType == DotNormTanh {
		up := logits
		if ld := logits.DType(); ld != torch.Float64 {
			up = logits.ToDType(torch.Float32)
		}
		logits = up.DivScalar(TanhSoftcap).Tanh().MulScalar(TanhSoftcap)
	}
	causal := torch.Ones([]int64{T, T}, torch.Bool, dev).Tril(0)
	logits = torch.Where(causal, logits, torch.Scalar(lowest(logits.DType()), logits.DType(), dev))
	probs = logits.Softmax(-1)

	A = a.matResid.Mul(probs.ToDType(dt))
	if a.cfg.CentreAttn {
		eye := torch.Eye(T, T, dt, dev)
		C := causal.ToDType(dt).Div(torch.Arange(1, float64(T+1), 1, dt, dev).View(-1, 1))
		A = A.Add(a.matSkip.Mul(eye).Sub(a.centre.Mul(C)))
	}
	return A, probs
}

// shapedFused is Eq. 5 without the T×T matrix (see AttentionFused):
// resid·softmax(QKᵀ/√d_h)·V + skip·V − centre·C·V.
func (a *attention) shapedFused(k kernels, q, key, v *torch.Tensor, T int64) *torch.Tensor {
	sdpa := k.causalAttention(q, key, v) // softmax(QKᵀ/√d_h)·V
	if !a.cfg.CentreAttn {
		return a.matResid.Mul(sdpa)
	}
	return k.shapedEpilogue(sdpa, v, a.matResid, a.matSkip, a.centre, T)
}

// lowest is torch.finfo(dt).min, the original's mask value.
func lowest(dt torch.DType) float64 {
	switch dt {
	case torch.Float64:
		return -math.MaxFloat64
	case torch.Float16:
		return -65504
	case torch.BFloat16:
		return -3.3895313892515355e38
	}
	return -math.MaxFloat32
}
