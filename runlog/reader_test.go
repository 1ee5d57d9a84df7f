package runlog

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoundTrip reads the golden lines back and writes the records again:
// the same bytes (non-finite values were null and stay null). The train
// line of a null loss is malformed to the reader, as it always was.
func TestRoundTrip(t *testing.T) {
	src := writeGolden(t)
	l := readLog(t, src)
	if len(l.Train) != 1 || len(l.Eval) != 1 || len(l.Stats) != 3 || l.Skipped != 1 || l.FirstSkipped != 2 {
		t.Fatalf("read %d train, %d eval, %d stats records, %d malformed lines (first %d)", len(l.Train), len(l.Eval), len(l.Stats), l.Skipped, l.FirstSkipped)
	}
	dir := t.TempDir()
	w, err := Open(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Record{l.Train[0], l.Eval[0], l.Stats[0], l.Stats[1], l.Stats[2]} {
		if err := w.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	want := strings.Join(append(lines[:1:1], lines[2:]...), "")
	got, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("written again:\n%s\nwant\n%s", got, want)
	}
}

// TestReadLines checks which lines are records, which are malformed and
// which are ignored, and what absent fields read as.
func TestReadLines(t *testing.T) {
	cases := []struct {
		name, line string
		skipped    bool
		check      func(*Log) bool // nil: no record
	}{
		{name: "train without optional keys", line: `{"kind":"train","step":5,"loss":2}`,
			check: func(l *Log) bool {
				r := l.Train[0]
				return r.Loss == 2 && math.IsNaN(r.LR) && math.IsNaN(r.Time) && r.Tokens == 0 && r.LossScale == 0
			}},
		{name: "train with tokens and loss scale", line: `{"kind":"train","step":5,"loss":2,"tokens":4096,"loss_scale":1024}`,
			check: func(l *Log) bool { return l.Train[0].Tokens == 4096 && l.Train[0].LossScale == 1024 }},
		{name: "train with peak memory", line: `{"kind":"train","step":5,"loss":2,"peak_memory":1536000000}`,
			check: func(l *Log) bool { return l.Train[0].PeakMemory == 1536000000 }},
		{name: "eval", line: `{"kind":"eval","step":7,"eval_loss":3,"eval_sequences":12}`,
			check: func(l *Log) bool { return l.Eval[0].Step == 7 && l.Eval[0].EvalSequences == 12 }},
		{name: "stats, gains only", line: `{"kind":"stats","step":1,"gains":{"g":[1,null]}}`,
			check: func(l *Log) bool {
				g := l.Stats[0].Gains["g"]
				return len(g) == 2 && math.IsNaN(g[1]) && l.Stats[0].Layers == nil && l.Stats[0].AttnEntropy == nil
			}},
		{name: "stats, layers without index", line: `{"kind":"stats","step":1,"layers":[{"kurtosis":2},{"kurtosis":3}]}`,
			check: func(l *Log) bool { return l.Stats[0].Layers[1].Layer == 1 && l.Stats[0].Layers[1].Kurtosis == 3 }},
		{name: "cut", line: `{"kind":"train","step":`, skipped: true},
		{name: "not JSON", line: `not json at all`, skipped: true},
		{name: "no kind", line: `{"step":3,"loss":1}`, skipped: true},
		{name: "no step", line: `{"kind":"eval","time":1}`, skipped: true},
		{name: "train without loss", line: `{"kind":"train","step":5}`, skipped: true},
		{name: "train with a null loss", line: `{"kind":"train","step":5,"loss":null}`, skipped: true},
		{name: "eval without loss", line: `{"kind":"eval","step":5}`, skipped: true},
		{name: "stats without statistics", line: `{"kind":"stats","step":5}`, skipped: true},
		{name: "stats with a bad layer", line: `{"kind":"stats","step":5,"layers":[{"layer":"x"}]}`, skipped: true},
		{name: "another kind", line: `{"kind":"checkpoint","step":100,"path":"x"}`},
		{name: "blank", line: `   `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := Read(strings.NewReader("\n" + c.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			records := len(l.Train) + len(l.Eval) + len(l.Stats)
			switch {
			case c.skipped != (l.Skipped == 1) || c.skipped && l.FirstSkipped != 2:
				t.Errorf("skipped %d (first at line %d), want skipped=%v at line 2", l.Skipped, l.FirstSkipped, c.skipped)
			case (c.check != nil) != (records == 1):
				t.Errorf("%d records, want a record: %v", records, c.check != nil)
			case c.check != nil && !c.check(l):
				t.Errorf("read %+v", l)
			}
		})
	}
}

// TestReadLastWins checks that a step logged twice keeps its last line and
// that records come out sorted by step.
func TestReadLastWins(t *testing.T) {
	in := strings.Join([]string{
		`{"kind":"train","step":20,"loss":5}`,
		`{"kind":"train","step":10,"loss":4}`,
		`{"kind":"train","step":20,"loss":3}`,
		`{"kind":"eval","step":20,"eval_loss":2}`,
	}, "\n") // no final newline
	l, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Train) != 2 || l.Train[0].Step != 10 || l.Train[1].Loss != 3 || len(l.Eval) != 1 || l.Eval[0].EvalLoss != 2 {
		t.Errorf("read %+v", l)
	}
}

// TestRewriteDemoRun reads lines that the trainer wrote in a real run
// (testdata: the demo's first eval, train and stats lines and its last
// train line) and writes their records again: the same bytes.
func TestRewriteDemoRun(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "demo-metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(want), "\n"), "\n") {
		l, err := Read(strings.NewReader(line))
		if err != nil || l.Skipped != 0 {
			t.Fatalf("%s: %v, %d malformed", line, err, l.Skipped)
		}
		for _, r := range l.Train {
			recs = append(recs, r)
		}
		for _, r := range l.Eval {
			recs = append(recs, r)
		}
		for _, r := range l.Stats {
			recs = append(recs, r)
		}
	}
	dir := t.TempDir()
	w, err := Open(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("written again:\n%s\nwant\n%s", got, want)
	}
}
