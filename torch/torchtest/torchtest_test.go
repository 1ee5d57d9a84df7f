package torchtest

import (
	"fmt"
	"testing"

	"clm/torch"
)

// recorder is a testing.TB whose cleanups and errors the test runs and reads.
type recorder struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestGuard: a test that leaves a handle behind fails, one that frees what
// it made does not.
func TestGuard(t *testing.T) {
	for _, leak := range []bool{false, true} {
		r := &recorder{TB: t}
		Guard(r)
		x := torch.Zeros([]int64{2}, torch.Float32, torch.CPU)
		if !leak {
			x.Free()
		}
		r.end()
		if got := len(r.errs) > 0; got != leak {
			t.Errorf("leak %v: errors %q", leak, r.errs)
		}
		x.Free()
	}
}
