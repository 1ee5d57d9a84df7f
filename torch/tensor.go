package torch

/*
#include "clm_torch.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Tensor is a handle to a libtorch tensor. See the package documentation for
// who frees it.
type Tensor struct {
	h C.clm_tensor
}

// newTensor wraps a fresh handle and gives it to the innermost open scope.
func newTensor(h C.clm_tensor) *Tensor {
	t := &Tensor{h: h}
	live.Add(1)
	adopt(t)
	return t
}

// result unwraps a tensor result, panicking with *Error on failure.
func result(op string, r C.clm_tresult) *Tensor {
	check(op, r.err)
	return newTensor(r.t)
}

func (t *Tensor) handle() C.clm_tensor {
	if t == nil || t.h == nil {
		panic(&Error{Op: "use", Msg: "tensor is nil or already freed"})
	}
	return t.h
}

// Free releases the handle now. It is safe to call more than once; a scope
// that owns t skips it later.
func (t *Tensor) Free() {
	if t == nil || t.h == nil {
		return
	}
	C.clm_tensor_free(t.h)
	t.h = nil
	live.Add(-1)
}

// Freed reports whether the handle has been released.
func (t *Tensor) Freed() bool { return t == nil || t.h == nil }

// Dim returns the number of dimensions.
func (t *Tensor) Dim() int { return int(C.clm_dim(t.handle())) }

// Shape returns the sizes of every dimension.
func (t *Tensor) Shape() []int64 {
	n := t.Dim()
	s := make([]int64, n)
	if n > 0 {
		C.clm_shape(t.h, (*C.int64_t)(unsafe.Pointer(&s[0])))
	}
	return s
}

// Size returns the size of dimension d (negative d counts from the end).
func (t *Tensor) Size(d int) int64 {
	s := t.Shape()
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		panic(&Error{Op: "size", Msg: fmt.Sprintf("dimension %d out of range for shape %v", d, s)})
	}
	return s[d]
}

// Numel returns the number of elements.
func (t *Tensor) Numel() int64 { return int64(C.clm_numel(t.handle())) }

// DType returns the element type.
func (t *Tensor) DType() DType { return DType(C.clm_dtype(t.handle())) }

// Device returns where the tensor lives.
func (t *Tensor) Device() Device { return deviceFromC(C.clm_device(t.handle())) }

// RequiresGrad reports whether autograd records operations on t.
func (t *Tensor) RequiresGrad() bool { return C.clm_requires_grad(t.handle()) != 0 }

// SetRequiresGrad turns gradient recording on or off for a leaf tensor and
// returns t.
func (t *Tensor) SetRequiresGrad(on bool) *Tensor {
	check("requires_grad", C.clm_set_requires_grad(t.handle(), cbool(on)))
	return t
}

func (t *Tensor) String() string {
	if t.Freed() {
		return "Tensor(freed)"
	}
	return fmt.Sprintf("Tensor(%v, %v, %v)", t.Shape(), t.DType(), t.Device())
}

// Item returns the value of a one-element tensor as float64. On a GPU this
// synchronises with the device.
func (t *Tensor) Item() float64 {
	r := C.clm_item(t.handle())
	check("item", r.err)
	return float64(r.v)
}

// ---- creation -------------------------------------------------------------

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func shapePtr(s []int64) (*C.int64_t, C.int) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&s[0])), C.int(len(s))
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

// FromBytes creates a tensor of dtype and shape on dev from raw
// little-endian element bytes (copied).
func FromBytes(data []byte, dt DType, shape []int64, dev Device) *Tensor {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	sp, n := shapePtr(shape)
	return result("from_data", C.clm_from_data(p, C.size_t(len(data)), sp, n, C.int(dt), dev.c()))
}

func fromSlice[E any](data []E, dt DType, shape []int64) *Tensor {
	if shape == nil {
		shape = []int64{int64(len(data))}
	}
	if numel(shape) != int64(len(data)) {
		panic(&Error{Op: "from_data", Msg: fmt.Sprintf("%d values for shape %v", len(data), shape)})
	}
	var b []byte
	if len(data) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), len(data)*dt.Size())
	}
	return FromBytes(b, dt, shape, CPU)
}

// FromFloat32 creates a CPU float32 tensor of shape (1-D when omitted) from data (copied).
func FromFloat32(data []float32, shape ...int64) *Tensor { return fromSlice(data, Float32, shape) }

// FromFloat64 creates a CPU float64 tensor of shape (1-D when omitted) from data (copied).
func FromFloat64(data []float64, shape ...int64) *Tensor { return fromSlice(data, Float64, shape) }

// FromInt64 creates a CPU int64 tensor of shape (1-D when omitted) from data (copied).
func FromInt64(data []int64, shape ...int64) *Tensor { return fromSlice(data, Int64, shape) }

// FromInt32 creates a CPU int32 tensor of shape (1-D when omitted) from data (copied).
func FromInt32(data []int32, shape ...int64) *Tensor { return fromSlice(data, Int32, shape) }

// Bytes copies the elements (from any device, in row-major order) into a new
// byte slice.
func (t *Tensor) Bytes() []byte {
	b := make([]byte, t.Numel()*int64(t.DType().Size()))
	t.copyTo(b)
	return b
}

func (t *Tensor) copyTo(b []byte) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	check("copy_to", C.clm_copy_to(t.handle(), p, C.size_t(len(b))))
}

func toSlice[E any](t *Tensor, want DType) []E {
	if t.DType() != want {
		panic(&Error{Op: "copy_to", Msg: fmt.Sprintf("tensor is %v, not %v", t.DType(), want)})
	}
	out := make([]E, t.Numel())
	if len(out) > 0 {
		t.copyTo(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(out)*want.Size()))
	}
	return out
}

// Float32s copies a float32 tensor's elements into a new slice.
func (t *Tensor) Float32s() []float32 { return toSlice[float32](t, Float32) }

// Float64s copies a float64 tensor's elements into a new slice.
func (t *Tensor) Float64s() []float64 { return toSlice[float64](t, Float64) }

// Int64s copies an int64 tensor's elements into a new slice.
func (t *Tensor) Int64s() []int64 { return toSlice[int64](t, Int64) }

// Full creates a tensor filled with value.
func Full(shape []int64, value float64, dt DType, dev Device) *Tensor {
	sp, n := shapePtr(shape)
	return result("full", C.clm_full(sp, n, C.double(value), C.int(dt), dev.c()))
}

// Zeros creates a tensor of zeros.
func Zeros(shape []int64, dt DType, dev Device) *Tensor { return Full(shape, 0, dt, dev) }

// Ones creates a tensor of ones.
func Ones(shape []int64, dt DType, dev Device) *Tensor { return Full(shape, 1, dt, dev) }

// Scalar creates a 0-d tensor.
func Scalar(value float64, dt DType, dev Device) *Tensor { return Full(nil, value, dt, dev) }

// Arange creates [start, start+step, ...) below end.
func Arange(start, end, step float64, dt DType, dev Device) *Tensor {
	return result("arange", C.clm_arange(C.double(start), C.double(end), C.double(step), C.int(dt), dev.c()))
}

// Eye creates an n×m matrix with ones on the diagonal.
func Eye(n, m int64, dt DType, dev Device) *Tensor {
	return result("eye", C.clm_eye(C.int64_t(n), C.int64_t(m), C.int(dt), dev.c()))
}

// Randn draws standard normal values from the default generator.
func Randn(shape []int64, dt DType, dev Device) *Tensor {
	sp, n := shapePtr(shape)
	return result("randn", C.clm_randn(sp, n, C.int(dt), dev.c()))
}

// Rand draws uniform values in [0, 1) from the default generator.
func Rand(shape []int64, dt DType, dev Device) *Tensor {
	sp, n := shapePtr(shape)
	return result("rand", C.clm_rand(sp, n, C.int(dt), dev.c()))
}

// ---- in place, without autograd history (init, optimizers) ------------------

// FillNormal overwrites t with draws from N(mean, std²) (torch's normal_).
func (t *Tensor) FillNormal(mean, std float64) *Tensor {
	check("normal_", C.clm_normal_(t.handle(), C.double(mean), C.double(std)))
	return t
}

// FillUniform overwrites t with draws from U(a, b) (torch's uniform_).
func (t *Tensor) FillUniform(a, b float64) *Tensor {
	check("uniform_", C.clm_uniform_(t.handle(), C.double(a), C.double(b)))
	return t
}

// FillOrthogonal overwrites t with a (semi-)orthogonal matrix times gain,
// drawn exactly as torch.nn.init.orthogonal_.
func (t *Tensor) FillOrthogonal(gain float64) *Tensor {
	check("orthogonal_", C.clm_orthogonal_(t.handle(), C.double(gain)))
	return t
}

// Fill overwrites every element with value.
func (t *Tensor) Fill(value float64) *Tensor {
	check("fill_", C.clm_fill_(t.handle(), C.double(value)))
	return t
}

// CopyFrom overwrites t with src (broadcast, converted to t's dtype/device).
func (t *Tensor) CopyFrom(src *Tensor) *Tensor {
	check("copy_", C.clm_copy_(t.handle(), src.handle()))
	return t
}

// ScaleInPlace multiplies t by s in place.
func (t *Tensor) ScaleInPlace(s float64) *Tensor {
	check("mul_", C.clm_mul_scalar_(t.handle(), C.double(s)))
	return t
}

// AddInPlace adds alpha·other to t in place.
func (t *Tensor) AddInPlace(other *Tensor, alpha float64) *Tensor {
	check("add_", C.clm_add_(t.handle(), other.handle(), C.double(alpha)))
	return t
}

// LerpInPlace sets t to t + weight·(end − t) in place (Tensor.lerp_).
func (t *Tensor) LerpInPlace(end *Tensor, weight float64) *Tensor {
	check("lerp_", C.clm_lerp_(t.handle(), end.handle(), C.double(weight)))
	return t
}
