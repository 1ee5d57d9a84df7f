package runlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"clm/internal/atomicfile"
	"clm/internal/fault"
	"clm/tensorboard"
)

// Writer appends a run's records to metrics.jsonl and their numbers, as
// TensorBoard scalars named kind/field, to event files under tb/, which
// `tensorboard --logdir` and `wandb sync --sync-tensorboard` read.
//
// A nil *Writer writes nothing (a data-parallel rank other than 0). The
// first error of a Writer sticks: every later Record, Flush and Close
// returns it, so that an error a caller could not return (a record
// written from deep inside a step) still stops the run at the next
// checkpoint's Flush.
type Writer struct {
	f   *os.File
	w   *bufio.Writer
	tb  *tensorboard.Writer
	err error
}

// Open opens the log of run folder dir for appending. keep is the step of
// the checkpoint the run resumes from, or -1 when it starts over. The log
// is first repaired to what that checkpoint saw: records of later steps
// (written after it by the interrupted process) and a line cut by a crash
// are dropped, so that every (kind, step) record ends up there once;
// TensorBoard's event files are truncated the same way.
func Open(dir string, keep int64) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	path := filepath.Join(dir, MetricsFile)
	if err := truncateAfter(path, keep); err != nil {
		return nil, err
	}
	tbDir := filepath.Join(dir, TensorBoardDir)
	if err := tensorboard.Truncate(tbDir, keep); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	tb, err := tensorboard.NewWriter(tbDir)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Writer{f: f, w: bufio.NewWriter(f), tb: tb}, nil
}

// Has reports whether the log holds a record of kind at step (a nil
// Writer, another rank's, holds none). It flushes what is buffered first.
func (w *Writer) Has(kind string, step int64) (bool, error) {
	if w == nil {
		return false, nil
	}
	if err := w.Flush(); err != nil {
		return false, err
	}
	f, err := os.Open(w.f.Name())
	if err != nil {
		return false, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	l, err := Read(f)
	if err != nil {
		return false, fmt.Errorf("metrics: %w", err)
	}
	switch kind {
	case KindTrain:
		return slices.ContainsFunc(l.Train, func(r Train) bool { return r.Step == step }), nil
	case KindEval:
		return slices.ContainsFunc(l.Eval, func(r Eval) bool { return r.Step == step }), nil
	case KindStats:
		return slices.ContainsFunc(l.Stats, func(r Stats) bool { return r.Step == step }), nil
	}
	return false, fmt.Errorf("metrics: unknown record kind %q", kind)
}

// truncateAfter rewrites path, atomically, with only the complete records
// of steps up to keep (none when keep < 0).
func truncateAfter(path string, keep int64) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var out []byte
	for _, line := range splitLines(b) {
		var rec struct {
			Kind *string `json:"kind"`
			Step *int64  `json:"step"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Kind == nil || rec.Step == nil || *rec.Step > keep {
			continue // cut by a crash, or past the checkpoint
		}
		out = append(append(out, line...), '\n')
	}
	if len(out) == len(b) {
		return nil
	}
	if err := atomicfile.Write(path, out, 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Record writes r as one line, stamped with the time of writing unless r
// carries its own, and its numbers as TensorBoard scalars of r's step.
func (w *Writer) Record(r Record) error {
	if w == nil {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	t := r.stamped()
	if t == 0 {
		t = float64(time.Now().UnixNano()) / 1e9
	}
	b, err := json.Marshal(r.line(t))
	if err != nil {
		return w.fail(err)
	}
	if fault.Hit("metrics.record") { // the crash tests' torn write
		w.w.Flush()
		w.f.Write(b[:len(b)/2])
		fault.Kill()
	}
	w.w.Write(b)
	w.w.WriteByte('\n') // bufio's error sticks; Flush returns it
	scalars := map[string]float64{}
	r.scalars(scalars)
	if len(scalars) > 0 {
		if err := w.tb.Scalars(r.step(), scalars); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// fail makes err the Writer's sticky error and returns it.
func (w *Writer) fail(err error) error {
	w.err = fmt.Errorf("metrics: %w", err)
	return w.err
}

// Flush writes buffered lines and events to disk and makes them durable
// (fsync): a checkpoint written afterwards never claims a step whose
// records could be lost.
func (w *Writer) Flush() error {
	if w == nil {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		return w.fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(err)
	}
	if err := w.tb.Sync(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Close flushes and closes the files.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	err := w.Flush()
	if e := w.f.Close(); err == nil {
		err = e
	}
	if e := w.tb.Close(); err == nil {
		err = e
	}
	return err
}

// splitLines splits b at newlines, keeping a last line without one.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			if i > start {
				out = append(out, b[start:i])
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, b[start:])
	}
	return out
}
