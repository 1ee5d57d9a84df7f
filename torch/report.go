package torch

// #include "clm_torch.h"
// #include <stdlib.h>
import "C"

import (
	"fmt"
	"strconv"
	"strings"
)

// Report describes the shim, the libtorch it runs on and the CUDA devices it
// sees: what `clm version` prints and a bug report needs.
type Report struct {
	Torch         string   `json:"torch"`                  // libtorch's version the shim was built against, e.g. "2.15.0"
	Shim          string   `json:"shim"`                   // the file of the loaded shim (libclmtorch.so)
	Libtorch      string   `json:"libtorch"`               // the file of the loaded libtorch_cpu
	Threads       int      `json:"threads"`                // libtorch's intra-op threads
	Parallel      string   `json:"parallel"`               // ATen's parallel backend, e.g. "OpenMP"
	KernelThreads int      `json:"kernel_threads"`         // the threads clm's own CPU kernels get at Threads (fewer: a shim built without OpenMP)
	CUDABuild     bool     `json:"cuda_build"`             // the shim was compiled with CUDA
	CUDAKernels   bool     `json:"cuda_kernels"`           // and with clm's own CUDA kernels (torch/csrc/*.cu)
	CUDA          string   `json:"cuda,omitempty"`         // the CUDA version the shim was compiled with ("" in a CPU build)
	CUDARuntime   string   `json:"cuda_runtime,omitempty"` // the CUDA runtime loaded
	CUDADriver    string   `json:"cuda_driver,omitempty"`  // the driver's CUDA version ("" with no driver)
	CuDNN         string   `json:"cudnn,omitempty"`        // the cuDNN loaded ("" when none)
	Devices       []string `json:"devices,omitempty"`
	DeviceError   string   `json:"device_error,omitempty"` // why no device was found, as the CUDA runtime says it
}

// ReadReport asks the shim for its Report.
func ReadReport() (Report, error) {
	var out *C.char
	if err := takeErr("build report", C.clm_build_report(&out)); err != nil {
		return Report{}, err
	}
	text := C.GoString(out)
	C.clm_free_string(out)
	return parseReport(text)
}

// parseReport reads the shim's "key=value" lines; unknown keys are ignored,
// so that an older binary reads a newer shim.
func parseReport(text string) (Report, error) {
	var r Report
	strs := map[string]*string{"torch": &r.Torch, "shim": &r.Shim, "libtorch": &r.Libtorch, "parallel": &r.Parallel,
		"cuda_compiled": &r.CUDA, "cuda_runtime": &r.CUDARuntime, "cuda_driver": &r.CUDADriver, "cudnn": &r.CuDNN,
		"device_error": &r.DeviceError}
	flags := map[string]*bool{"cuda_build": &r.CUDABuild, "cuda_kernels": &r.CUDAKernels}
	ints := map[string]*int{"threads": &r.Threads, "kernel_threads": &r.KernelThreads}
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok {
			return r, fmt.Errorf("build report: line %q is not key=value", line)
		}
		switch {
		case strs[k] != nil:
			*strs[k] = v
		case flags[k] != nil:
			*flags[k] = v == "1"
		case k == "device":
			r.Devices = append(r.Devices, v)
		case ints[k] != nil:
			n, err := strconv.Atoi(v)
			if err != nil {
				return r, fmt.Errorf("build report: %s=%q", k, v)
			}
			*ints[k] = n
		}
	}
	return r, nil
}
