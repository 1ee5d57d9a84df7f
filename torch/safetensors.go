package torch

import (
	"fmt"

	"clm/safetensors"
)

var toST = map[DType]safetensors.DType{
	Uint8: safetensors.U8, Int8: safetensors.I8, Int16: safetensors.I16, Int32: safetensors.I32,
	Int64: safetensors.I64, Float16: safetensors.F16, Float32: safetensors.F32, Float64: safetensors.F64,
	Bool: safetensors.BOOL, BFloat16: safetensors.BF16,
}

// SafetensorsDType returns the safetensors name of dt.
func SafetensorsDType(dt DType) (safetensors.DType, error) {
	if s, ok := toST[dt]; ok {
		return s, nil
	}
	return "", fmt.Errorf("dtype %v has no safetensors equivalent", dt)
}

// DTypeFromSafetensors returns the dtype named s in safetensors.
func DTypeFromSafetensors(s safetensors.DType) (DType, error) {
	for d, n := range toST {
		if n == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("safetensors dtype %s is not supported", s)
}

// Named is a tensor with its name, as stored in a file.
type Named struct {
	Name   string
	Tensor *Tensor
}

// ToSafetensors copies t's data (from any device) into a safetensors record.
func ToSafetensors(name string, t *Tensor) (safetensors.Tensor, error) {
	dt, err := SafetensorsDType(t.DType())
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("%s: %w", name, err)
	}
	return safetensors.Tensor{Name: name, DType: dt, Shape: t.Shape(), Data: t.Bytes()}, nil
}

// lazySafetensors is ToSafetensors with the bytes copied out of t only when
// the tensor is written: a checkpoint then holds one tensor's copy at a
// time, not the whole model's and optimizer's.
func lazySafetensors(name string, t *Tensor) (safetensors.Tensor, error) {
	dt, err := SafetensorsDType(t.DType())
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("%s: %w", name, err)
	}
	src := func() (b []byte, err error) {
		err = Try(func() { b = t.Bytes() })
		return b, err
	}
	return safetensors.Tensor{Name: name, DType: dt, Shape: t.Shape(), Source: src}, nil
}

// SaveSafetensors writes tensors to path atomically with metadata, copying
// one tensor at a time out of libtorch.
func SaveSafetensors(path string, tensors []Named, metadata map[string]string) error {
	recs := make([]safetensors.Tensor, 0, len(tensors))
	for _, n := range tensors {
		r, err := lazySafetensors(n.Name, n.Tensor)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		recs = append(recs, r)
	}
	return safetensors.Write(path, recs, metadata)
}

// TensorFromFile creates a tensor on dev from the named entry of an open
// safetensors file.
func TensorFromFile(f *safetensors.File, name string, dev Device) (*Tensor, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	dt, err := DTypeFromSafetensors(info.DType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	var t *Tensor
	if err := Try(func() { t = FromBytes(b, dt, info.Shape, dev) }); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

// LoadSafetensors reads every tensor of path onto dev, in file order, with
// the file's metadata. The caller owns the tensors (or the open scope does).
func LoadSafetensors(path string, dev Device) ([]Named, map[string]string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var out []Named
	for _, name := range f.Names() {
		t, err := TensorFromFile(f, name, dev)
		if err != nil {
			for _, n := range out {
				n.Tensor.Free()
			}
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, Named{Name: name, Tensor: t})
	}
	return out, f.Metadata(), nil
}
