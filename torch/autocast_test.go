package torch

import (
	"runtime"
	"testing"
)

// TestAutocastCPU checks the autocast switch on the CPU: linear layers run in
// bfloat16 inside, float32 again after, and the result is close to fp32.
func TestAutocastCPU(t *testing.T) {
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	WithScope(func(*Scope) {
		ManualSeed(3)
		x := Randn([]int64{16, 32}, Float32, CPU)
		w := Randn([]int64{8, 32}, Float32, CPU)
		ref := Linear(x, w, nil)
		var got *Tensor
		Autocast(CPU, BFloat16, func() { got = Linear(x, w, nil) })
		if got.DType() != BFloat16 {
			t.Fatalf("linear under CPU autocast gave %v", got.DType())
		}
		if d := Linear(x, w, nil).DType(); d != Float32 {
			t.Fatalf("autocast not restored: %v", d)
		}
		if err := allClose(got.ToDType(Float32), ref, 0.02); err != nil {
			t.Errorf("bf16 result far from fp32: %v", err)
		}
	})
}
