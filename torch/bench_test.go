package torch

import (
	"testing"

	"clm/internal/testkit/benchenv"
)

// BenchmarkOpDispatch is the per-op overhead: a + b on one-element tensors,
// result freed each time (Python: `a + b`).
func BenchmarkOpDispatch(b *testing.B) {
	benchenv.SetThreads(b, SetNumThreads)
	a := Ones([]int64{1}, Float32, CPU)
	c := Ones([]int64{1}, Float32, CPU)
	defer a.Free()
	defer c.Free()
	b.ResetTimer()
	for b.Loop() {
		a.Add(c).Free()
	}
}

// BenchmarkOpDispatchScoped is the same op under a scope per 100 ops, as a
// training step uses them.
func BenchmarkOpDispatchScoped(b *testing.B) {
	benchenv.SetThreads(b, SetNumThreads)
	a := Ones([]int64{1}, Float32, CPU)
	c := Ones([]int64{1}, Float32, CPU)
	defer a.Free()
	defer c.Free()
	s := NewScope()
	n := 0
	for b.Loop() {
		a.Add(c)
		if n++; n == 100 {
			s.Close()
			s, n = NewScope(), 0
		}
	}
	s.Close()
}

// BenchmarkMLPStep is one training step (forward, backward, clip, AdamW) of
// a 512→1024→512 MLP on a batch of 64 (Python: the same in eager PyTorch).
func BenchmarkMLPStep(b *testing.B) {
	benchenv.SetThreads(b, SetNumThreads)
	m := newMLP(512, 1024, 512)
	defer m.free()
	x := Randn([]int64{64, 512}, Float32, CPU)
	labels := make([]int64, 64)
	for i := range labels {
		labels[i] = int64(i * 7 % 512)
	}
	y := FromInt64(labels)
	defer x.Free()
	defer y.Free()
	m.step(x, y)
	b.ResetTimer()
	for b.Loop() {
		m.step(x, y)
	}
}
