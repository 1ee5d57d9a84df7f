package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"clm/internal/atomicfile"
	"clm/internal/fault"
	"clm/internal/jsonnum"
	"clm/tensorboard"
)

// Metrics writes a run's measurements: metrics.jsonl (one JSON object per
// line, `kind` train / eval / stats) and TensorBoard event files under
// tb/, which `tensorboard --logdir` and `wandb sync --sync-tensorboard` read.
type Metrics struct {
	path string
	f    *os.File
	w    *bufio.Writer
	tb   *tensorboard.Writer
}

// OpenMetrics opens the metrics of run folder dir for appending. keep is the
// step of the checkpoint the run resumes from, or -1 when it starts over.
// The log is first repaired to what that checkpoint saw: records of later
// steps (written after it by the interrupted process) and a line cut by a
// crash are dropped, so that every (kind, step) record ends up there once;
// TensorBoard's event files are truncated the same way.
func OpenMetrics(dir string, keep int) (*Metrics, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	path := filepath.Join(dir, "metrics.jsonl")
	if err := truncateAfter(path, keep); err != nil {
		return nil, err
	}
	if err := tensorboard.Truncate(filepath.Join(dir, "tb"), int64(keep)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	tb, err := tensorboard.NewWriter(filepath.Join(dir, "tb"))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Metrics{path: path, f: f, w: bufio.NewWriter(f), tb: tb}, nil
}

// truncateAfter rewrites path, atomically, with only the complete records
// of steps up to keep (none when keep < 0).
func truncateAfter(path string, keep int) error {
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
			Step *int    `json:"step"`
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

// Record writes one line of the given kind with fields, and the numeric
// fields as TensorBoard scalars named kind/field.
func (m *Metrics) Record(kind string, step int, fields map[string]any) error {
	if m == nil { // a data-parallel rank other than 0 writes nothing
		return nil
	}
	rec := map[string]any{"kind": kind, "step": step, "time": float64(time.Now().UnixNano()) / 1e9}
	for k, v := range fields {
		rec[k] = finiteOrNull(v)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if fault.Hit("metrics.record") { // the crash tests' torn write
		m.w.Flush()
		m.f.Write(b[:len(b)/2])
		fault.Kill()
	}
	m.w.Write(b)
	m.w.WriteByte('\n')
	scalars := map[string]float64{}
	flatten(kind, fields, scalars)
	if len(scalars) > 0 {
		if err := m.tb.Scalars(int64(step), scalars); err != nil {
			return err
		}
	}
	return nil
}

// finiteOrNull makes a value JSON-encodable: NaN and ±Inf (a log window of
// skipped steps, a diverged run) are written as null, as jsonnum.Float does
// for the statistics, in floats and float slices.
func finiteOrNull(v any) any {
	switch x := v.(type) {
	case float64:
		return jsonnum.Float(x)
	case []float64:
		out := make([]jsonnum.Float, len(x))
		for i, f := range x {
			out[i] = jsonnum.Float(f)
		}
		return out
	}
	return v
}

// flatten turns nested numeric fields into TensorBoard tags.
func flatten(prefix string, v any, out map[string]float64) {
	switch x := v.(type) {
	case float64:
		out[prefix] = x
	case float32:
		out[prefix] = float64(x)
	case int:
		out[prefix] = float64(x)
	case int64:
		out[prefix] = float64(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			flatten(prefix+"/"+k, x[k], out)
		}
	case []float64:
		for i, f := range x {
			out[fmt.Sprintf("%s/%d", prefix, i)] = f
		}
	case []LayerStats:
		for _, l := range x {
			p := fmt.Sprintf("%s/layer_%02d/", prefix, l.Layer)
			out[p+"kurtosis"] = l.Kurtosis
			out[p+"kurtosis_minus_one"] = l.KurtosisMinusOne
			out[p+"max_median_ratio"] = l.MaxMedianRatio
			out[p+"feat_corr_rms"] = l.FeatCorrRMS
			out[p+"batch_corr_mean"] = l.BatchCorrMean
			out[p+"batch_corr_rms"] = l.BatchCorrRMS
			out[p+"x_rms"] = l.XRMS
		}
	case map[string][]float64:
		for k, fs := range x {
			for i, f := range fs {
				if len(fs) == 1 {
					out[prefix+"/"+k] = f
				} else {
					out[fmt.Sprintf("%s/%s/%d", prefix, k, i)] = f
				}
			}
		}
	}
}

// Flush writes buffered lines and events to disk and makes them durable
// (fsync): a checkpoint written afterwards never claims a step whose
// records could be lost.
func (m *Metrics) Flush() error {
	if m == nil {
		return nil
	}
	if err := m.w.Flush(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return m.tb.Sync()
}

// Close flushes and closes the files.
func (m *Metrics) Close() error {
	if m == nil {
		return nil
	}
	err := m.Flush()
	if e := m.f.Close(); err == nil {
		err = e
	}
	if e := m.tb.Close(); err == nil {
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
