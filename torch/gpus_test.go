package torch

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeDriver points NVIDIAGPUs at a made-up /proc/driver/nvidia/gpus and
// /dev for the test.
func fakeDriver(t *testing.T, gpus map[string]string, nodes ...string) {
	t.Helper()
	root := t.TempDir()
	proc, dev := filepath.Join(root, "gpus"), filepath.Join(root, "dev")
	for bus, info := range gpus {
		os.MkdirAll(filepath.Join(proc, bus), 0o755)
		os.WriteFile(filepath.Join(proc, bus, "information"), []byte(info), 0o644)
	}
	os.MkdirAll(dev, 0o755)
	for _, n := range nodes {
		os.WriteFile(filepath.Join(dev, n), nil, 0o644)
	}
	oldProc, oldDev := nvidiaProcDir, devDir
	nvidiaProcDir, devDir = proc, dev
	t.Cleanup(func() { nvidiaProcDir, devDir = oldProc, oldDev })
}

func TestNVIDIAGPUs(t *testing.T) {
	cases := []struct {
		name  string
		gpus  map[string]string
		nodes []string
		want  []string
	}{
		{"none", nil, []string{"null", "nvidiactl", "nvidia-uvm"}, nil},
		{"driver's list", map[string]string{
			"0000:01:00.0": "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 10\n",
			"0000:02:00.0": "Model: \t\t NVIDIA A100-SXM4-40GB\n"}, []string{"nvidia0", "nvidia1"},
			[]string{"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"}},
		{"no model line", map[string]string{"0000:03:00.0": "IRQ: 10\n"}, nil, []string{"0000:03:00.0"}},
		{"device nodes only (a container)", nil, []string{"nvidia0", "nvidiactl", "nvidia1"}, []string{"/dev/nvidia0", "/dev/nvidia1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fakeDriver(t, c.gpus, c.nodes...)
			if got := NVIDIAGPUs(); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("NVIDIAGPUs() = %q, want %q", got, c.want)
			}
		})
	}
}

// TestAutoDevice: without CUDA, "auto" is the CPU on a machine without
// NVIDIA GPUs, and an error that says why on one with them.
func TestAutoDevice(t *testing.T) {
	if CUDAAvailable() {
		t.Skip("CUDA is available: auto is the GPU")
	}
	fakeDriver(t, nil)
	if d, err := AutoDevice(); d != CPU || err != nil {
		t.Fatalf("no GPU: AutoDevice() = %v, %v; want the CPU", d, err)
	}
	fakeDriver(t, map[string]string{"0000:01:00.0": "Model: NVIDIA H100 80GB HBM3\n"})
	_, err := AutoDevice()
	var unused *GPUUnusedError
	if !errors.As(err, &unused) || !strings.Contains(err.Error(), "NVIDIA H100 80GB HBM3") {
		t.Fatalf("a GPU that CUDA cannot use: AutoDevice() error %v", err)
	}
	r, _ := ReadReport()
	want := "built without CUDA"
	if r.CUDABuild {
		want = "CUDA is not available: "
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say why (%q)", err, want)
	}
	if err := CheckDevice(CUDA(0)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckDevice(cuda:0) = %v, want the reason %q", err, want)
	}
}
