package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"clm/internal/version"
	"clm/torch"
)

func init() {
	register("version", "clm's version and commit, the libtorch it runs, CUDA and the devices it sees (paste it into a bug report)", runVersion)
}

func runVersion(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "version", "clm version [-json]",
		"Says which clm this is (release, commit), the libtorch it runs, whether its shim has CUDA, the CUDA runtime, driver and cuDNN, "+
			"the devices it sees (or why none), its threads, the engine of float32 CPU products and of CPU attention: paste it into a bug report.",
		"clm version", "clm version -json")
	asJSON := fs.Bool("json", false, "print one JSON object instead of lines")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := fs.atMost(pos, 0); err != nil {
		return err
	}
	v := version.Get()
	r, err := torch.ReadReport()
	if err != nil {
		return err
	}
	unusable := torch.OneDNNMatmulUnusable()
	engine, why := torch.AutoCPUMatmul()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Clm            version.Info `json:"clm"`
			Torch          torch.Report `json:"libtorch"`
			CPUs           int          `json:"cpus"`
			NVIDIAGPUs     []string     `json:"nvidia_gpus"`               // as the kernel driver lists them, usable or not
			CPUMatmul      string       `json:"cpu_matmul"`                // train.cpu_matmul's auto engine here: onednn or blas
			CPUMatmulWhy   string       `json:"cpu_matmul_why"`            // why that one
			OneDNNUnusable string       `json:"onednn_unusable,omitempty"` // why oneDNN cannot be the engine here
			CPUAttention   bool         `json:"cpu_attention_clm"`         // float32 CPU attention by clm's kernels, not SDPA
			AttentionISA   string       `json:"cpu_attention_isa"`         // the instruction set of their row loops
		}{v, r, runtime.NumCPU(), torch.NVIDIAGPUs(), engine.String(), why, unusable, torch.FusedCausalAttentionNative(), torch.FusedAttentionISA()})
	}
	kind := "CPU build"
	if r.CUDABuild {
		kind = "CUDA build"
		if r.CUDAKernels {
			kind += " with clm's CUDA kernels"
		}
	}
	fmt.Fprintf(stdout, "clm       %s\n", v)
	fmt.Fprintf(stdout, "libtorch  %s  %s\n", r.Torch, r.Libtorch)
	fmt.Fprintf(stdout, "shim      %s  %s\n", kind, r.Shim)
	fmt.Fprintf(stdout, "CUDA      %s\n", cudaLine(r))
	fmt.Fprintf(stdout, "devices   %s\n", devicesLine(r))
	fmt.Fprintf(stdout, "threads   %s\n", threadsLine(r))
	fmt.Fprintf(stdout, "matmul    %s\n", matmulLine(engine, why))
	fmt.Fprintf(stdout, "attention %s\n", attentionLine(torch.FusedCausalAttentionNative(), torch.FusedAttentionISA()))
	return nil
}

// threadsLine gives libtorch's threads and those of clm's own CPU kernels,
// with the way out where a shim built without OpenMP runs them on fewer.
func threadsLine(r torch.Report) string {
	line := fmt.Sprintf("%d (%s) on %d CPUs, clm's kernels on %d", r.Threads, r.Parallel, runtime.NumCPU(), r.KernelThreads)
	if r.KernelThreads < r.Threads {
		line += " (a shim built without OpenMP: `make setup` rebuilds it)"
	}
	return line
}

// matmulLine says which engine train.cpu_matmul's auto gives float32 CPU
// products on this machine, and why.
func matmulLine(e torch.CPUMatmul, why string) string {
	if e == torch.MatmulOneDNN {
		return "float32 CPU products by oneDNN (train.cpu_matmul auto: " + why + "; blas for libtorch's own)"
	}
	return "float32 CPU products by the BLAS (train.cpu_matmul auto: " + why + ")"
}

// attentionLine says what computes float32 causal attention on the CPU and,
// for clm's kernels, the instruction set of their row loops (libtorch's).
func attentionLine(native bool, isa string) string {
	if !native {
		return "float32 CPU causal attention by libtorch's SDPA (this libtorch exports no sgemm_ for clm's kernels)"
	}
	return "float32 CPU causal attention by clm's kernels, row loops for " + isa + " (train.fused_kernels; SDPA where it is false)"
}

func cudaLine(r torch.Report) string {
	if !r.CUDABuild {
		return "none: this shim was built without CUDA"
	}
	driver := r.CUDADriver
	if driver == "" {
		driver = "none"
	}
	cudnn := r.CuDNN
	if cudnn == "" {
		cudnn = "none"
	}
	return fmt.Sprintf("compiled %s, runtime %s, driver %s, cuDNN %s", r.CUDA, r.CUDARuntime, driver, cudnn)
}

func devicesLine(r torch.Report) string {
	unused := torch.UnusedGPUs()
	switch {
	case len(r.Devices) > 0:
		return strings.Join(r.Devices, "; ")
	case unused != nil:
		return "CPU only: " + unused.Error()
	case !r.CUDABuild:
		return "CPU only"
	case r.CUDADriver == "":
		return "CPU only: no NVIDIA driver (in Docker: --gpus all, with the NVIDIA container toolkit on the host); the CUDA runtime says: " + r.DeviceError
	case r.DeviceError != "":
		return "CPU only: " + r.DeviceError
	}
	return "CPU only: no CUDA device"
}
