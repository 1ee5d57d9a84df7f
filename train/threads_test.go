package train

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"clm/torch"
)

// threadProbe is a Progress that records libtorch's thread count as seen
// by the training thread.
type threadProbe struct {
	nopProgress
	seen []int
}

func (p *threadProbe) Update(int, float64, float64, float64) {
	p.seen = append(p.seen, torch.NumThreads())
}

// TestRunUsesTheThreadCount: the thread count is per OS thread once a
// thread has run a libtorch op, so Run sets train.threads on the thread it
// trains on, whatever that thread ran before and wherever the count was
// set. (Without it a run and its resumption used different counts and
// differed in the last bit.)
func TestRunUsesTheThreadCount(t *testing.T) {
	def := torch.NumThreads()
	want := 1
	if def == 1 {
		want = 2
	}
	e := experiment(t, "default", fmt.Sprintf("[train]\nmicro_batch = 2\naccumulation = 1\nmax_steps = 3\nthreads = %d\n", want))
	done := make(chan []int)
	go func() {
		runtime.LockOSThread() // Run stays on this thread
		defer runtime.UnlockOSThread()
		s := torch.NewScope()
		torch.Zeros([]int64{1 << 16}, torch.Float32, torch.CPU).Sum(false) // this thread now keeps its count
		s.Close()
		m, tr := newRun(t, e, t.TempDir(), "", &fixedBatches{rows: makeBatches(3, 2, 32, 512, 1)})
		defer m.Close()
		defer tr.Close()
		probe := &threadProbe{}
		tr.progress = probe
		if err := tr.Run(context.Background()); err != nil {
			t.Error(err)
		}
		done <- probe.seen
	}()
	seen := <-done
	if len(seen) != 3 {
		t.Fatalf("%d updates, want 3", len(seen))
	}
	for i, n := range seen {
		if n != want {
			t.Errorf("step %d trained with %d threads, train.threads = %d (default %d)", i+1, n, want, def)
		}
	}
	if err := torch.SetNumThreads(def); err != nil {
		t.Fatal(err)
	}
}
