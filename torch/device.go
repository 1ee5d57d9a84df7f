package torch

/*
#include "clm_torch.h"
*/
import "C"

import (
	"fmt"
	"strconv"
	"strings"
)

// Device is where a tensor lives: CPU (the zero value), or a CUDA device
// by ordinal.
type Device int

// CPU is the host.
const CPU Device = 0

// CUDA returns the CUDA device with ordinal i.
func CUDA(i int) Device { return Device(i + 1) }

// IsCUDA reports whether d is a CUDA device.
func (d Device) IsCUDA() bool { return d > 0 }

// Index returns the CUDA ordinal of d, or −1 for the CPU.
func (d Device) Index() int { return int(d) - 1 }

// c is the shim's device code: −1 for the CPU, else the CUDA ordinal.
func (d Device) c() C.int { return C.int(d.Index()) }

func deviceFromC(code C.int) Device { return Device(int(code) + 1) }

func (d Device) String() string {
	if !d.IsCUDA() {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(d.Index())
}

// CheckDevice returns an error unless tensors can be created on d.
func CheckDevice(d Device) error {
	if !d.IsCUDA() {
		return nil
	}
	if why := CUDAUnavailable(); why != "" {
		return fmt.Errorf("device %v: %s", d, why)
	}
	if n := CUDADeviceCount(); d.Index() >= n {
		return fmt.Errorf("device %v: only %d CUDA device(s) visible", d, n)
	}
	return nil
}

// ParseDevice parses "cpu", "cuda" (device 0) or "cuda:N".
func ParseDevice(s string) (Device, error) {
	switch s = strings.TrimSpace(strings.ToLower(s)); {
	case s == "cpu":
		return CPU, nil
	case s == "cuda":
		return CUDA(0), nil
	case strings.HasPrefix(s, "cuda:"):
		n, err := strconv.Atoi(s[len("cuda:"):])
		if err == nil && n >= 0 {
			return CUDA(n), nil
		}
	}
	return CPU, fmt.Errorf("unknown device %q (want cpu, cuda or cuda:N)", s)
}

// CUDAAvailable reports whether libtorch can use a CUDA device.
func CUDAAvailable() bool { return C.clm_cuda_is_available() != 0 }

// CUDADeviceCount returns the number of visible CUDA devices.
func CUDADeviceCount() int { return int(C.clm_cuda_device_count()) }

// Synchronize waits for all work queued on d (a no-op on the CPU).
func Synchronize(d Device) error {
	if e := takeErr("synchronize", C.clm_synchronize(d.c())); e != nil {
		return e
	}
	return nil
}

// CUDAMemory returns the bytes currently allocated on d by libtorch's caching
// allocator and the peak since the last ResetCUDAPeak.
func CUDAMemory(d Device) (allocated, peak int64, err error) {
	var a, p C.int64_t
	if e := takeErr("cuda_memory", C.clm_cuda_memory(d.c(), &a, &p)); e != nil {
		return 0, 0, e
	}
	return int64(a), int64(p), nil
}

// ResetCUDAPeak resets the peak statistic of CUDAMemory.
func ResetCUDAPeak(d Device) error {
	if e := takeErr("cuda_reset_peak", C.clm_cuda_reset_peak(d.c())); e != nil {
		return e
	}
	return nil
}

// CUDAMemInfo returns d's free and total memory as the driver reports them
// (other processes' use included) and the bytes libtorch's caching allocator
// holds on d (reserved: in use or cached for reuse, counted as used).
func CUDAMemInfo(d Device) (free, total, reserved int64, err error) {
	var f, t, r C.int64_t
	if e := takeErr("cuda_mem_info", C.clm_cuda_mem_info(d.c(), &f, &t, &r)); e != nil {
		return 0, 0, 0, e
	}
	return int64(f), int64(t), int64(r), nil
}

// CUDAEmptyCache returns the caching allocator's unused blocks to the
// devices (after an out-of-memory error, before trying something smaller).
func CUDAEmptyCache() error {
	if e := takeErr("cuda_empty_cache", C.clm_cuda_empty_cache()); e != nil {
		return e
	}
	return nil
}

// DType is a tensor element type. Values equal c10::ScalarType codes.
type DType int

// Element types.
const (
	Uint8    DType = 0
	Int8     DType = 1
	Int16    DType = 2
	Int32    DType = 3
	Int64    DType = 4
	Float16  DType = 5
	Float32  DType = 6
	Float64  DType = 7
	Bool     DType = 11
	BFloat16 DType = 15
)

var dtypeNames = map[DType]string{
	Uint8: "uint8", Int8: "int8", Int16: "int16", Int32: "int32", Int64: "int64",
	Float16: "float16", Float32: "float32", Float64: "float64", Bool: "bool", BFloat16: "bfloat16",
}

func (d DType) String() string {
	if n, ok := dtypeNames[d]; ok {
		return n
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// Size returns the size of one element in bytes.
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Int16, Float16, BFloat16:
		return 2
	case Int32, Float32:
		return 4
	case Int64, Float64:
		return 8
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	return d == Float16 || d == Float32 || d == Float64 || d == BFloat16
}

// ParseDType parses a dtype name such as "float32", "bf16" or "fp16".
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "float32", "fp32", "f32":
		return Float32, nil
	case "float64", "fp64", "f64", "double":
		return Float64, nil
	case "float16", "fp16", "f16", "half":
		return Float16, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	case "int64":
		return Int64, nil
	case "int32":
		return Int32, nil
	case "int16":
		return Int16, nil
	case "int8":
		return Int8, nil
	case "uint8":
		return Uint8, nil
	case "bool":
		return Bool, nil
	}
	return Float32, fmt.Errorf("unknown dtype %q", s)
}
