package torch

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseReport(t *testing.T) {
	cases := []struct {
		name, text string
		want       Report
		bad        bool
	}{
		{name: "cpu", text: "torch=2.15.0\nshim=/s.so\nlibtorch=/l.so\nthreads=2\nparallel=OpenMP\nkernel_threads=2\ncuda_build=0\ncuda_kernels=0\n",
			want: Report{Torch: "2.15.0", Shim: "/s.so", Libtorch: "/l.so", Threads: 2, Parallel: "OpenMP", KernelThreads: 2}},
		{name: "cuda without a driver", text: "torch=2.15.0\ncuda_build=1\ncuda_kernels=1\ncuda_compiled=13.2\ncuda_runtime=13.2\ncudnn=9.26.0\ndevice_error=CUDA driver version is insufficient for CUDA runtime version\ndevices=0\n",
			want: Report{Torch: "2.15.0", CUDABuild: true, CUDAKernels: true, CUDA: "13.2", CUDARuntime: "13.2", CuDNN: "9.26.0",
				DeviceError: "CUDA driver version is insufficient for CUDA runtime version"}},
		{name: "two GPUs", text: "cuda_build=1\ncuda_driver=13.0\ndevices=2\ndevice=0 NVIDIA H100 sm_90 79.1 GiB\ndevice=1 NVIDIA H100 sm_90 79.1 GiB\n",
			want: Report{CUDABuild: true, CUDADriver: "13.0", Devices: []string{"0 NVIDIA H100 sm_90 79.1 GiB", "1 NVIDIA H100 sm_90 79.1 GiB"}}},
		{name: "a newer shim's key is ignored", text: "torch=2.16.0\nfuture_key=x\n", want: Report{Torch: "2.16.0"}},
		{name: "not key=value", text: "torch 2.15.0\n", bad: true},
		{name: "threads not a number", text: "threads=two\n", bad: true},
		{name: "kernel threads not a number", text: "kernel_threads=\n", bad: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseReport(c.text)
			if c.bad {
				if err == nil {
					t.Fatalf("parsed %q without an error: %+v", c.text, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestReadReport: the shim's report agrees with its capabilities, and names
// the files it was loaded from.
func TestReadReport(t *testing.T) {
	r, err := ReadReport()
	if err != nil {
		t.Fatal(err)
	}
	if r.Torch != Version() {
		t.Errorf("report says libtorch %q, capabilities %q", r.Torch, Version())
	}
	if want := strings.Contains(Capabilities(), "cuda_build=1"); r.CUDABuild != want {
		t.Errorf("report cuda_build %v, capabilities %q", r.CUDABuild, Capabilities())
	}
	for _, f := range []string{r.Shim, r.Libtorch} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("report names a file that is not there: %v", err)
		}
	}
	if !strings.Contains(r.Shim, "libclmtorch") || !strings.Contains(r.Libtorch, "libtorch") {
		t.Errorf("shim %q, libtorch %q", r.Shim, r.Libtorch)
	}
	if r.Threads != NumThreads() || r.Parallel == "" || r.Parallel == "unknown" {
		t.Errorf("threads %d (NumThreads %d), parallel backend %q", r.Threads, NumThreads(), r.Parallel)
	}
	if r.CUDABuild {
		if r.CUDA == "" || r.CUDARuntime == "" {
			t.Errorf("a CUDA build reports no CUDA version: %+v", r)
		}
		if n := CUDADeviceCount(); n != len(r.Devices) {
			t.Errorf("report lists %d devices, libtorch counts %d", len(r.Devices), n)
		}
		if len(r.Devices) == 0 && r.DeviceError == "" {
			t.Errorf("a CUDA build with no device says not why: %+v", r)
		}
	} else if len(r.Devices) > 0 || r.CUDA != "" {
		t.Errorf("a CPU build reports CUDA: %+v", r)
	}
	t.Logf("%+v", r)
}
