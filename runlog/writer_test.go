package runlog

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clm/tensorboard"
)

// goldenLayers are two hidden states, the second with a non-finite
// max/median ratio.
var goldenLayers = []LayerStats{
	{Layer: 0, XRMS: 1.5, Kurtosis: 3, KurtosisMinusOne: 2, FeatCorrRMS: 0.1, BatchCorrMean: 0.2, BatchCorrRMS: 0.3, MaxMedianRatio: 7.25},
	{Layer: 1, XRMS: 2, Kurtosis: 1.0000001, KurtosisMinusOne: 1e-7, FeatCorrRMS: 0.01, BatchCorrMean: -0.5, BatchCorrRMS: 0.6, MaxMedianRatio: math.Inf(1)},
}

// goldenRecords pairs records with the lines the trainer's untyped writer
// (map[string]any through encoding/json, before this package existed)
// wrote for the same values: the format old run folders have on disk.
var goldenRecords = []struct {
	name string
	rec  Record
	line string
}{
	{"train", Train{Step: 1, Time: 1796148281.2262638, Loss: 2.5, LR: 0.001, GradNorm: 0.75, TokensPerSec: 12345.5, Tokens: 2048},
		`{"grad_norm":0.75,"kind":"train","loss":2.5,"lr":0.001,"step":1,"time":1796148281.2262638,"tokens":2048,"tokens_per_s":12345.5}`},
	{"train fp16, non-finite", Train{Step: 2, Time: 1796148281.2263074, Loss: math.NaN(), LR: 3e-4, GradNorm: math.Inf(1), TokensPerSec: 1e6, Tokens: 4096, LossScale: 65536},
		`{"grad_norm":null,"kind":"train","loss":null,"loss_scale":65536,"lr":0.0003,"step":2,"time":1796148281.2263074,"tokens":4096,"tokens_per_s":1000000}`},
	{"eval", Eval{Step: 2, Time: 1796148281.2263176, EvalLoss: 3.25, EvalSequences: 8},
		`{"eval_loss":3.25,"eval_sequences":8,"kind":"eval","step":2,"time":1796148281.2263176}`},
	{"stats", Stats{Step: 3, Time: 1796148281.2263277, Layers: goldenLayers, AttnEntropy: []float64{1.5, math.NaN()},
		Gains: GainValues([]Gain{{Name: "transformer.h.0.mlp_block_resid_gain", Values: []float64{0.125}},
			{Name: "transformer.h.0.attn.attn_mat_resid_gain", Values: []float64{1, 1.1, 0.9, 1.2}}})},
		`{"attn_entropy":[1.5,null],"gains":{"transformer.h.0.attn.attn_mat_resid_gain":[1,1.1,0.9,1.2],"transformer.h.0.mlp_block_resid_gain":[0.125]},"kind":"stats","layers":[{"layer":0,"x_rms":1.5,"kurtosis":3,"kurtosis_minus_one":2,"feat_corr_rms":0.1,"batch_corr_mean":0.2,"batch_corr_rms":0.3,"max_median_ratio":7.25},{"layer":1,"x_rms":2,"kurtosis":1.0000001,"kurtosis_minus_one":1e-7,"feat_corr_rms":0.01,"batch_corr_mean":-0.5,"batch_corr_rms":0.6,"max_median_ratio":null}],"step":3,"time":1796148281.2263277}`},
	{"stats, no layers, empty entropy and gains", Stats{Step: 4, Time: 1796148281.226469, AttnEntropy: []float64{}, Gains: GainValues(nil)},
		`{"attn_entropy":[],"gains":{},"kind":"stats","step":4,"time":1796148281.226469}`},
	{"stats, layers only", Stats{Step: 5, Time: 1796148281.2264717, Layers: goldenLayers[:1]},
		`{"kind":"stats","layers":[{"layer":0,"x_rms":1.5,"kurtosis":3,"kurtosis_minus_one":2,"feat_corr_rms":0.1,"batch_corr_mean":0.2,"batch_corr_rms":0.3,"max_median_ratio":7.25}],"step":5,"time":1796148281.2264717}`},
}

// goldenScalars are the TensorBoard scalars the untyped writer wrote for
// goldenRecords ("step tag value", value as float32, tags sorted within a
// record; the stats record of step 4 has no numbers and no event).
const goldenScalars = `1 train/grad_norm 0.75
1 train/loss 2.5
1 train/lr 0.001
1 train/tokens 2048
1 train/tokens_per_s 12345.5
2 train/grad_norm +Inf
2 train/loss NaN
2 train/loss_scale 65536
2 train/lr 0.0003
2 train/tokens 4096
2 train/tokens_per_s 1e+06
2 eval/eval_loss 3.25
2 eval/eval_sequences 8
3 stats/attn_entropy/0 1.5
3 stats/attn_entropy/1 NaN
3 stats/gains/transformer.h.0.attn.attn_mat_resid_gain/0 1
3 stats/gains/transformer.h.0.attn.attn_mat_resid_gain/1 1.1
3 stats/gains/transformer.h.0.attn.attn_mat_resid_gain/2 0.9
3 stats/gains/transformer.h.0.attn.attn_mat_resid_gain/3 1.2
3 stats/gains/transformer.h.0.mlp_block_resid_gain 0.125
3 stats/layers/layer_00/batch_corr_mean 0.2
3 stats/layers/layer_00/batch_corr_rms 0.3
3 stats/layers/layer_00/feat_corr_rms 0.1
3 stats/layers/layer_00/kurtosis 3
3 stats/layers/layer_00/kurtosis_minus_one 2
3 stats/layers/layer_00/max_median_ratio 7.25
3 stats/layers/layer_00/x_rms 1.5
3 stats/layers/layer_01/batch_corr_mean -0.5
3 stats/layers/layer_01/batch_corr_rms 0.6
3 stats/layers/layer_01/feat_corr_rms 0.01
3 stats/layers/layer_01/kurtosis 1.0000001
3 stats/layers/layer_01/kurtosis_minus_one 1e-07
3 stats/layers/layer_01/max_median_ratio +Inf
3 stats/layers/layer_01/x_rms 2
5 stats/layers/layer_00/batch_corr_mean 0.2
5 stats/layers/layer_00/batch_corr_rms 0.3
5 stats/layers/layer_00/feat_corr_rms 0.1
5 stats/layers/layer_00/kurtosis 3
5 stats/layers/layer_00/kurtosis_minus_one 2
5 stats/layers/layer_00/max_median_ratio 7.25
5 stats/layers/layer_00/x_rms 1.5
`

// writeGolden writes goldenRecords into a new run folder and returns it.
func writeGolden(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	w, err := Open(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldenRecords {
		if err := w.Record(g.rec); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLineFormat pins every kind of line, byte for byte, to what old run
// folders hold.
func TestLineFormat(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(writeGolden(t), MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(goldenRecords) || !strings.HasSuffix(string(b), "\n") {
		t.Fatalf("%d lines, want %d, each ending in a newline:\n%s", len(lines), len(goldenRecords), b)
	}
	for i, g := range goldenRecords {
		if lines[i] != g.line {
			t.Errorf("%s:\n got %s\nwant %s", g.name, lines[i], g.line)
		}
	}
}

// TestTensorBoardTags pins the TensorBoard tags and values of every kind.
func TestTensorBoardTags(t *testing.T) {
	sc, err := tensorboard.ReadScalars(filepath.Join(writeGolden(t), TensorBoardDir))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range sc {
		fmt.Fprintf(&b, "%d %s %v\n", s.Step, s.Tag, s.Value)
	}
	if b.String() != goldenScalars {
		t.Errorf("scalars:\n%s\nwant\n%s", b.String(), goldenScalars)
	}
}

// TestTimeStamp checks that a record without a time is stamped with the
// time of writing.
func TestTimeStamp(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	before := float64(time.Now().UnixNano()) / 1e9
	if err := w.Record(Eval{Step: 1, EvalLoss: 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	l := readLog(t, dir)
	if len(l.Eval) != 1 || l.Eval[0].Time < before || l.Eval[0].Time > before+60 {
		t.Errorf("eval records %+v: want one stamped after %f", l.Eval, before)
	}
}

// readLog reads the log of run folder dir.
func readLog(t *testing.T, dir string) *Log {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestResumeTruncates checks the repair on Open: records after the
// checkpoint's step and a line cut by a crash are dropped from both the
// log and TensorBoard, and a run that starts over keeps nothing.
func TestResumeTruncates(t *testing.T) {
	cases := []struct {
		keep      int64
		wantSteps []int64
	}{
		{keep: 3, wantSteps: []int64{1, 2, 3}},
		{keep: 5, wantSteps: []int64{1, 2, 3, 4, 5}},
		{keep: -1, wantSteps: nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.keep), func(t *testing.T) {
			dir := t.TempDir()
			w, err := Open(dir, -1)
			if err != nil {
				t.Fatal(err)
			}
			for s := int64(1); s <= 5; s++ {
				if err := w.Record(Train{Step: s, Loss: float64(s)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			appendCut(t, filepath.Join(dir, MetricsFile))
			if w, err = Open(dir, c.keep); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkSteps(t, dir, c.wantSteps)
		})
	}
}

// appendCut appends half a line, as a crash in the middle of a write
// leaves it.
func appendCut(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"kind":"train","step":`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkSteps checks that the log of dir holds exactly the train records
// of want, with no malformed line, and TensorBoard the same steps.
func checkSteps(t *testing.T, dir string, want []int64) {
	t.Helper()
	l := readLog(t, dir)
	var got []int64
	for _, r := range l.Train {
		got = append(got, r.Step)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || l.Skipped != 0 {
		t.Errorf("train steps %v, %d malformed lines; want %v, none", got, l.Skipped, want)
	}
	sc, err := tensorboard.ReadScalars(filepath.Join(dir, TensorBoardDir))
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range sc {
		if s.Tag == "train/loss" {
			got = append(got, s.Step)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("TensorBoard steps %v, want %v", got, want)
	}
}

// TestNilWriter checks that a nil Writer (a rank other than 0) writes
// nothing and fails nothing.
func TestNilWriter(t *testing.T) {
	var w *Writer
	for name, err := range map[string]error{
		"Record": w.Record(Train{Step: 1}), "Flush": w.Flush(), "Close": w.Close(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestStickyError checks that a failed write is returned again by every
// later call, so that a caller that could not return it still sees it.
func TestStickyError(t *testing.T) {
	w, err := Open(t.TempDir(), -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.f.Close(); err != nil { // every write and sync now fails
		t.Fatal(err)
	}
	if err := w.Record(Train{Step: 1}); err != nil {
		t.Fatalf("Record before the buffer is written: %v", err)
	}
	first := w.Flush()
	if first == nil {
		t.Fatal("Flush to a closed file: no error")
	}
	for name, err := range map[string]error{
		"Record": w.Record(Eval{Step: 1}), "Flush": w.Flush(), "Close": w.Close(),
	} {
		if err == nil || err.Error() != first.Error() {
			t.Errorf("%s after a failed Flush: %v, want %v", name, err, first)
		}
	}
}

// TestPeakMemoryLine: a train record's peak memory is written after lr
// (keys in alphabetical order), and left out when unknown.
func TestPeakMemoryLine(t *testing.T) {
	for _, c := range []struct {
		peak int64
		want string
	}{
		{1536000000, `{"grad_norm":1,"kind":"train","loss":2,"lr":0.5,"peak_memory":1536000000,"step":1,"time":7,"tokens":0,"tokens_per_s":3}`},
		{0, `{"grad_norm":1,"kind":"train","loss":2,"lr":0.5,"step":1,"time":7,"tokens":0,"tokens_per_s":3}`},
	} {
		dir := t.TempDir()
		w, err := Open(dir, -1)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Record(Train{Step: 1, Time: 7, Loss: 2, LR: 0.5, GradNorm: 1, TokensPerSec: 3, PeakMemory: c.peak}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(string(b), "\n"); got != c.want {
			t.Errorf("peak %d:\n got %s\nwant %s", c.peak, got, c.want)
		}
	}
}
