package torch

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// mlp is a two-layer perceptron used by the memory test and the benchmarks.
type mlp struct {
	w1, b1, w2, b2 *Tensor
	opt            *AdamW
}

func newMLP(in, hidden, out int64) *mlp {
	ManualSeed(0)
	m := &mlp{
		w1: Zeros([]int64{hidden, in}, Float32, CPU).FillNormal(0, 0.1).SetRequiresGrad(true),
		b1: Zeros([]int64{hidden}, Float32, CPU).SetRequiresGrad(true),
		w2: Zeros([]int64{out, hidden}, Float32, CPU).FillNormal(0, 0.1).SetRequiresGrad(true),
		b2: Zeros([]int64{out}, Float32, CPU).SetRequiresGrad(true),
	}
	var err error
	m.opt, err = NewAdamW(AdamWTorch, 0.9, 0.999, 1e-8, []ParamGroup{
		{Params: []*Tensor{m.w1, m.w2}, LR: 1e-3, WeightDecay: 0.1},
		{Params: []*Tensor{m.b1, m.b2}, LR: 1e-3},
	})
	if err != nil {
		panic(err)
	}
	return m
}

func (m *mlp) params() []*Tensor { return []*Tensor{m.w1, m.b1, m.w2, m.b2} }

// step runs one forward, backward, clip and update inside its own scope.
func (m *mlp) step(x, y *Tensor) {
	s := NewScope()
	defer s.Close()
	h := Linear(x, m.w1, m.b1).Relu()
	loss := CrossEntropy(Linear(h, m.w2, m.b2), y, -100, ReduceMean)
	m.opt.ZeroGrad()
	loss.Backward()
	ClipGradNorm(m.params(), 1, 2)
	m.opt.Step()
}

func (m *mlp) free() {
	m.opt.ZeroGrad()
	m.opt.Close()
	for _, p := range m.params() {
		p.Free()
	}
}

// rssBytes returns the resident set size of this process.
func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestTrainingLoopDoesNotLeak runs 1000 training steps of a small MLP under
// per-step scopes: the live-handle count after step 10 equals that after
// step 1000, and resident memory grows by at most a few MB.
func TestTrainingLoopDoesNotLeak(t *testing.T) {
	leakCheck(t)
	m := newMLP(32, 64, 10)
	defer m.free()
	x := Randn([]int64{16, 32}, Float32, CPU)
	labels := make([]int64, 16)
	for i := range labels {
		labels[i] = int64(i % 10)
	}
	y := FromInt64(labels)
	defer x.Free()
	defer y.Free()
	var live10, rss10 int64
	for i := 1; i <= 1000; i++ {
		m.step(x, y)
		if i == 10 {
			live10, rss10 = LiveTensors(), rssBytes(t)
		}
	}
	live1000, rss1000 := LiveTensors(), rssBytes(t)
	if live1000 != live10 {
		t.Errorf("live tensors: %d after step 10, %d after step 1000", live10, live1000)
	}
	const limit = 8 << 20
	if grow := rss1000 - rss10; grow > limit {
		t.Errorf("resident memory grew by %.1f MB between steps 10 and 1000 (limit %d MB)", float64(grow)/(1<<20), limit>>20)
	}
	t.Logf("live handles %d → %d; RSS %.1f MB → %.1f MB", live10, live1000, float64(rss10)/(1<<20), float64(rss1000)/(1<<20))
}
