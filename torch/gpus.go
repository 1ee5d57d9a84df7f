package torch

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Where the NVIDIA kernel driver lists its GPUs (variables for tests).
var (
	nvidiaProcDir = "/proc/driver/nvidia/gpus"
	devDir        = "/dev"
)

var nvidiaNode = regexp.MustCompile(`^nvidia[0-9]+$`)

// NVIDIAGPUs lists the NVIDIA GPUs this machine's kernel driver shows (their
// model names, or device nodes), whether or not libtorch can use them: a
// CPU build, or a CUDA build whose runtime the driver cannot run, on such a
// machine would otherwise train on the CPU without a word.
func NVIDIAGPUs() []string {
	var gpus []string
	infos, _ := filepath.Glob(filepath.Join(nvidiaProcDir, "*", "information"))
	sort.Strings(infos)
	for _, f := range infos {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		name := filepath.Base(filepath.Dir(f))
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Model:"); ok {
				name = strings.TrimSpace(v)
				break
			}
		}
		gpus = append(gpus, name)
	}
	if len(gpus) > 0 {
		return gpus
	}
	entries, _ := os.ReadDir(devDir)
	for _, e := range entries {
		if nvidiaNode.MatchString(e.Name()) {
			gpus = append(gpus, "/dev/"+e.Name())
		}
	}
	return gpus
}

// CUDAUnavailable says why CUDA cannot be used ("" when it can), with the
// way out: a shim built without CUDA, no driver, or the runtime's error.
func CUDAUnavailable() string {
	if CUDAAvailable() {
		return ""
	}
	r, err := ReadReport()
	switch {
	case err != nil:
		return "CUDA is not available (" + Capabilities() + ")"
	case !r.CUDABuild:
		return "this clm's shim was built without CUDA: `make setup` builds the CUDA shim where the PyTorch wheel has CUDA (CLM_SHIM=cuda), see `clm version`"
	case r.CUDADriver == "":
		return "CUDA is not available: no NVIDIA driver is loaded (in Docker: --gpus all, with the NVIDIA container toolkit on the host)"
	case r.DeviceError != "":
		return "CUDA is not available: " + r.DeviceError
	}
	return "CUDA is not available (" + Capabilities() + ")"
}

// AutoDevice is the device "auto" means: CUDA(0) when CUDA is available,
// else the CPU, but not on a machine with NVIDIA GPUs that CUDA cannot use:
// there it is an error that says why, rather than a run on the CPU.
func AutoDevice() (Device, error) {
	if CUDAAvailable() {
		return CUDA(0), nil
	}
	if err := UnusedGPUs(); err != nil {
		return CPU, err
	}
	return CPU, nil
}

// UnusedGPUs returns an error naming this machine's NVIDIA GPUs and why CUDA
// cannot use them, or nil when there are none or CUDA works.
func UnusedGPUs() *GPUUnusedError {
	gpus := NVIDIAGPUs()
	if len(gpus) == 0 || CUDAAvailable() {
		return nil
	}
	return &GPUUnusedError{GPUs: gpus, Reason: CUDAUnavailable()}
}

// GPUUnusedError: the machine has NVIDIA GPUs that this build cannot use.
type GPUUnusedError struct {
	GPUs   []string
	Reason string
}

func (e *GPUUnusedError) Error() string {
	return "this machine has NVIDIA GPUs (" + strings.Join(e.GPUs, ", ") + ") that clm cannot use: " + e.Reason
}
