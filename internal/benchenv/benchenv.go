// Package benchenv applies the benchmarks' settings from the environment,
// which scripts/bench-compare.sh also passes to the Python references, so
// that both sides run alike. (torch's own benchmarks cannot import it, as it
// imports torch; they have the same helper, benchThreads.)
package benchenv

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"clm/torch"
)

// SetThreads sets libtorch's CPU threads to CLM_BENCH_THREADS (default 1)
// and locks the calling goroutine to its OS thread until it exits. Call it
// first in every benchmark function that runs libtorch work, sub-benchmarks
// included (each runs on a goroutine of its own): a goroutine that moves to
// another OS thread starts another OpenMP thread team there, while the old
// team's threads still spin, and on few cores the step then runs several
// times slower, now and then (an AdamW step measured 12 and 40–54 ms).
func SetThreads(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread() // released when the benchmark's goroutine exits
	n := 1
	if s := os.Getenv("CLM_BENCH_THREADS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if err := torch.SetNumThreads(n); err != nil {
		tb.Fatal(err)
	}
}
