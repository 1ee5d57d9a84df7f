package torch

/*
#include "clm_torch.h"
*/
import "C"

import (
	"math"
	"unsafe"
)

func (t *Tensor) unary(op C.int, name string) *Tensor {
	return result(name, C.clm_unary(op, t.handle()))
}

func (t *Tensor) binary(op C.int, name string, o *Tensor) *Tensor {
	return result(name, C.clm_binary(op, t.handle(), o.handle()))
}

func (t *Tensor) scalar(op C.int, name string, s float64) *Tensor {
	return result(name, C.clm_scalar(op, t.handle(), C.double(s)))
}

// ---- elementwise ------------------------------------------------------------

// Neg returns −t.
func (t *Tensor) Neg() *Tensor { return t.unary(C.CLM_UNARY_NEG, "neg") }

// Exp returns eᵗ.
func (t *Tensor) Exp() *Tensor { return t.unary(C.CLM_UNARY_EXP, "exp") }

// Log returns the natural logarithm.
func (t *Tensor) Log() *Tensor { return t.unary(C.CLM_UNARY_LOG, "log") }

// Sqrt returns √t.
func (t *Tensor) Sqrt() *Tensor { return t.unary(C.CLM_UNARY_SQRT, "sqrt") }

// Rsqrt returns 1/√t.
func (t *Tensor) Rsqrt() *Tensor { return t.unary(C.CLM_UNARY_RSQRT, "rsqrt") }

// Tanh returns tanh(t).
func (t *Tensor) Tanh() *Tensor { return t.unary(C.CLM_UNARY_TANH, "tanh") }

// Relu returns max(t, 0).
func (t *Tensor) Relu() *Tensor { return t.unary(C.CLM_UNARY_RELU, "relu") }

// Sigmoid returns 1/(1+e⁻ᵗ).
func (t *Tensor) Sigmoid() *Tensor { return t.unary(C.CLM_UNARY_SIGMOID, "sigmoid") }

// Abs returns |t|.
func (t *Tensor) Abs() *Tensor { return t.unary(C.CLM_UNARY_ABS, "abs") }

// Sign returns the sign of each element (−1, 0 or 1).
func (t *Tensor) Sign() *Tensor { return t.unary(C.CLM_UNARY_SIGN, "sign") }

// Square returns t².
func (t *Tensor) Square() *Tensor { return t.unary(C.CLM_UNARY_SQUARE, "square") }

// Contiguous returns t laid out in row-major order (t itself, as a new
// handle, when it already is).
func (t *Tensor) Contiguous() *Tensor { return t.unary(C.CLM_UNARY_CONTIGUOUS, "contiguous") }

// Clone returns a copy of t that autograd tracks.
func (t *Tensor) Clone() *Tensor { return t.unary(C.CLM_UNARY_CLONE, "clone") }

// Detach returns t's data without autograd history (shared storage).
func (t *Tensor) Detach() *Tensor { return t.unary(C.CLM_UNARY_DETACH, "detach") }

// T returns the transpose of a matrix.
func (t *Tensor) T() *Tensor { return t.unary(C.CLM_UNARY_T, "t") }

// LogicalNot returns the boolean negation.
func (t *Tensor) LogicalNot() *Tensor { return t.unary(C.CLM_UNARY_LOGICAL_NOT, "logical_not") }

// Add returns t + o (broadcasting).
func (t *Tensor) Add(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_ADD, "add", o) }

// Sub returns t − o.
func (t *Tensor) Sub(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_SUB, "sub", o) }

// Mul returns t · o elementwise.
func (t *Tensor) Mul(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_MUL, "mul", o) }

// Div returns t / o.
func (t *Tensor) Div(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_DIV, "div", o) }

// Matmul returns the matrix product with torch.matmul's broadcasting rules.
func (t *Tensor) Matmul(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_MATMUL, "matmul", o) }

// Maximum returns the elementwise maximum.
func (t *Tensor) Maximum(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_MAXIMUM, "maximum", o) }

// Minimum returns the elementwise minimum.
func (t *Tensor) Minimum(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_MINIMUM, "minimum", o) }

// Pow returns tᵒ elementwise.
func (t *Tensor) Pow(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_POW, "pow", o) }

// Eq returns t == o as a bool tensor.
func (t *Tensor) Eq(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_EQ, "eq", o) }

// Ne returns t != o.
func (t *Tensor) Ne(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_NE, "ne", o) }

// Lt returns t < o.
func (t *Tensor) Lt(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_LT, "lt", o) }

// Le returns t <= o.
func (t *Tensor) Le(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_LE, "le", o) }

// Gt returns t > o.
func (t *Tensor) Gt(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_GT, "gt", o) }

// Ge returns t >= o.
func (t *Tensor) Ge(o *Tensor) *Tensor { return t.binary(C.CLM_BINARY_GE, "ge", o) }

// AddScalar returns t + s.
func (t *Tensor) AddScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_ADD, "add", s) }

// MulScalar returns t · s.
func (t *Tensor) MulScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_MUL, "mul", s) }

// DivScalar returns t / s.
func (t *Tensor) DivScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_DIV, "div", s) }

// PowScalar returns tˢ.
func (t *Tensor) PowScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_POW, "pow", s) }

// RSubScalar returns s − t.
func (t *Tensor) RSubScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_RSUB, "rsub", s) }

// EqScalar returns t == s.
func (t *Tensor) EqScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_EQ, "eq", s) }

// NeScalar returns t != s.
func (t *Tensor) NeScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_NE, "ne", s) }

// LtScalar returns t < s.
func (t *Tensor) LtScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_LT, "lt", s) }

// LeScalar returns t <= s.
func (t *Tensor) LeScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_LE, "le", s) }

// GtScalar returns t > s.
func (t *Tensor) GtScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_GT, "gt", s) }

// GeScalar returns t >= s.
func (t *Tensor) GeScalar(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_GE, "ge", s) }

// ClampMin returns max(t, s).
func (t *Tensor) ClampMin(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_CLAMP_MIN, "clamp_min", s) }

// ClampMax returns min(t, s).
func (t *Tensor) ClampMax(s float64) *Tensor { return t.scalar(C.CLM_SCALAR_CLAMP_MAX, "clamp_max", s) }

// Where returns a where cond is true and b elsewhere.
func Where(cond, a, b *Tensor) *Tensor {
	return result("where", C.clm_where(cond.handle(), a.handle(), b.handle()))
}

// ---- linear algebra and layers -------------------------------------------------

// Addmm returns bias + a·b for matrices a, b.
func Addmm(bias, a, b *Tensor) *Tensor {
	return result("addmm", C.clm_addmm(bias.handle(), a.handle(), b.handle()))
}

// AddmmScaled returns beta·bias + alpha·a·b for matrices a, b (torch.addmm
// with beta and alpha, in one libtorch call so its rounding is libtorch's).
func AddmmScaled(bias, a, b *Tensor, beta, alpha float64) *Tensor {
	return result("addmm", C.clm_addmm_scaled(bias.handle(), a.handle(), b.handle(), C.double(beta), C.double(alpha)))
}

// Lerp returns t + weight·(end − t) (torch.lerp with a scalar weight).
func (t *Tensor) Lerp(end *Tensor, weight float64) *Tensor {
	return result("lerp", C.clm_lerp(t.handle(), end.handle(), C.double(weight)))
}

func optHandle(t *Tensor) C.clm_tensor {
	if t == nil {
		return nil
	}
	return t.handle()
}

// Linear returns x·wᵀ + bias with w stored [out, in]; bias may be nil.
func Linear(x, w, bias *Tensor) *Tensor {
	return result("linear", C.clm_linear(x.handle(), w.handle(), optHandle(bias)))
}

// Embedding looks up rows of weight [V, d] by integer indices.
func Embedding(weight, indices *Tensor) *Tensor {
	return result("embedding", C.clm_embedding(weight.handle(), indices.handle()))
}

// Softmax along dim.
func (t *Tensor) Softmax(dim int) *Tensor {
	return result("softmax", C.clm_softmax(t.handle(), C.int64_t(dim)))
}

// LogSoftmax along dim.
func (t *Tensor) LogSoftmax(dim int) *Tensor {
	return result("log_softmax", C.clm_log_softmax(t.handle(), C.int64_t(dim)))
}

// Gelu returns the exact (erf) GELU.
func (t *Tensor) Gelu() *Tensor { return result("gelu", C.clm_gelu(t.handle(), 0)) }

// GeluTanh returns GELU with the tanh approximation (HF's gelu_new).
func (t *Tensor) GeluTanh() *Tensor { return result("gelu", C.clm_gelu(t.handle(), 1)) }

// LeakyRelu returns t where t ≥ 0 and slope·t elsewhere.
func (t *Tensor) LeakyRelu(slope float64) *Tensor {
	return result("leaky_relu", C.clm_leaky_relu(t.handle(), C.double(slope)))
}

// LayerNorm normalises over the trailing dims of shape; weight and bias may
// be nil.
func LayerNorm(x *Tensor, shape []int64, weight, bias *Tensor, eps float64) *Tensor {
	sp, n := shapePtr(shape)
	return result("layer_norm", C.clm_layer_norm(x.handle(), sp, n, optHandle(weight), optHandle(bias), C.double(eps)))
}

// Dropout zeroes elements with probability p and scales the rest by
// 1/(1−p) when train is true; it returns t's values unchanged otherwise.
func (t *Tensor) Dropout(p float64, train bool) *Tensor {
	return result("dropout", C.clm_dropout(t.handle(), C.double(p), cbool(train)))
}

// Reduction selects how CrossEntropy combines per-element losses.
type Reduction int

// Reductions, with libtorch's codes.
const (
	ReduceNone Reduction = 0
	ReduceMean Reduction = 1
	ReduceSum  Reduction = 2
)

// CrossEntropy of logits [N, C] against int64 targets [N]; targets equal to
// ignoreIndex contribute nothing (and are not counted by the mean).
func CrossEntropy(logits, target *Tensor, ignoreIndex int64, red Reduction) *Tensor {
	return result("cross_entropy", C.clm_cross_entropy(logits.handle(), target.handle(), C.int64_t(ignoreIndex), C.int(red)))
}

// SDPA is scaled dot-product attention softmax(q·kᵀ·scale + mask)·v over the
// last two dims, with libtorch's fused kernel. mask may be nil (bool: true =
// keep; float: added); scale <= 0 means 1/√head_dim.
func SDPA(q, k, v, mask *Tensor, dropout float64, causal bool, scale float64) *Tensor {
	return result("scaled_dot_product_attention",
		C.clm_sdpa(q.handle(), k.handle(), v.handle(), optHandle(mask), C.double(dropout), cbool(causal), C.double(scale)))
}

// ---- reductions ---------------------------------------------------------------

func dimsPtr(d []int) (*C.int64_t, C.int) {
	if len(d) == 0 {
		return nil, 0
	}
	ds := make([]int64, len(d))
	for i, x := range d {
		ds[i] = int64(x)
	}
	return (*C.int64_t)(unsafe.Pointer(&ds[0])), C.int(len(ds))
}

// Sum over dims (all dims when none are given).
func (t *Tensor) Sum(keepdim bool, dims ...int) *Tensor {
	p, n := dimsPtr(dims)
	return result("sum", C.clm_sum(t.handle(), p, n, cbool(keepdim)))
}

// Mean over dims (all dims when none are given).
func (t *Tensor) Mean(keepdim bool, dims ...int) *Tensor {
	p, n := dimsPtr(dims)
	return result("mean", C.clm_mean(t.handle(), p, n, cbool(keepdim)))
}

// Var is the variance over dims (all when none) with the given correction:
// 1 for Bessel's (unbiased) estimate, 0 for the population variance.
func (t *Tensor) Var(correction int, keepdim bool, dims ...int) *Tensor {
	p, n := dimsPtr(dims)
	return result("var", C.clm_var(t.handle(), p, n, C.int64_t(correction), cbool(keepdim)))
}

// Norm is the vector p-norm over dims (all when none).
func (t *Tensor) Norm(p float64, keepdim bool, dims ...int) *Tensor {
	dp, n := dimsPtr(dims)
	return result("norm", C.clm_norm(t.handle(), C.double(p), dp, n, cbool(keepdim)))
}

// Amax is the maximum over dims (all when none).
func (t *Tensor) Amax(keepdim bool, dims ...int) *Tensor {
	p, n := dimsPtr(dims)
	return result("amax", C.clm_amax(t.handle(), p, n, cbool(keepdim)))
}

// AllDims selects a reduction over every element in Max and Median.
const AllDims = math.MinInt64

// Max returns the maximum values along dim (or over all elements with
// AllDims).
func (t *Tensor) Max(dim int, keepdim bool) *Tensor {
	return result("max", C.clm_max(t.handle(), C.int64_t(dim), cbool(keepdim)))
}

// Median returns the lower median along dim (or over all with AllDims), as
// torch.median.
func (t *Tensor) Median(dim int, keepdim bool) *Tensor {
	return result("median", C.clm_median(t.handle(), C.int64_t(dim), cbool(keepdim)))
}

// Cumsum returns the running sum along dim.
func (t *Tensor) Cumsum(dim int) *Tensor {
	return result("cumsum", C.clm_cumsum(t.handle(), C.int64_t(dim)))
}

// ---- shapes -------------------------------------------------------------------

// Reshape returns t with a new shape (a view when possible); one size may be −1.
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	sp, n := shapePtr(shape)
	return result("reshape", C.clm_reshape(t.handle(), sp, n))
}

// View returns a view of t with a new shape; t must be compatible.
func (t *Tensor) View(shape ...int64) *Tensor {
	sp, n := shapePtr(shape)
	return result("view", C.clm_view(t.handle(), sp, n))
}

// Expand broadcasts size-1 dims to shape without copying (−1 keeps a size).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	sp, n := shapePtr(shape)
	return result("expand", C.clm_expand(t.handle(), sp, n))
}

// Permute reorders the dims.
func (t *Tensor) Permute(dims ...int64) *Tensor {
	sp, n := shapePtr(dims)
	return result("permute", C.clm_permute(t.handle(), sp, n))
}

// Transpose swaps dims d0 and d1.
func (t *Tensor) Transpose(d0, d1 int) *Tensor {
	return result("transpose", C.clm_transpose(t.handle(), C.int64_t(d0), C.int64_t(d1)))
}

// Unsqueeze inserts a size-1 dim at dim.
func (t *Tensor) Unsqueeze(dim int) *Tensor {
	return result("unsqueeze", C.clm_unsqueeze(t.handle(), C.int64_t(dim)))
}

// Squeeze removes dim if its size is 1.
func (t *Tensor) Squeeze(dim int) *Tensor {
	return result("squeeze", C.clm_squeeze(t.handle(), C.int64_t(dim)))
}

// Narrow returns the slice [start, start+length) of dim as a view.
func (t *Tensor) Narrow(dim int, start, length int64) *Tensor {
	return result("narrow", C.clm_narrow(t.handle(), C.int64_t(dim), C.int64_t(start), C.int64_t(length)))
}

// IndexSelect gathers the entries of dim at the int64 indices.
func (t *Tensor) IndexSelect(dim int, index *Tensor) *Tensor {
	return result("index_select", C.clm_index_select(t.handle(), C.int64_t(dim), index.handle()))
}

func handles(ts []*Tensor) (*C.clm_tensor, C.int) {
	if len(ts) == 0 {
		return nil, 0
	}
	hs := make([]C.clm_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.handle()
	}
	return &hs[0], C.int(len(hs))
}

// Cat concatenates ts along dim.
func Cat(ts []*Tensor, dim int) *Tensor {
	p, n := handles(ts)
	return result("cat", C.clm_cat(p, n, C.int64_t(dim)))
}

// Stack stacks ts along a new dim.
func Stack(ts []*Tensor, dim int) *Tensor {
	p, n := handles(ts)
	return result("stack", C.clm_stack(p, n, C.int64_t(dim)))
}

// Split cuts t into views of size along dim (the last may be smaller).
func (t *Tensor) Split(size int64, dim int) []*Tensor {
	if size <= 0 {
		panic(&Error{Op: "split", Msg: "split size must be positive"})
	}
	d := t.Size(dim)
	chunks := int((d + size - 1) / size)
	if chunks == 0 {
		chunks = 1
	}
	hs := make([]C.clm_tensor, chunks)
	var n C.int
	check("split", C.clm_split(t.handle(), C.int64_t(size), C.int64_t(dim), &hs[0], C.int(chunks), &n))
	out := make([]*Tensor, int(n))
	for i := range out {
		out[i] = newTensor(hs[i])
	}
	return out
}

// Tril keeps the elements on and below the k-th diagonal.
func (t *Tensor) Tril(k int) *Tensor { return result("tril", C.clm_tril(t.handle(), C.int64_t(k))) }

// Triu keeps the elements on and above the k-th diagonal.
func (t *Tensor) Triu(k int) *Tensor { return result("triu", C.clm_triu(t.handle(), C.int64_t(k))) }

// MaskedFill sets the elements where the bool mask is true to value.
func (t *Tensor) MaskedFill(mask *Tensor, value float64) *Tensor {
	return result("masked_fill", C.clm_masked_fill(t.handle(), mask.handle(), C.double(value)))
}

// To converts t to dtype on device (a new handle to t itself when nothing
// changes).
func (t *Tensor) To(dt DType, dev Device) *Tensor {
	return result("to", C.clm_to(t.handle(), C.int(dt), dev.c()))
}

// ToDType converts t to dt on its device.
func (t *Tensor) ToDType(dt DType) *Tensor { return t.To(dt, t.Device()) }

// ToDevice moves t to dev keeping its dtype.
func (t *Tensor) ToDevice(dev Device) *Tensor { return t.To(t.DType(), dev) }

// Upload copies a CPU tensor to dev without making the host wait for the
// device's queued work (through pinned memory); the training loop uploads
// its token ids with it. Elsewhere it is ToDevice.
func (t *Tensor) Upload(dev Device) *Tensor {
	return result("upload", C.clm_upload(t.handle(), dev.c()))
}
