package torch

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/safetensors"
)

// An input of an op case: a deterministic random tensor.
type inSpec struct {
	name  string
	shape []int64
	kind  string // "randn", "pos" (in [0.5, 2]), "int:N" (int64 in [0, N)), "bool", "target:N" (int64 with some −100)
	grad  bool   // requires grad (float kinds only)
}

// An op case runs the same function in Go and, by name, in
// scripts/reference/ops.py.
type opCase struct {
	name   string
	inputs []inSpec
	seed   uint64 // non-zero: torch.manual_seed(seed) right before the op
	f      func(in map[string]*Tensor, dt DType) *Tensor
}

func x(shape ...int64) inSpec { return inSpec{name: "x", shape: shape, kind: "randn", grad: true} }
func y(shape ...int64) inSpec { return inSpec{name: "y", shape: shape, kind: "randn", grad: true} }
func pos(n string, shape ...int64) inSpec {
	return inSpec{name: n, shape: shape, kind: "pos", grad: true}
}
func nograd(s inSpec) inSpec { s.grad = false; return s }

// opCases lists every exposed op with autograd (and the creation and
// random-init ops, which have no gradient).
var opCases = []opCase{
	{"neg", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Neg() }},
	{"exp", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Exp() }},
	{"log", []inSpec{pos("x", 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Log() }},
	{"sqrt", []inSpec{pos("x", 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Sqrt() }},
	{"rsqrt", []inSpec{pos("x", 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Rsqrt() }},
	{"tanh", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Tanh() }},
	{"relu", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Relu() }},
	{"sigmoid", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Sigmoid() }},
	{"abs", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Abs() }},
	{"sign", []inSpec{nograd(x(3, 4))}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Sign() }},
	{"square", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Square() }},
	{"clone", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Clone() }},
	{"t_contiguous", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].T().Contiguous() }},
	{"add", []inSpec{x(3, 4), y(4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Add(in["y"]) }},
	{"sub", []inSpec{x(3, 4), y(3, 1)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Sub(in["y"]) }},
	{"mul", []inSpec{x(3, 4), y(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Mul(in["y"]) }},
	{"div", []inSpec{x(3, 4), pos("y", 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Div(in["y"]) }},
	{"pow", []inSpec{pos("x", 3, 4), y(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Pow(in["y"]) }},
	{"matmul", []inSpec{x(2, 3, 5), y(5, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Matmul(in["y"]) }},
	{"maximum", []inSpec{x(3, 4), y(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Maximum(in["y"]) }},
	{"minimum", []inSpec{x(3, 4), y(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Minimum(in["y"]) }},
	{"add_scalar", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].AddScalar(0.5) }},
	{"mul_scalar", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].MulScalar(-1.5) }},
	{"div_scalar", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].DivScalar(3) }},
	{"pow_scalar", []inSpec{pos("x", 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].PowScalar(1.5) }},
	{"rsub_scalar", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].RSubScalar(2) }},
	{"clamp_min", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].ClampMin(0.1) }},
	{"clamp_max", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].ClampMax(0.1) }},
	{"compare", []inSpec{nograd(x(3, 4)), nograd(y(3, 4))}, 0, func(in map[string]*Tensor, dt DType) *Tensor {
		a, b := in["x"], in["y"]
		parts := []*Tensor{a.Eq(b), a.Ne(b), a.Lt(b), a.Le(b), a.Gt(b), a.Ge(b),
			a.EqScalar(0), a.NeScalar(0), a.LtScalar(0.2), a.LeScalar(0.2), a.GtScalar(-0.3), a.GeScalar(-0.3), a.GtScalar(0).LogicalNot()}
		for i, p := range parts {
			parts[i] = p.ToDType(dt)
		}
		return Stack(parts, 0)
	}},
	{"where", []inSpec{x(3, 4), y(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return Where(in["x"].GeScalar(0), in["x"], in["y"].MulScalar(0.1))
	}},
	{"addmm", []inSpec{x(4), y(3, 5), {name: "w", shape: []int64{5, 4}, kind: "randn", grad: true}}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return Addmm(in["x"], in["y"], in["w"])
	}},
	{"addmm_scaled", []inSpec{x(4), y(3, 5), {name: "w", shape: []int64{5, 4}, kind: "randn", grad: true}}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return AddmmScaled(in["x"], in["y"], in["w"], -4.775, 2.0315)
	}},
	{"addmm_scaled_bf16", []inSpec{nograd(x(4, 4)), nograd(y(4, 4))}, 0, func(in map[string]*Tensor, dt DType) *Tensor {
		a, b := in["x"].ToDType(BFloat16), in["y"].ToDType(BFloat16)
		return AddmmScaled(a, b, a.T(), 3.4445, 1).ToDType(dt)
	}},
	{"lerp", []inSpec{x(3, 4), y(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return Cat([]*Tensor{in["x"].Lerp(in["y"], 0.05), in["x"].Lerp(in["y"], 0.95)}, 0)
	}},
	{"lerp_inplace", []inSpec{nograd(x(3, 4)), nograd(y(3, 4))}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return Cat([]*Tensor{in["x"].Clone().LerpInPlace(in["y"], 0.05), in["x"].Clone().LerpInPlace(in["y"], 0.95)}, 0)
	}},
	{"linear", []inSpec{x(2, 3, 5), {name: "w", shape: []int64{4, 5}, kind: "randn", grad: true}, {name: "b", shape: []int64{4}, kind: "randn", grad: true}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return Linear(in["x"], in["w"], in["b"]) }},
	{"linear_nobias", []inSpec{x(2, 3, 5), {name: "w", shape: []int64{4, 5}, kind: "randn", grad: true}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return Linear(in["x"], in["w"], nil) }},
	{"embedding", []inSpec{{name: "w", shape: []int64{10, 4}, kind: "randn", grad: true}, {name: "i", shape: []int64{2, 5}, kind: "int:10"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return Embedding(in["w"], in["i"]) }},
	{"softmax", []inSpec{x(2, 3, 5)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Softmax(-1) }},
	{"log_softmax", []inSpec{x(2, 3, 5)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].LogSoftmax(1) }},
	{"gelu", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Gelu() }},
	{"gelu_tanh", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].GeluTanh() }},
	{"leaky_relu", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].LeakyRelu(0.1) }},
	{"layer_norm", []inSpec{x(2, 3, 8), {name: "w", shape: []int64{8}, kind: "randn", grad: true}, {name: "b", shape: []int64{8}, kind: "randn", grad: true}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor {
			return LayerNorm(in["x"], []int64{8}, in["w"], in["b"], 1e-5)
		}},
	{"dropout", []inSpec{x(4, 16)}, 1234, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Dropout(0.3, true) }},
	{"dropout_eval", []inSpec{x(4, 16)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Dropout(0.3, false) }},
	{"cross_entropy_mean", []inSpec{x(6, 7), {name: "t", shape: []int64{6}, kind: "target:7"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return CrossEntropy(in["x"], in["t"], -100, ReduceMean) }},
	{"cross_entropy_sum", []inSpec{x(6, 7), {name: "t", shape: []int64{6}, kind: "target:7"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return CrossEntropy(in["x"], in["t"], -100, ReduceSum) }},
	{"cross_entropy_none", []inSpec{x(6, 7), {name: "t", shape: []int64{6}, kind: "int:7"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return CrossEntropy(in["x"], in["t"], 3, ReduceNone) }},
	{"sdpa_causal", []inSpec{{name: "q", shape: []int64{2, 2, 5, 4}, kind: "randn", grad: true}, {name: "k", shape: []int64{2, 2, 5, 4}, kind: "randn", grad: true}, {name: "v", shape: []int64{2, 2, 5, 4}, kind: "randn", grad: true}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return SDPA(in["q"], in["k"], in["v"], nil, 0, true, 0) }},
	{"sdpa_mask_scale", []inSpec{{name: "q", shape: []int64{2, 2, 5, 4}, kind: "randn", grad: true}, {name: "k", shape: []int64{2, 2, 5, 4}, kind: "randn", grad: true}, {name: "v", shape: []int64{2, 2, 5, 4}, kind: "randn", grad: true}, {name: "m", shape: []int64{5, 5}, kind: "bool"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor {
			m := orMask(in["m"], Eye(5, 5, Bool, CPU)) // keep the diagonal so no row is empty
			return SDPA(in["q"], in["k"], in["v"], m, 0, false, 0.3)
		}},
	{"sum_all", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Sum(false) }},
	{"sum_dims", []inSpec{x(2, 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Sum(true, 0, 2) }},
	{"mean_all", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Mean(false) }},
	{"mean_dim", []inSpec{x(2, 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Mean(false, -1) }},
	{"var_bessel", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Var(1, false, 1) }},
	{"var_population", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Var(0, true, 0) }},
	{"var_all", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Var(1, false) }},
	{"norm_dim", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Norm(2, false, 1) }},
	{"norm_all", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Norm(2, false) }},
	{"amax", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Abs().Amax(true, 1) }},
	{"max_dim", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Max(0, false) }},
	{"max_all", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Max(AllDims, false) }},
	{"median_dim", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Median(1, false) }},
	{"median_all", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Median(AllDims, false) }},
	{"cumsum", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Cumsum(1) }},
	{"eigh_vals", []inSpec{x(5, 5)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		v, _ := in["x"].Add(in["x"].T()).Eigh()
		return v
	}},
	{"eigh_vecs_abs", []inSpec{x(5, 5)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		_, e := in["x"].Add(in["x"].T()).Eigh()
		return e.Abs()
	}},
	{"qr_q", []inSpec{x(6, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { q, _ := in["x"].QR(); return q }},
	{"qr_r", []inSpec{x(6, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { _, r := in["x"].QR(); return r }},
	{"sort_desc", []inSpec{x(3, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { v, _ := in["x"].Sort(1, true); return v }},
	{"sort_idx", []inSpec{nograd(x(5, 3))}, 0, func(in map[string]*Tensor, dt DType) *Tensor {
		_, i := in["x"].Sort(0, false)
		return i.ToDType(dt)
	}},
	{"fake_quant_tensor", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return in["x"].MulScalar(10).FakeQuantize(0.1, 3, -128, 127)
	}},
	{"fake_quant_clamped", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return in["x"].FakeQuantize(0.01, 0, -8, 7)
	}},
	{"fake_quant_channel", []inSpec{x(3, 4), nograd(pos("s", 3)), {name: "z", shape: []int64{3}, kind: "int:5"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor {
			return in["x"].MulScalar(10).FakeQuantizePerChannel(in["s"].ToDType(Float32), in["z"].ToDType(Int32), 0, -128, 127)
		}},
	{"reshape_view", []inSpec{x(2, 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return in["x"].Reshape(6, -1).View(4, 6).MulScalar(2)
	}},
	{"permute_transpose", []inSpec{x(2, 3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return in["x"].Permute(2, 0, 1).Transpose(0, 1).Contiguous()
	}},
	{"unsqueeze_expand_squeeze", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		return in["x"].Unsqueeze(1).Expand(3, 2, 4).Unsqueeze(0).Squeeze(0).Contiguous()
	}},
	{"narrow", []inSpec{x(4, 6)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Narrow(1, 2, 3) }},
	{"index_select", []inSpec{x(5, 3), {name: "i", shape: []int64{4}, kind: "int:5"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].IndexSelect(0, in["i"]) }},
	{"cat", []inSpec{x(2, 3), y(4, 3)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return Cat([]*Tensor{in["x"], in["y"]}, 0) }},
	{"stack", []inSpec{x(2, 3), y(2, 3)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return Stack([]*Tensor{in["x"], in["y"]}, 1) }},
	{"split", []inSpec{x(3, 7)}, 0, func(in map[string]*Tensor, _ DType) *Tensor {
		parts := in["x"].Split(3, 1) // sizes 3, 3, 1
		for i, p := range parts {
			parts[i] = p.MulScalar(float64(i + 1))
		}
		return Cat(parts, 1)
	}},
	{"tril", []inSpec{x(4, 5)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Tril(0) }},
	{"triu", []inSpec{x(4, 5)}, 0, func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].Triu(1) }},
	{"masked_fill", []inSpec{x(4, 5), {name: "m", shape: []int64{4, 5}, kind: "bool"}}, 0,
		func(in map[string]*Tensor, _ DType) *Tensor { return in["x"].MaskedFill(in["m"], -7.5) }},
	{"to_dtype", []inSpec{x(3, 4)}, 0, func(in map[string]*Tensor, dt DType) *Tensor {
		o := Float64
		if dt == Float64 {
			o = Float32
		}
		return in["x"].ToDType(o).ToDType(dt)
	}},
	{"normal_", nil, 7, func(_ map[string]*Tensor, dt DType) *Tensor {
		return Zeros([]int64{5, 6}, dt, CPU).FillNormal(0.5, 0.02)
	}},
	{"uniform_", nil, 8, func(_ map[string]*Tensor, dt DType) *Tensor {
		return Zeros([]int64{5, 6}, dt, CPU).FillUniform(-0.1, 0.3)
	}},
	{"orthogonal_tall", nil, 9, func(_ map[string]*Tensor, dt DType) *Tensor { return Zeros([]int64{6, 4}, dt, CPU).FillOrthogonal(1.5) }},
	{"orthogonal_wide", nil, 10, func(_ map[string]*Tensor, dt DType) *Tensor { return Zeros([]int64{3, 5}, dt, CPU).FillOrthogonal(1) }},
	{"randn", nil, 11, func(_ map[string]*Tensor, dt DType) *Tensor { return Randn([]int64{4, 3}, dt, CPU) }},
	{"rand", nil, 12, func(_ map[string]*Tensor, dt DType) *Tensor { return Rand([]int64{4, 3}, dt, CPU) }},
	{"creation", nil, 0, func(_ map[string]*Tensor, dt DType) *Tensor {
		return Cat([]*Tensor{
			Arange(0, 6, 1, dt, CPU), Arange(-1, 1, 0.5, dt, CPU), Eye(2, 3, dt, CPU).Reshape(-1),
			Full([]int64{2}, 3.25, dt, CPU), Ones([]int64{1}, dt, CPU), Zeros([]int64{1}, dt, CPU),
			Scalar(2.5, dt, CPU).Reshape(1),
		}, 0)
	}},
	{"copy_fill_inplace", []inSpec{nograd(x(3, 4))}, 0, func(in map[string]*Tensor, dt DType) *Tensor {
		t := Zeros([]int64{3, 4}, dt, CPU).CopyFrom(in["x"]).ScaleInPlace(2)
		t.AddInPlace(Full([]int64{3, 4}, 1, dt, CPU), 0.5)
		u := Zeros([]int64{2}, dt, CPU).Fill(-3)
		return Cat([]*Tensor{t.Reshape(-1), u}, 0)
	}},
}

// orMask is the logical or of two bool tensors.
func orMask(a, b *Tensor) *Tensor {
	return a.ToDType(Int64).Add(b.ToDType(Int64)).GtScalar(0)
}

func caseRand(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(h.Sum64(), 42))
}

func makeInput(r *rand.Rand, s inSpec, dt DType) *Tensor {
	n := numel(s.shape)
	switch {
	case s.kind == "randn" || s.kind == "pos":
		v := make([]float64, n)
		for i := range v {
			if s.kind == "pos" {
				v[i] = 0.5 + 1.5*r.Float64()
			} else {
				v[i] = r.NormFloat64()
			}
		}
		t := FromFloat64(v, s.shape...).ToDType(dt)
		if s.grad {
			t.SetRequiresGrad(true)
		}
		return t
	case s.kind == "bool":
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(r.IntN(2))
		}
		return FromInt64(v, s.shape...).GtScalar(0)
	case strings.HasPrefix(s.kind, "int:") || strings.HasPrefix(s.kind, "target:"):
		var hi int
		fmt.Sscanf(s.kind[strings.Index(s.kind, ":")+1:], "%d", &hi)
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(r.IntN(hi))
			if strings.HasPrefix(s.kind, "target:") && i%3 == 1 {
				v[i] = -100
			}
		}
		return FromInt64(v, s.shape...)
	}
	panic("unknown input kind " + s.kind)
}

type caseSpec struct {
	Name   string   `json:"name"`
	Inputs []string `json:"inputs"`
	Grads  []string `json:"grads"`
	Seed   uint64   `json:"seed"`
	Cot    bool     `json:"cot"`
}

// TestOpParity runs every op case in Go and in PyTorch on the same inputs and
// compares outputs and input gradients (fp32: ≤ 1e-6 relative to scale;
// fp64: ≤ 1e-12).
func TestOpParity(t *testing.T) {
	pyref.Require(t)
	leakCheck(t)
	for _, dt := range []DType{Float32, Float64} {
		t.Run(dt.String(), func(t *testing.T) { runOpParity(t, dt) })
	}
}

func runOpParity(t *testing.T, dt DType) {
	s := NewScope()
	defer s.Close()
	var specs []caseSpec
	var inputs []Named
	goOut := map[string]*Tensor{}
	for _, c := range opCases {
		specs = append(specs, runOpCase(t, c, dt, &inputs, goOut))
	}
	f := opReference(t, specs, inputs)
	tol := 1e-6
	if dt == Float64 {
		tol = 1e-12
	}
	compared := compareOpOutputs(t, f, goOut, tol)
	t.Logf("%s: %d op cases, %d tensors (outputs and gradients) agree with PyTorch", dt, len(opCases), compared)
}

// runOpCase runs c in Go on inputs drawn for dt: it appends the inputs (and
// the cotangent, for cases with gradients) to inputs under the reference's
// names, stores the output and the input gradients in goOut, and returns the
// case's description for the reference.
func runOpCase(t *testing.T, c opCase, dt DType, inputs *[]Named, goOut map[string]*Tensor) caseSpec {
	t.Helper()
	r := caseRand(c.name)
	in := map[string]*Tensor{}
	spec := caseSpec{Name: c.name, Seed: c.seed}
	for _, is := range c.inputs {
		v := makeInput(r, is, dt)
		in[is.name] = v
		spec.Inputs = append(spec.Inputs, is.name)
		if is.grad {
			spec.Grads = append(spec.Grads, is.name)
		}
		*inputs = append(*inputs, Named{c.name + "." + is.name, v.Detach()})
	}
	if c.seed != 0 {
		ManualSeed(c.seed)
	}
	out := c.f(in, dt)
	goOut[c.name+".out"] = out
	if len(spec.Grads) > 0 {
		cv := make([]float64, out.Numel())
		for i := range cv {
			cv[i] = r.NormFloat64()
		}
		cot := FromFloat64(cv, out.Shape()...).ToDType(dt)
		*inputs = append(*inputs, Named{c.name + ".cot", cot})
		spec.Cot = true
		out.Mul(cot).Sum(false).Backward()
		for _, g := range spec.Grads {
			gr := in[g].Grad()
			if gr == nil {
				t.Fatalf("%s: no gradient for %s", c.name, g)
			}
			goOut[c.name+".grad."+g] = gr
			in[g].ZeroGrad()
		}
	}
	return spec
}

// opReference runs scripts/reference/ops.py on the cases and their inputs and
// returns its output file.
func opReference(t *testing.T, specs []caseSpec, inputs []Named) *safetensors.File {
	t.Helper()
	dir := t.TempDir()
	inPath := filepath.Join(dir, "in.safetensors")
	if err := SaveSafetensors(inPath, inputs, nil); err != nil {
		t.Fatal(err)
	}
	specJSON, _ := json.Marshal(specs)
	specPath := filepath.Join(dir, "cases.json")
	if err := os.WriteFile(specPath, specJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "out.safetensors")
	pyref.Run(t, "ops.py", inPath, specPath, outPath)

	f, err := safetensors.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// compareOpOutputs checks that the reference produced exactly the tensors of
// goOut, each within tol (see allClose), and returns how many it compared.
// It empties goOut.
func compareOpOutputs(t *testing.T, f *safetensors.File, goOut map[string]*Tensor, tol float64) int {
	t.Helper()
	compared := 0
	for _, name := range f.Names() {
		g, ok := goOut[name]
		if !ok {
			t.Errorf("reference produced %s, which Go did not", name)
			continue
		}
		ref, err := TensorFromFile(f, name, CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := allClose(g, ref, tol); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		compared++
		delete(goOut, name)
	}
	for name := range goOut {
		t.Errorf("%s: missing from the reference output", name)
	}
	return compared
}

// allClose checks max|a−b| ≤ tol·max(1, max|b|) and equal shapes.
func allClose(a, b *Tensor, tol float64) error {
	sa, sb := a.Shape(), b.Shape()
	if fmt.Sprint(sa) != fmt.Sprint(sb) {
		return fmt.Errorf("shape %v, reference %v", sa, sb)
	}
	av := a.ToDType(Float64).Float64s()
	bv := b.ToDType(Float64).Float64s()
	scale, maxErr := 1.0, 0.0
	for i := range bv {
		scale = math.Max(scale, math.Abs(bv[i]))
		d := math.Abs(av[i] - bv[i])
		if math.IsNaN(d) && !(math.IsNaN(av[i]) && math.IsNaN(bv[i])) {
			return fmt.Errorf("element %d: %v vs reference %v", i, av[i], bv[i])
		}
		maxErr = math.Max(maxErr, d)
	}
	if maxErr > tol*scale {
		return fmt.Errorf("max abs error %.3g exceeds %.3g (scale %.3g)", maxErr, tol*scale, scale)
	}
	return nil
}
