package train

import (
	"fmt"

	"clm/torch"
)

// Precision is train.precision: the arithmetic of forwards and backwards.
// Master weights and optimizer state stay float32 whatever it is.
type Precision string

// Precisions.
const (
	// PrecisionAuto is BF16 on a GPU and FP32 on the CPU.
	PrecisionAuto Precision = "auto"
	FP32          Precision = "fp32"
	// BF16 runs forwards under bfloat16 autocast.
	BF16 Precision = "bf16"
	// FP16 runs forwards under float16 autocast with dynamic loss scaling
	// (lossScaler).
	FP16 Precision = "fp16"
)

// on resolves PrecisionAuto for device dev.
func (p Precision) on(dev torch.Device) Precision {
	if p != PrecisionAuto {
		return p
	}
	if dev.IsCUDA() {
		return BF16
	}
	return FP32
}

// autocast returns the autocast dtype of a resolved precision; ok is false
// for FP32.
func (p Precision) autocast() (dt torch.DType, ok bool) {
	switch p {
	case BF16:
		return torch.BFloat16, true
	case FP16:
		return torch.Float16, true
	}
	return 0, false
}

// NaNPolicy is train.on_nan: what a step whose loss or gradient norm is not
// finite does.
type NaNPolicy string

// NaN policies.
const (
	// StopOnNaN stops the run before applying the update (NaNError).
	StopOnNaN NaNPolicy = "stop"
	// SkipOnNaN skips the update and the schedule step, and goes on.
	SkipOnNaN NaNPolicy = "skip"
)

// Optimizer is train.optimizer.
type Optimizer string

// Optimizers.
const (
	// AdamWHF is transformers' AdamW, the original's.
	AdamWHF Optimizer = "adamw_hf"
	// AdamWTorch is torch.optim.AdamW.
	AdamWTorch Optimizer = "adamw_torch"
	// SOAP is Adam in Shampoo's eigenbases (Vyas et al. 2024), as
	// pytorch_optimizer.SOAP; [train.optim] holds its settings.
	SOAP Optimizer = "soap"
	// Muon orthogonalises the momentum of 2-D hidden matrices by
	// Newton–Schulz (torch.optim.Muon) and runs torch's AdamW on the rest.
	Muon Optimizer = "muon"
)

// flavour parses an AdamW optimizer.
func (o Optimizer) flavour() (torch.AdamWFlavour, error) { return torch.ParseAdamWFlavour(string(o)) }

// DeviceSetting is train.device (and the -device flag of the commands that
// load a run): auto, or a device torch.ParseDevice reads (cpu, cuda,
// cuda:N). Load refuses any other value, naming the key.
type DeviceSetting string

// DeviceAuto is the local rank's GPU where CUDA can use one, else the CPU.
const DeviceAuto DeviceSetting = "auto"

// Auto reports whether the setting leaves the choice to clm ("" is auto).
func (d DeviceSetting) Auto() bool { return d == "" || d == DeviceAuto }

// Parse checks the setting without touching a device.
func (d DeviceSetting) Parse() error {
	if d.Auto() {
		return nil
	}
	_, err := torch.ParseDevice(string(d))
	return err
}

// IsCPU reports whether the setting names the CPU.
func (d DeviceSetting) IsCPU() bool { return d == "cpu" }

// Resolve is the device the setting picks on this machine: for auto a
// usable GPU, else the CPU, refused on a machine with GPUs that CUDA
// cannot use (torch.AutoDevice); a named device must be usable.
func (d DeviceSetting) Resolve() (torch.Device, error) {
	if d.Auto() {
		return torch.AutoDevice()
	}
	dev, err := torch.ParseDevice(string(d))
	if err != nil {
		return dev, err
	}
	return dev, torch.CheckDevice(dev)
}

// CPUMatmulSetting is train.cpu_matmul: auto, onednn or blas.
type CPUMatmulSetting string

// CPUMatmulAuto is the faster engine this machine offers
// (torch.AutoCPUMatmul): the BLAS on an Intel CPU, whose MKL runs its own
// AVX-512 kernels, and where oneDNN cannot be the engine; oneDNN elsewhere.
const CPUMatmulAuto CPUMatmulSetting = "auto"

// Parse checks the setting without probing the CPU.
func (c CPUMatmulSetting) Parse() error {
	switch c {
	case "", CPUMatmulAuto, CPUMatmulSetting(torch.MatmulOneDNN.String()), CPUMatmulSetting(torch.MatmulBLAS.String()):
		return nil
	}
	return fmt.Errorf("unknown engine %q (want auto, onednn or blas)", string(c))
}

// Resolve is the engine the setting picks on this machine: for auto
// torch.AutoCPUMatmul's; onednn where oneDNN cannot be the engine is an
// error saying why.
func (c CPUMatmulSetting) Resolve() (torch.CPUMatmul, error) {
	switch c {
	case CPUMatmulSetting(torch.MatmulBLAS.String()):
		return torch.MatmulBLAS, nil
	case CPUMatmulSetting(torch.MatmulOneDNN.String()):
		if why := torch.OneDNNMatmulUnusable(); why != "" {
			return torch.MatmulBLAS, fmt.Errorf("train.cpu_matmul: onednn cannot multiply float32 matrices on this machine: %s (use auto or blas)", why)
		}
		return torch.MatmulOneDNN, nil
	}
	e, _ := torch.AutoCPUMatmul()
	return e, nil
}
