// Package benchenv applies the benchmarks' settings from the environment,
// which scripts/bench-compare.sh also passes to the Python references, so
// that both sides run alike. (torch's own benchmarks cannot import it, as it
// imports torch; they have the same helper, benchThreads.)
package benchenv

import (
	"os"
	"strconv"
	"testing"

	"clm/torch"
)

// SetThreads sets libtorch's CPU threads to CLM_BENCH_THREADS (default 1).
func SetThreads(tb testing.TB) {
	tb.Helper()
	n := 1
	if s := os.Getenv("CLM_BENCH_THREADS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if err := torch.SetNumThreads(n); err != nil {
		tb.Fatal(err)
	}
}
