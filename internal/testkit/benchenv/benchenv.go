// Package benchenv applies the benchmarks' settings from the environment,
// which scripts/bench-compare.sh also passes to the Python references, so
// that both sides run alike. It does not import torch, so that torch's own
// benchmarks use it too.
package benchenv

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

// SetThreads sets libtorch's CPU threads to CLM_BENCH_THREADS (default 1)
// with set (torch.SetNumThreads) and locks the calling goroutine to its OS
// thread until it exits. Call it first in every benchmark function that
// runs libtorch work, sub-benchmarks included (each runs on a goroutine of
// its own): a goroutine that moves to another OS thread starts another
// OpenMP thread team there, while the old team's threads still spin, and on
// few cores the step then runs several times slower, now and then (an
// AdamW step measured 12 and 40–54 ms).
func SetThreads(tb testing.TB, set func(int) error) {
	tb.Helper()
	runtime.LockOSThread() // released when the benchmark's goroutine exits
	n := 1
	if s := os.Getenv("CLM_BENCH_THREADS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if err := set(n); err != nil {
		tb.Fatal(err)
	}
}
