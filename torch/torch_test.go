package torch

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// leakCheck keeps the test on its OS thread and fails it if it leaves
// tensor handles behind: torchtest.Guard for this package, which cannot
// import it.
func leakCheck(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	before := LiveTensors()
	t.Cleanup(func() {
		if after := LiveTensors(); after != before {
			t.Errorf("live tensors: %d before, %d after", before, after)
		}
		runtime.UnlockOSThread()
	})
}

func TestRoundTripAndMetadata(t *testing.T) {
	leakCheck(t)
	WithScope(func(s *Scope) {
		x := FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
		if got := x.Shape(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
			t.Fatalf("shape %v", got)
		}
		if x.DType() != Float32 || x.Device() != CPU || x.Numel() != 6 {
			t.Fatalf("metadata: %v", x)
		}
		y := x.T().Contiguous().Float32s()
		want := []float32{1, 4, 2, 5, 3, 6}
		for i := range want {
			if y[i] != want[i] {
				t.Fatalf("transpose: got %v want %v", y, want)
			}
		}
		if got := x.Sum(false).Item(); got != 21 {
			t.Fatalf("sum %v", got)
		}
		i64 := FromInt64([]int64{3, -1}).Int64s()
		if i64[0] != 3 || i64[1] != -1 {
			t.Fatalf("int64 round trip %v", i64)
		}
	})
}

func TestErrorsAreTypedAndRecoverable(t *testing.T) {
	leakCheck(t)
	cases := []struct {
		name string
		f    func()
		want string // a fragment of libtorch's message
	}{
		{"shape mismatch", func() {
			Zeros([]int64{2, 3}, Float32, CPU).Matmul(Zeros([]int64{4, 5}, Float32, CPU))
		}, "cannot be multiplied"},
		{"bad dtype", func() {
			Embedding(Zeros([]int64{4, 2}, Float32, CPU), Zeros([]int64{3}, Float32, CPU))
		}, "Long"},
		{"wrong device", func() {
			Zeros([]int64{2}, Float32, CUDA(7))
		}, ""},
		{"freed tensor", func() {
			x := Zeros([]int64{2}, Float32, CPU)
			x.Free()
			x.Neg()
		}, "freed"},
		{"int dtype code", func() { Zeros([]int64{2}, DType(99), CPU) }, "dtype"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			WithScope(func(*Scope) { err = Try(c.f) })
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("got %v (%T), want *torch.Error", err, err)
			}
			if !strings.Contains(te.Msg, c.want) {
				t.Errorf("message %q lacks %q", te.Msg, c.want)
			}
			if strings.Contains(te.Msg, "Exception raised from") || strings.Contains(te.Msg, "frame #") {
				t.Errorf("message carries a C++ backtrace: %q", te.Msg)
			}
			// The process goes on: libtorch still works.
			WithScope(func(*Scope) {
				if v := Ones([]int64{3}, Float32, CPU).Sum(false).Item(); v != 3 {
					t.Fatalf("after error: %v", v)
				}
			})
		})
	}
}

func TestScopeFreesAndKeeps(t *testing.T) {
	leakCheck(t)
	base := LiveTensors()
	var kept *Tensor
	outer := NewScope()
	WithScope(func(s *Scope) {
		a := Ones([]int64{4}, Float32, CPU)
		b := a.MulScalar(2).AddScalar(1)
		kept = s.Keep(b.Sum(false))
		if LiveTensors()-base != 4 {
			t.Fatalf("inside: %d live", LiveTensors()-base)
		}
	})
	if LiveTensors()-base != 1 || kept.Freed() || kept.Item() != 12 {
		t.Fatalf("after inner close: %d live, kept %v", LiveTensors()-base, kept)
	}
	outer.Close()
	if !kept.Freed() || LiveTensors() != base {
		t.Fatalf("outer scope did not free the kept tensor")
	}
}

func TestNoGradAndAutograd(t *testing.T) {
	leakCheck(t)
	WithScope(func(s *Scope) {
		w := FromFloat64([]float64{1, 2, 3}).SetRequiresGrad(true)
		defer w.ZeroGrad()
		w.Square().Sum(false).Backward()
		g := w.Grad().Float64s()
		for i, want := range []float64{2, 4, 6} {
			if g[i] != want {
				t.Fatalf("grad %v", g)
			}
		}
		NoGrad(func() {
			if GradEnabled() || w.MulScalar(2).RequiresGrad() {
				t.Fatal("no-grad mode records")
			}
		})
		if !GradEnabled() {
			t.Fatal("grad mode not restored")
		}
		w.ZeroGrad()
		if w.Grad() != nil {
			t.Fatal("gradient not dropped")
		}
	})
}

func TestCapabilities(t *testing.T) {
	c := Capabilities()
	if !strings.Contains(c, "torch=") || Version() == "unknown" {
		t.Fatalf("capabilities %q", c)
	}
	t.Logf("%s", c)
	// The shim requires libtorch 2.1 (CMakeLists.txt, clm_internal.h).
	var major, minor int
	if _, err := fmt.Sscanf(Version(), "%d.%d", &major, &minor); err != nil || major < 2 || (major == 2 && minor < 1) {
		t.Errorf("libtorch %q: want 2.1 or later (%v)", Version(), err)
	}
	if d, err := ParseDevice("cuda:2"); err != nil || d != CUDA(2) {
		t.Errorf("ParseDevice: %v %v", d, err)
	}
	if _, err := ParseDevice("tpu"); err == nil {
		t.Error("ParseDevice accepted tpu")
	}
	_ = math.Pi
	// scripts/check-cuda-shim.sh runs this package against a CUDA shim on a
	// machine without a GPU: it must be a CUDA build, with NCCL, that runs on
	// the CPU.
	switch want := os.Getenv("CLM_EXPECT_SHIM"); want {
	case "":
	case "cuda", "cpu":
		if got := strings.Contains(c, "cuda_build=1"); got != (want == "cuda") {
			t.Errorf("CLM_EXPECT_SHIM=%s, but the shim reports %q", want, c)
		}
		if want == "cuda" && !slices.Contains(DistributedBackends(), "nccl") {
			t.Errorf("CUDA shim without the NCCL backend: %v", DistributedBackends())
		}
	default:
		t.Fatalf("CLM_EXPECT_SHIM=%q: want cuda or cpu", want)
	}
}

// TestIsOutOfMemory: an allocation the machine cannot serve is recognised
// (micro-batch fitting backs off on it), other errors are not; the process
// goes on.
func TestIsOutOfMemory(t *testing.T) {
	leakCheck(t)
	cases := []struct {
		name string
		f    func()
		oom  bool
	}{
		{"1 PiB", func() { Full([]int64{1 << 48}, 0, Float32, CPU) }, true},
		{"shape mismatch", func() { Ones([]int64{2, 3}, Float32, CPU).Matmul(Ones([]int64{2, 3}, Float32, CPU)) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewScope()
			defer s.Close()
			err := Try(c.f)
			if err == nil {
				t.Fatal("no error")
			}
			if got := IsOutOfMemory(err); got != c.oom {
				t.Errorf("IsOutOfMemory(%v) = %v, want %v", err, got, c.oom)
			}
		})
	}
	if IsOutOfMemory(errors.New("out of memory")) {
		t.Error("a non-torch error counted as libtorch's out of memory")
	}
	if !CUDAAvailable() {
		if _, _, _, err := CUDAMemInfo(CUDA(0)); err == nil {
			t.Error("CUDAMemInfo without a GPU succeeded")
		}
	}
}

// TestTryUnwindsScopes: an op error inside Try, two scopes deep and with
// those scopes left open by the panic, comes back as an error with
// libtorch's message; the scopes are closed, their tensors freed, and the
// caller's scope closes normally afterwards.
func TestTryUnwindsScopes(t *testing.T) {
	before := LiveTensors()
	outer := NewScope()
	a := Zeros([]int64{2, 3}, Float32, CPU)
	err := Try(func() {
		s1 := NewScope()
		x := Ones([]int64{4, 5}, Float32, CPU)
		s2 := NewScope()
		_ = Ones([]int64{7, 7}, Float32, CPU)
		x.Matmul(a) // [4,5] x [2,3]: a shape error
		s2.Close()  // never reached
		s1.Close()
	})
	var te *Error
	if !errors.As(err, &te) || !strings.Contains(te.Msg, "cannot be multiplied") {
		t.Fatalf("Try returned %v, want libtorch's shape message", err)
	}
	if currentScope() != outer {
		t.Fatalf("the scopes opened inside Try are still open")
	}
	if got := LiveTensors(); got != before+1 {
		t.Errorf("%d live tensors inside the caller's scope, want %d", got-before, 1)
	}
	outer.Close() // must not report scopes closed out of order
	if got := LiveTensors(); got != before {
		t.Errorf("live tensors %d -> %d", before, got)
	}
}

// TestNoGradPinsThread: NoGrad turns grad mode off for the code inside it
// even when the goroutine is not locked to its thread and yields.
func TestNoGradPinsThread(t *testing.T) {
	for i := 0; i < 200; i++ {
		NoGrad(func() {
			runtime.Gosched()
			if GradEnabled() {
				t.Fatal("grad mode on inside NoGrad after a reschedule")
			}
		})
	}
}
