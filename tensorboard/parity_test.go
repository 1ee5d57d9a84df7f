package tensorboard

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"clm/internal/pyref"
)

// TestPythonReads writes scalars in Go and reads them back with
// TensorBoard's CRC-checking record reader and its EventAccumulator.
func TestPythonReads(t *testing.T) {
	dir := t.TempDir()
	start := float64(time.Now().UnixNano()) / 1e9
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	type point struct {
		tag   string
		step  int64
		value float64
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
	end := float64(time.Now().UnixNano()) / 1e9

	var got struct {
		Files       int
		FileVersion float64 `json:"file_version"`
		Events      []struct {
			Step        int64
			FileVersion string  `json:"file_version"`
			WallTime    float64 `json:"wall_time"`
		}
		Scalars map[string][][3]float64
	}
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
	// EventAccumulator keeps each tag's points in step order.
	next := map[string]int{}
	for _, p := range want {
		pts := got.Scalars[p.tag]
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
	total := 0
	for tag, pts := range got.Scalars {
		total += len(pts)
		if len(pts) != next[tag] {
			t.Errorf("%s: TensorBoard has %d points, want %d", tag, len(pts), next[tag])
		}
	}
	t.Logf("TensorBoard read %d events, %d scalar points in %d tags", len(got.Events), total, len(got.Scalars))
}
