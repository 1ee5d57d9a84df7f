// Package safetensors reads and writes files in the safetensors format of
// Hugging Face (https://github.com/huggingface/safetensors).
//
// A safetensors file is an 8-byte little-endian unsigned header length N,
// then N bytes of a UTF-8 JSON object, then the data section. The object maps
// each tensor name to its dtype, shape and data_offsets [begin, end], byte
// offsets relative to the start of the data section; the optional key
// "__metadata__" maps to an object of strings. Tensor data is row-major and
// little-endian, and the tensors cover the data section exactly, without
// gaps or overlaps.
//
// Open maps a file into memory and validates it; Write and Encode lay files
// out as the reference implementation does (same tensor order, compact JSON,
// header padded with spaces to a multiple of 8 bytes so that every tensor is
// aligned to its element size), byte for byte except that metadata keys are
// sorted where the reference leaves them in hash order.
package safetensors

import (
	"errors"
	"fmt"
)

// MaxHeaderSize is the largest JSON header accepted, as in the reference
// implementation (100 MB).
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key for the string metadata.
const metadataKey = "__metadata__"

// A DType names the element type of a tensor as spelled in the header.
type DType string

// The element types of the format. Sub-byte types (F4, F6_*) are not
// supported.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	F8E8M0 DType = "F8_E8M0"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	C64    DType = "C64"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// dtypes lists the supported dtypes in the reference implementation's
// order, which decides the layout of written files: larger rank first.
var dtypes = []struct {
	d    DType
	size int
}{
	{BOOL, 1}, {U8, 1}, {I8, 1}, {F8E5M2, 1}, {F8E4M3, 1}, {F8E8M0, 1},
	{I16, 2}, {U16, 2}, {F16, 2}, {BF16, 2},
	{I32, 4}, {U32, 4}, {F32, 4},
	{C64, 8}, {F64, 8}, {I64, 8}, {U64, 8},
}

// rank returns the position of d in dtypes, or -1 if d is unknown.
func (d DType) rank() int {
	for i, e := range dtypes {
		if e.d == d {
			return i
		}
	}
	return -1
}

// Size returns the size in bytes of one element of type d, or 0 if d is not
// a supported dtype.
func (d DType) Size() int {
	if r := d.rank(); r >= 0 {
		return dtypes[r].size
	}
	return 0
}

// TensorInfo describes a tensor stored in a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64 // empty for a scalar (0-d) tensor
	// Begin and End are the data_offsets of the tensor: its bytes are
	// [Begin, End) of the data section.
	Begin, End int64
}

// NumElements returns the product of the shape: 1 for a scalar, 0 if any
// dimension is 0.
func (ti *TensorInfo) NumElements() int64 {
	n, _ := numElements(ti.Shape)
	return n
}

// numElements returns the product of shape, or an error if a dimension is
// negative or the product overflows.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n *= d
	}
	return n, nil
}

// Errors wrapped by a FormatError (and, for invalid tensors, by the errors
// of Write and Encode), for use with errors.Is.
var (
	ErrTruncated      = errors.New("truncated file")
	ErrHeaderTooLarge = errors.New("header too large")
	ErrHeader         = errors.New("invalid header")
	ErrDType          = errors.New("unknown dtype")
	ErrShape          = errors.New("invalid shape")
	ErrSize           = errors.New("data size does not match dtype and shape")
	ErrOffsets        = errors.New("invalid data_offsets")
)

// A FormatError reports a malformed safetensors file.
type FormatError struct {
	File   string // the file name, empty for data given to Parse
	Tensor string // the tensor concerned, empty if none
	Err    error  // one of the Err* variables above
	Detail string // what exactly is wrong
}

// Error returns "safetensors: FILE: tensor "NAME": ERR: DETAIL", leaving out
// the empty parts.
func (e *FormatError) Error() string {
	s := "safetensors: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Tensor != "" {
		s += fmt.Sprintf("tensor %q: ", e.Tensor)
	}
	s += e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns e.Err.
func (e *FormatError) Unwrap() error { return e.Err }
