package torch

import (
	"errors"
	"runtime"
	"testing"
)

// requireCUDA skips GPU tests on machines without a CUDA device.
func requireCUDA(t *testing.T) Device {
	t.Helper()
	if !CUDAAvailable() {
		t.Skip("GPU test: no CUDA device (" + Capabilities() + ")")
	}
	return CUDA(0)
}

// TestGPUOpsMatchCPU runs every op case on the GPU in float64 and compares
// outputs with the CPU (random-draw cases excepted: the generators differ).
func TestGPUOpsMatchCPU(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	WithScope(func(*Scope) {
		n := 0
		for _, c := range opCases {
			if c.seed != 0 {
				continue
			}
			r1, r2 := caseRand(c.name), caseRand(c.name)
			inCPU, inGPU := map[string]*Tensor{}, map[string]*Tensor{}
			for _, is := range c.inputs {
				inCPU[is.name] = makeInput(r1, is, Float64)
				g := makeInput(r2, is, Float64).Detach().ToDevice(dev)
				if is.grad {
					g.SetRequiresGrad(true)
				}
				inGPU[is.name] = g
			}
			var want, got *Tensor
			if err := Try(func() { want = c.f(inCPU, Float64) }); err != nil {
				t.Fatalf("%s on CPU: %v", c.name, err)
			}
			if err := Try(func() { got = c.f(inGPU, Float64) }); err != nil {
				// Creation cases build CPU tensors by design.
				continue
			}
			if err := allClose(got.ToDevice(CPU), want, 1e-9); err != nil {
				t.Errorf("%s: GPU vs CPU: %v", c.name, err)
			}
			n++
		}
		t.Logf("%d op cases agree between %v and the CPU", n, dev)
	})
}

func TestGPUDeviceErrorsAndMemory(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	WithScope(func(*Scope) {
		a := Ones([]int64{4, 4}, Float32, CPU)
		b := Ones([]int64{4, 4}, Float32, dev)
		var te *Error
		if err := Try(func() { a.Matmul(b) }); !errors.As(err, &te) {
			t.Fatalf("mixing devices: got %v, want *torch.Error", err)
		}
		if err := ResetCUDAPeak(dev); err != nil {
			t.Fatal(err)
		}
		big := Zeros([]int64{1 << 20}, Float32, dev)
		alloc, peak, err := CUDAMemory(dev)
		if err != nil {
			t.Fatal(err)
		}
		if alloc < 4<<20 || peak < alloc {
			t.Errorf("CUDA memory: allocated %d, peak %d", alloc, peak)
		}
		big.Free()
		after, _, _ := CUDAMemory(dev)
		if after > alloc-(4<<20) {
			t.Errorf("freeing 4 MiB left %d bytes allocated (was %d)", after, alloc)
		}
		if err := Synchronize(dev); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGPUAutocastBF16(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	WithScope(func(*Scope) {
		a := Randn([]int64{8, 8}, Float32, dev)
		var dt DType
		Autocast(dev, BFloat16, func() { dt = a.Matmul(a).DType() })
		if dt != BFloat16 {
			t.Errorf("matmul under bf16 autocast gave %v", dt)
		}
		if d := a.Matmul(a).DType(); d != Float32 {
			t.Errorf("autocast not restored: %v", d)
		}
	})
}

// TestGPUUpload: token ids uploaded through pinned memory arrive intact,
// also when the host frees its copy at once and uploads again while the
// device is busy.
func TestGPUUpload(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	WithScope(func(*Scope) {
		busy := Ones([]int64{2048, 2048}, Float32, dev)
		var got []*Tensor
		for i := range 8 {
			busy = busy.Matmul(busy).MulScalar(1.0 / 2048) // queue work ahead of the copies
			ids := make([]int64, 128*128)
			for j := range ids {
				ids[j] = int64((i*7919 + j) % 52000)
			}
			host := FromInt64(ids, 128, 128)
			got = append(got, host.Upload(dev))
			host.Free()
		}
		for i, g := range got {
			vals := g.ToDevice(CPU).Int64s()
			for j, v := range vals {
				if want := int64((i*7919 + j) % 52000); v != want {
					t.Fatalf("upload %d: element %d = %d, want %d", i, j, v, want)
				}
			}
		}
	})
}
