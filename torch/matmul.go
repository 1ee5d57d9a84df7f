package torch

// #include "clm_torch.h"
import "C"

import (
	"fmt"
	"strings"
)

// CPUMatmul is the engine that multiplies float32 matrices on the CPU in
// Addmm (forward and backward) and LinearCrossEntropy. Every other product
// (CUDA, float64, half precision, autocast) is libtorch's own, whatever the
// engine.
type CPUMatmul int

const (
	// MatmulBLAS is libtorch's BLAS (MKL in the x86 wheels), libtorch's
	// choice and the default.
	MatmulBLAS CPUMatmul = C.CLM_MATMUL_BLAS
	// MatmulOneDNN is oneDNN's matmul primitive (its AVX-512 brgemm
	// kernels), which libtorch carries but uses for float32 only in
	// reduced-precision modes. It computes true float32 products, with a
	// different summation order than the BLAS.
	MatmulOneDNN CPUMatmul = C.CLM_MATMUL_ONEDNN
)

// String is the engine's name as train.cpu_matmul spells it.
func (e CPUMatmul) String() string {
	switch e {
	case MatmulBLAS:
		return "blas"
	case MatmulOneDNN:
		return "onednn"
	}
	return fmt.Sprintf("CPUMatmul(%d)", int(e))
}

// OneDNNMatmulUnusable says why MatmulOneDNN cannot be the engine on this
// machine (no AVX-512, a libtorch without oneDNN, a reduced-precision math
// mode), or "" where it can. The shim probes once per process: one product
// held to float32 accuracy against float64.
func OneDNNMatmulUnusable() string {
	out := C.clm_cpu_matmul_onednn_unusable()
	if out == nil {
		return ""
	}
	msg := strings.TrimSpace(C.GoString(out))
	C.clm_free_string(out)
	return msg
}

// SetCPUMatmul makes e the engine for the whole process; MatmulOneDNN
// fails where OneDNNMatmulUnusable says why.
func SetCPUMatmul(e CPUMatmul) error {
	if err := takeErr("set_cpu_matmul", C.clm_set_cpu_matmul(C.int(e))); err != nil {
		return err
	}
	return nil
}

// CPUMatmulEngine is the process's engine.
func CPUMatmulEngine() CPUMatmul { return CPUMatmul(C.clm_get_cpu_matmul()) }
