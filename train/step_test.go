package train

import (
	"math"
	"testing"

	"clm/torch"
)

// TestNaNGuard: the verdict on every kind of step, and the check interval
// resolved from nan_check_every, the device, fp16 and on_nan.
func TestNaNGuard(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	verdicts := []struct {
		policy       NaNPolicy
		scaled       bool
		loss, norm   float64
		want         verdict
		wantDeferred bool
	}{
		{StopOnNaN, false, 2.5, 1, applyStep, false},
		{StopOnNaN, false, nan, 1, stopRun, false},
		{StopOnNaN, false, 2.5, inf, stopRun, false},
		{SkipOnNaN, false, 2.5, nan, skipStep, false},
		{SkipOnNaN, false, -inf, 1, skipStep, false},
		{StopOnNaN, true, 2.5, 1, applyStep, false},
		{StopOnNaN, true, 2.5, inf, skipOverflow, false}, // fp16: an overflow of the scale
		{StopOnNaN, true, 2.5, nan, skipOverflow, false},
		{StopOnNaN, true, nan, nan, stopRun, false}, // the loss itself diverged
		{SkipOnNaN, true, inf, 1, skipStep, false},
	}
	for _, c := range verdicts {
		if got := (nanGuard{policy: c.policy, every: 1}).judge(c.loss, c.norm, c.scaled); got != c.want {
			t.Errorf("%s, scaled %v, loss %v, norm %v: verdict %d, want %d", c.policy, c.scaled, c.loss, c.norm, got, c.want)
		}
	}
	intervals := []struct {
		every     int
		dev       torch.Device
		precision Precision
		policy    NaNPolicy
		want      int
	}{
		{0, torch.CPU, FP32, StopOnNaN, 1},
		{0, torch.CUDA(0), BF16, StopOnNaN, 50}, // log_every
		{7, torch.CUDA(0), BF16, StopOnNaN, 7},
		{7, torch.CPU, FP32, StopOnNaN, 7},
		{7, torch.CUDA(0), FP16, StopOnNaN, 1},
		{0, torch.CUDA(0), BF16, SkipOnNaN, 1},
	}
	for _, c := range intervals {
		o := &Options{NaNCheckEvery: c.every, LogEvery: 50, OnNaN: c.policy}
		g := newNaNGuard(o, c.precision, c.dev)
		if g.every != c.want || g.deferred() != (c.want > 1) || !g.due(3*c.want) || c.want > 1 && g.due(c.want+1) {
			t.Errorf("nan_check_every %d on %v, %s, on_nan %s: every %d, want %d", c.every, c.dev, c.precision, c.policy, g.every, c.want)
		}
	}
}

// TestLossScaler: torch.amp.GradScaler's defaults as HF Trainer uses them:
// growth ×2 after 2000 applied steps in a row, back-off ×0.5 on overflow,
// which restarts the count; off, it leaves the state alone.
func TestLossScaler(t *testing.T) {
	st := State{LossScale: 65536}
	l := lossScaler{on: true, st: &st}
	for range 1999 {
		l.finite()
	}
	if st.LossScale != 65536 || st.GrowthTracker != 1999 {
		t.Fatalf("after 1999 steps: scale %v, tracker %d", st.LossScale, st.GrowthTracker)
	}
	l.overflow()
	if st.LossScale != 32768 || st.GrowthTracker != 0 {
		t.Fatalf("after an overflow: scale %v, tracker %d", st.LossScale, st.GrowthTracker)
	}
	for range 2000 {
		l.finite()
	}
	if st.LossScale != 65536 || st.GrowthTracker != 0 {
		t.Fatalf("after 2000 steps: scale %v, tracker %d", st.LossScale, st.GrowthTracker)
	}
	off := lossScaler{st: &st}
	off.finite()
	s := torch.NewScope()
	defer s.Close()
	x := torch.FromFloat64([]float64{3})
	if st.GrowthTracker != 0 || off.scale(x) != x {
		t.Errorf("an fp32 step changed the scaler: tracker %d", st.GrowthTracker)
	}
	if got := l.scale(x).Float64s()[0]; got != 3*65536 {
		t.Errorf("scaled loss %v, want %v", got, 3*65536)
	}
}

// TestPrecisionOn: auto is bf16 on a GPU and fp32 on the CPU; autocast
// dtypes follow.
func TestPrecisionOn(t *testing.T) {
	cases := []struct {
		p    Precision
		dev  torch.Device
		want Precision
		dt   torch.DType
		ok   bool
	}{
		{PrecisionAuto, torch.CPU, FP32, 0, false},
		{PrecisionAuto, torch.CUDA(1), BF16, torch.BFloat16, true},
		{FP16, torch.CUDA(0), FP16, torch.Float16, true},
		{BF16, torch.CPU, BF16, torch.BFloat16, true},
		{FP32, torch.CUDA(0), FP32, 0, false},
	}
	for _, c := range cases {
		got := c.p.on(c.dev)
		dt, ok := got.autocast()
		if got != c.want || ok != c.ok || ok && dt != c.dt {
			t.Errorf("%s on %v: %s (autocast %v %v), want %s", c.p, c.dev, got, dt, ok, c.want)
		}
	}
}
