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

// MKLOnIntel says whether libtorch's BLAS is MKL and this CPU is Intel's.
// MKL chooses its sgemm kernels by the CPU's maker as well as its
// instruction sets: its AVX-512 kernels run on Intel's CPUs, and on Zen 4 it
// runs as fast with AVX-512 forbidden as without (docs/benchmarks.md).
func MKLOnIntel() bool { return C.clm_mkl_on_intel() != 0 }

// AutoCPUMatmul is the engine train.cpu_matmul's auto picks on this
// machine, with why in a few words: the faster of the two where both can
// multiply float32 matrices, as measured on each maker's CPUs.
func AutoCPUMatmul() (CPUMatmul, string) {
	return autoCPUMatmul(OneDNNMatmulUnusable(), MKLOnIntel())
}

// autoCPUMatmul is AutoCPUMatmul's rule: the BLAS where oneDNN cannot be
// the engine, and where it is MKL on an Intel CPU (on a 2-core Xeon MKL's
// step is level with oneDNN's at the mid size and 24–30% faster at the
// paper's); oneDNN elsewhere (10–50% faster than MKL per product on a
// 2-core Zen 4).
func autoCPUMatmul(onednnUnusable string, mklOnIntel bool) (CPUMatmul, string) {
	switch {
	case onednnUnusable != "":
		return MatmulBLAS, "oneDNN is not offered: " + onednnUnusable
	case mklOnIntel:
		return MatmulBLAS, "MKL on an Intel CPU, faster than oneDNN there"
	}
	return MatmulOneDNN, "faster than MKL on a CPU not Intel's"
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
