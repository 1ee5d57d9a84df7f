package train

import (
	"strings"
	"testing"
	"time"

	"clm/internal/progress"
)

// TestLineProgressNeverQuiet: without a terminal, a run writes a line at
// least every 30 s, through long steps and long evaluations alike.
func TestLineProgressNeverQuiet(t *testing.T) {
	var out strings.Builder
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	p := &steps{d: progress.New(&out, progress.Options{Every: quietLimit, Stamp: true, Lines: true, Now: func() time.Time { return now }})}
	p.Start(100, 0)
	lines := func() int { return strings.Count(out.String(), "\n") }
	steps := []struct {
		advance   time.Duration
		step      int
		phase     string
		wantLines int
	}{
		{10 * time.Second, 1, "", 1},              // quiet for 10 s: nothing
		{25 * time.Second, 2, "", 2},              // 35 s: a step line with the ETA
		{5 * time.Second, 0, "eval at step 2", 2}, // an evaluation begins
		{20 * time.Second, 0, "eval at step 2", 2},
		{11 * time.Second, 0, "eval at step 2", 3}, // 31 s into it: an eval line
		{40 * time.Second, 3, "", 4},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if s.phase != "" {
			p.Phase(s.phase, i, 10)
		} else {
			p.Update(s.step, 2.5, 1e-3, 1000)
		}
		if lines() != s.wantLines {
			t.Fatalf("after %d: %d lines, want %d:\n%s", i, lines(), s.wantLines, out.String())
		}
	}
	for _, want := range []string{"training: step 0 of 100", "step 2/100  loss 2.5000", "ETA 28m35s", "eval at step 2 4/10 (31s so far)", "step 3/100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
