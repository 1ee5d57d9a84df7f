package train

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"clm/internal/atomicfile"
	"clm/torch"
)

// ProfileSteps are the steps a run profiles with libtorch's profiler
// (numbered as the log numbers them, From through To); the zero value
// profiles nothing.
type ProfileSteps struct{ From, To int }

// ParseProfileSteps reads "N" (one step) or "N:M" (steps N through M).
func ParseProfileSteps(s string) (ProfileSteps, error) {
	a, b, span := strings.Cut(s, ":")
	from, err1 := strconv.Atoi(a)
	to, err2 := from, error(nil)
	if span {
		to, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || from < 1 || to < from {
		return ProfileSteps{}, fmt.Errorf("profile %q: want a step N or steps N:M, 1 ≤ N ≤ M", s)
	}
	return ProfileSteps{from, to}, nil
}

// ProfileDir is the folder of a run's profiles.
func ProfileDir(runDir string) string { return filepath.Join(runDir, "profile") }

// stepProfile profiles the engine's steps From..To and writes, in the run
// folder's profile/, the Chrome trace (steps-F-T.trace.json, for
// chrome://tracing or Perfetto) and the time per op (steps-F-T.txt).
type stepProfile struct {
	ProfileSteps
	dir string
	dev torch.Device
	log io.Writer
}

// begin starts the profiler before step n if n is the first profiled step.
func (p *stepProfile) begin(n int) error {
	if p == nil || n != p.From {
		return nil
	}
	if err := torch.StartProfiler(p.dev.IsCUDA()); err != nil {
		return fmt.Errorf("step %d: %w", n, err)
	}
	return nil
}

// end stops the profiler after step n if n is the last profiled step, and
// writes the profile.
func (p *stepProfile) end(n int) error {
	if p == nil || n != p.To {
		return nil
	}
	if err := torch.Synchronize(p.dev); err != nil { // the kernels of the last step, on a GPU
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	name := fmt.Sprintf("steps-%d-%d", p.From, p.To)
	trace := filepath.Join(p.dir, name+".trace.json")
	prof, err := torch.StopProfiler(trace)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	steps := p.To - p.From + 1
	head := fmt.Sprintf("profile of steps %d-%d (%d steps, %.1f ms of wall time each) on %v\n",
		p.From, p.To, steps, float64(prof.Span())/1e6/float64(steps), p.dev)
	ops, table := prof.ByOp(), filepath.Join(p.dir, name+".txt")
	if err := atomicfile.Write(table, []byte(head+ops.Table(40)), 0o644); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	fmt.Fprintf(p.log, "%s%s(all ops: %s; trace: %s)\n", head, ops.Table(8), table, trace)
	return nil
}
