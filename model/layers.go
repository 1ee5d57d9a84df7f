package model

import (
	"math"
	"strings"

	"clm/torch"
)

// norm is ln_1, ln_2, ln_f, q_norm or k_norm: a LayerNorm, an RMSNorm, or
// the identity.
type norm struct {
	kind   NormType
	weight *torch.Tensor // LayerNorm weight or RMSNorm scale
	bias   *torch.Tensor // LayerNorm only
	eps    float64
	width  int64
}

// newNorm declares a norm of the given width under p (weight and bias of a
// LayerNorm, the scale of an RMSNorm, nothing for the identity).
func newNorm(p path, kind NormType, width int64, eps float64) norm {
	n := norm{kind: kind, eps: eps, width: width}
	switch kind {
	case NormLN:
		n.weight = p.param("weight", RoleNorm, true, constant(1), width)
		n.bias = p.param("bias", RoleNorm, true, zeros, width)
	case NormRMS:
		n.weight = p.param("scale", RoleNorm, true, constant(1), width)
	}
	return n
}

// forward normalises over the last dim. RMSNorm is
// scale · x / (‖x‖₂·d^-½ + eps): eps is added to the RMS, as the original
// computes it.
func (n norm) forward(p *pass, x *torch.Tensor) *torch.Tensor {
	switch n.kind {
	case NormLN:
		return torch.LayerNorm(x, []int64{n.width}, n.weight, n.bias, n.eps)
	case NormRMS:
		return p.k.rmsNorm(x, n.weight, n.width, n.eps)
	}
	return x
}

// linear is the original's MyConv1D: y = x·W + b with W stored [in, out]
// (HF Conv1D layout) and b a zero bias (trainable only in qk_attn).
//
// Value and projection layers may be reparameterised (Eq. 6 of Simplifying
// Transformer Blocks):
//
//	W = resid_gain · W_train + skip_gain · W_init
//
// with W_train zero-initialised and W_init a fixed buffer (identity,
// orthogonal or normal(1/√d)). When resid_gain is 0 and W_init is the
// identity the layer is just b + skip_gain·x, and with skip gain 1 as well
// it is the identity and has no parameters at all.
type linear struct {
	form      LinearForm
	scaleOnly bool
	weight    *torch.Tensor // [in, out]: W (plain) or W_train (Eq. 6)
	bias      *torch.Tensor // [out]
	residGain *torch.Tensor // [1], Eq. 6 only
	skipGain  *torch.Tensor // [1], Eq. 6 only
	winit     *torch.Tensor // [in, in] buffer W_init, Eq. 6 only
	in, out   int64
	name      string // path in the module tree, e.g. "transformer.h.0.mlp.c_fc"
}

// newLinear declares a linear layer in → out under p, built as l says
// (plain or Eq. 6; the identity declares nothing). The zero bias is
// trainable only when trainBias (qk_attn). A plain W is initialised by
// l.Init (normal is normal(0, 0.02)); an Eq. 6 layer starts with W_train 0,
// its gains at their values and W_init by l.Init (normal is normal(0, 1/√in)).
func newLinear(p path, l VPLayer, trainBias bool, in, out int64) linear {
	lin := linear{form: l.Form, scaleOnly: l.ScaleOnly, in: in, out: out, name: strings.TrimSuffix(p.prefix, ".")}
	switch l.Form {
	case LinearPlain:
		lin.bias = p.param("bias", RoleBias, trainBias, zeros, out)
		lin.weight = p.param("weight", RoleMatrix, true, matrixInit(l.Init, LinearInitStd), in, out)
	case LinearReparam:
		lin.bias = p.param("bias", RoleBias, trainBias, zeros, out)
		lin.residGain = p.param("resid_gain", RoleGain, l.TrainableGains, constant(l.ResidGain), 1)
		lin.skipGain = p.param("skip_gain", RoleGain, l.TrainableGains, constant(l.SkipGain), 1)
		lin.weight = p.param("weight", RoleMatrix, true, zeros, in, out)
		lin.winit = p.buffer("id", matrixInit(l.Init, invSqrt(in)), in, in)
	}
	return lin
}

// plainLinear is a plain layer with W ~ normal(0, 0.02) (qk_attn, the MLP).
var plainLinear = VPLayer{Form: LinearPlain, Init: InitNormal}

// forward maps [..., in] to [..., out]. The pass's quantiser, if any, sees
// the layer's input, flattened to [N, in], and its effective weight W
// [in, out] (Eq. 6 combined), and may replace both; the scale-only and
// identity forms have no matrix product and are not shown to it.
func (l linear) forward(p *pass, x *torch.Tensor) *torch.Tensor {
	switch {
	case l.form == LinearIdentity:
		return x
	case l.scaleOnly:
		// b + skip_gain·x: W_train and resid_gain stay out of the graph.
		return l.bias.Add(x.Mul(l.skipGain))
	}
	w := l.weight
	if l.form == LinearReparam {
		// Eq. 6: W = resid_gain·W_train + skip_gain·W_init.
		w = p.k.combine([]*torch.Tensor{l.residGain, l.skipGain}, []*torch.Tensor{l.weight, l.winit})
	}
	shape := x.Shape()
	outShape := append(shape[:len(shape)-1:len(shape)-1], l.out)
	x2 := x.Reshape(-1, l.in)
	if p.quant != nil {
		x2, w = p.quant.Linear(l.name, x2, w)
	}
	y := torch.Addmm(l.bias, x2, w) // [N, out]
	return y.View(outShape...)
}

// activation applies the MLP nonlinearity with the op sequence of its
// Hugging Face (ACT2FN) definition (the leaky ReLU as k computes it).
func activation(k kernels, act Activation, slope float64, x *torch.Tensor) *torch.Tensor {
	switch act {
	case ActLeakyReLU:
		return k.leakyReLU(x, slope)
	case ActReLU:
		return x.Relu()
	case ActGELU:
		return x.Gelu()
	case ActGELUPyTorchTanh:
		return x.GeluTanh()
	case ActGELUNew:
		// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
		inner := x.Add(x.PowScalar(3).MulScalar(0.044715)).MulScalar(math.Sqrt(2 / math.Pi))
		return x.MulScalar(0.5).Mul(inner.Tanh().AddScalar(1))
	case ActGELUFast:
		// 0.5·x·(1 + tanh(0.7978845608·x·(1 + 0.044715·x²)))
		inner := x.MulScalar(0.7978845608).Mul(x.MulScalar(0.044715).Mul(x).AddScalar(1))
		return x.MulScalar(0.5).Mul(inner.Tanh().AddScalar(1))
	case ActQuickGELU:
		return x.Mul(x.MulScalar(1.702).Sigmoid())
	case ActSiLU, ActSwish:
		return x.Mul(x.Sigmoid())
	case ActTanh:
		return x.Tanh()
	case ActSigmoid:
		return x.Sigmoid()
	}
	panic("model: unknown activation " + string(act))
}
