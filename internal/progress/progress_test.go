package progress

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLines: without a terminal nothing is drawn, Status writes only after
// Every of quiet (counted from Start and from the last line), Line always
// writes, with the time of day when asked, and of concurrent Status calls
// at one moment one writes.
func TestLines(t *testing.T) {
	for _, stamp := range []bool{false, true} {
		var out strings.Builder
		now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
		d := New(&out, Options{Every: 5 * time.Second, Stamp: stamp, Lines: true, Now: func() time.Time { return now }})
		if d.Terminal() {
			t.Fatal("a Display with Lines draws a bar")
		}
		d.Start("work", 10, 0, false)
		d.Add(3)
		lines := func() int { return strings.Count(out.String(), "\n") }
		for _, s := range []struct {
			advance time.Duration
			want    int
		}{{4 * time.Second, 0}, {time.Second, 1}, {2 * time.Second, 1}, {3 * time.Second, 2}} {
			now = now.Add(s.advance)
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() { defer wg.Done(); d.Status(func() string { return "status" }) }()
			}
			wg.Wait()
			if lines() != s.want {
				t.Fatalf("stamp %v: %d lines, want %d:\n%s", stamp, lines(), s.want, out.String())
			}
		}
		d.Line("said")
		d.Finish()
		last := strings.Split(strings.TrimSpace(out.String()), "\n")[2]
		if want := map[bool]string{false: "said", true: "10:00:10 said"}[stamp]; last != want {
			t.Errorf("stamp %v: last line %q, want %q", stamp, last, want)
		}
	}
}
