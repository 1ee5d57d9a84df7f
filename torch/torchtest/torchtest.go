// Package torchtest holds what every test of libtorch work needs, as
// net/http/httptest does for HTTP: one OS thread, and no tensor handle left
// behind.
package torchtest

import (
	"runtime"
	"testing"

	"clm/torch"
)

// Guard keeps the calling test on its OS thread until it ends, and fails it
// if it leaves more or fewer live tensor handles than it found. Call it
// first in every test (and subtest: each runs on a goroutine of its own)
// that runs libtorch work.
//
// The thread is what clm itself does (cmd/clm's main goroutine and
// Trainer.Run are locked): libtorch's grad mode, autocast and thread count
// are per OS thread, and results are bit-reproducible only on one. A test
// goroutine that moved between OS threads got a matrix product one rounding
// apart from the same product before it, in about one backward pass in 700
// on a 2-vCPU machine (MKL's sgemm, single-threaded; never once it was
// locked, or pinned to one CPU), and a bit-for-bit comparison failed.
func Guard(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread()
	before := torch.LiveTensors()
	tb.Cleanup(func() {
		if after := torch.LiveTensors(); after != before {
			tb.Errorf("live tensors: %d before, %d after", before, after)
		}
		runtime.UnlockOSThread()
	})
}
