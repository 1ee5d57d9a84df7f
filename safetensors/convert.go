package safetensors

import (
	"encoding/binary"
	"fmt"
)

// Number is the set of Go element types with a safetensors dtype.
type Number interface {
	bool | uint8 | int8 | int16 | uint16 | int32 | uint32 | int64 | uint64 | float32 | float64
}

// DTypeOf returns the dtype of elements of type T.
func DTypeOf[T Number]() DType {
	var z T
	switch any(z).(type) {
	case bool:
		return BOOL
	case uint8:
		return U8
	case int8:
		return I8
	case int16:
		return I16
	case uint16:
		return U16
	case int32:
		return I32
	case uint32:
		return U32
	case int64:
		return I64
	case uint64:
		return U64
	case float32:
		return F32
	default:
		return F64
	}
}

// ToBytes returns the little-endian encoding of values.
func ToBytes[T Number](values []T) []byte {
	b, err := binary.Append(make([]byte, 0, len(values)*DTypeOf[T]().Size()), binary.LittleEndian, values)
	if err != nil {
		panic(err) // unreachable: T is fixed-size
	}
	return b
}

// FromBytes decodes little-endian data into a new slice of T.
func FromBytes[T Number](data []byte) ([]T, error) {
	size := DTypeOf[T]().Size()
	if len(data)%size != 0 {
		return nil, fmt.Errorf("safetensors: %d bytes is not a whole number of %d-byte %s values", len(data), size, DTypeOf[T]())
	}
	v := make([]T, len(data)/size)
	if _, err := binary.Decode(data, binary.LittleEndian, v); err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return v, nil
}

// NewTensor returns a tensor of the given name and shape holding values,
// with the dtype of T.
func NewTensor[T Number](name string, shape []int64, values []T) Tensor {
	return Tensor{Name: name, DType: DTypeOf[T](), Shape: shape, Data: ToBytes(values)}
}
