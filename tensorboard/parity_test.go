package tensorboard

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"clm/internal/testkit/pyref"
)

// TestPythonReads writes scalars in Go and reads them back with
// TensorBoard's CRC-checking record reader and its EventAccumulator.
func TestPythonReads(t *testing.T) {
	dir := t.TempDir()
	start := float64(time.Now().UnixNano()) / 1e9
	want := writeScalarPoints(t, dir)
	end := float64(time.Now().UnixNano()) / 1e9

	var got pythonEvents
	out := pyref.Run(t, "tensorboard_check.py", dir)
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("reference output: %v\n%s", err, out)
	}
	if got.Files != 1 || got.FileVersion != 2 || len(got.Events) == 0 || got.Events[0].FileVersion != FileVersion {
		t.Errorf("files %d, file_version %v, first event %+v", got.Files, got.FileVersion, got.Events[:min(1, len(got.Events))])
	}
	for i, ev := range got.Events {
		if ev.WallTime < start-1e-3 || ev.WallTime > end+1e-3 || (i > 0 && ev.WallTime < got.Events[i-1].WallTime) {
			t.Errorf("event %d: wall_time %f outside [%f, %f] or decreasing", i, ev.WallTime, start, end)
		}
	}
	total := checkScalarPoints(t, got.Scalars, want)
	t.Logf("TensorBoard read %d events, %d scalar points in %d tags", len(got.Events), total, len(got.Scalars))
}

// A point is a scalar value of a tag at a step.
type point struct {
	tag   string
	step  int64
	value float64
}

// pythonEvents is what tensorboard_check.py reports of a run directory.
type pythonEvents struct {
	Files       int
	FileVersion float64 `json:"file_version"`
	Events      []struct {
		Step        int64
		FileVersion string  `json:"file_version"`
		WallTime    float64 `json:"wall_time"`
	}
	// Scalars holds each tag's points as (step, value, wall time).
	Scalars map[string][][3]float64
}

// writeScalarPoints writes a run of scalars to an event file in dir, with
// Scalars and Scalar, a tag that is not ASCII and extreme steps and values,
// and returns the points in the order written.
func writeScalarPoints(t *testing.T, dir string) []point {
	t.Helper()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []point
	for step := range int64(50) {
		loss := 10 * math.Exp(-float64(step)/7)
		lr := 3e-4 * math.Min(1, float64(step+1)/10)
		if err := w.Scalars(step, map[string]float64{"train/loss": loss, "train/lr": lr}); err != nil {
			t.Fatal(err)
		}
		want = append(want, point{"train/loss", step, loss}, point{"train/lr", step, lr})
		if step%10 == 0 {
			if err := w.Scalar("val/löss ✓", step, loss+0.1); err != nil {
				t.Fatal(err)
			}
			want = append(want, point{"val/löss ✓", step, loss + 0.1})
		}
	}
	for _, p := range []point{{"edge", -3, -1e-40}, {"edge", 1 << 40, 1e38}, {"edge", math.MaxInt64, 123456.789}} {
		w.Scalar(p.tag, p.step, p.value)
		want = append(want, p)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// checkScalarPoints checks that TensorBoard read each tag's points of want,
// in order (EventAccumulator keeps them in step order), as float32 values,
// and no others. It returns the number of points read.
func checkScalarPoints(t *testing.T, scalars map[string][][3]float64, want []point) (total int) {
	t.Helper()
	next := map[string]int{}
	for _, p := range want {
		pts := scalars[p.tag]
		i := next[p.tag]
		next[p.tag]++
		if i >= len(pts) {
			t.Errorf("%s: TensorBoard has %d points, want more", p.tag, len(pts))
			continue
		}
		// Steps past 2^53 lose precision in JSON; compare as float64.
		if step, v := pts[i][0], float32(pts[i][1]); step != float64(p.step) || v != float32(p.value) {
			t.Errorf("%s point %d = (%v, %v), want (%d, %v)", p.tag, i, step, v, p.step, float32(p.value))
		}
	}
	for tag, pts := range scalars {
		total += len(pts)
		if len(pts) != next[tag] {
			t.Errorf("%s: TensorBoard has %d points, want %d", tag, len(pts), next[tag])
		}
	}
	return total
}
