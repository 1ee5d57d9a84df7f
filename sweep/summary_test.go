package sweep

import (
	"bytes"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clm/runlog"
)

// writeLog writes records as a run's metrics.jsonl through runlog's
// writer, and starts.jsonl lines at the given Unix times.
func writeLog(t *testing.T, dir string, recs []runlog.Record, starts ...int64) {
	t.Helper()
	w, err := runlog.Open(dir, -1)
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
	var b strings.Builder
	for _, s := range starts {
		b.WriteString(`{"time":"` + timeRFC(s) + `","step":0}` + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, startsFile), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func timeRFC(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

func layers(kurt ...float64) []runlog.LayerStats {
	out := make([]runlog.LayerStats, len(kurt))
	for i, k := range kurt {
		out[i] = runlog.LayerStats{Layer: i, Kurtosis: k, MaxMedianRatio: 10 * k}
	}
	return out
}

func TestReadMetrics(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		recs   []runlog.Record
		starts []int64
		want   Metrics
	}{
		{"empty", nil, nil, Metrics{FinalEval: nan, BestEval: nan, PeakKurtosis: nan, PeakMaxMedian: nan, TokensPerSec: nan, WallSeconds: nan}},
		{"a run", []runlog.Record{
			runlog.Eval{Step: 0, Time: 1000, EvalLoss: 9},
			runlog.Stats{Step: 0, Time: 1001, Layers: layers(1, 2)},
			runlog.Train{Step: 5, Time: 1010, Loss: 5, TokensPerSec: 300},
			runlog.Stats{Step: 5, Time: 1011, Layers: layers(nan, 7, 3)},
			runlog.Eval{Step: 5, Time: 1012, EvalLoss: 4},
			runlog.Train{Step: 10, Time: 1020, Loss: 4, TokensPerSec: 100},
			runlog.Train{Step: 15, Time: 1030, Loss: 4, TokensPerSec: 200},
			runlog.Train{Step: 20, Time: 1040, Loss: 4, TokensPerSec: 900},
			runlog.Eval{Step: 20, Time: 1041, EvalLoss: 4.5},
		}, []int64{995},
			Metrics{Step: 20, FinalEval: 4.5, BestEval: 4, PeakKurtosis: 7, PeakMaxMedian: 70, TokensPerSec: 250, WallSeconds: 46}},
		{"resumed: the stop does not count", []runlog.Record{
			runlog.Train{Step: 5, Time: 1010, Loss: 5, TokensPerSec: 300},
			runlog.Train{Step: 10, Time: 1020, Loss: 5, TokensPerSec: 100},
			runlog.Eval{Step: 10, Time: 5030, EvalLoss: 3},
		}, []int64{1000, 5000},
			Metrics{Step: 10, FinalEval: 3, BestEval: 3, PeakKurtosis: nan, PeakMaxMedian: nan, TokensPerSec: 200, WallSeconds: 20 + 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.recs != nil {
				writeLog(t, dir, tc.recs, tc.starts...)
			}
			got, err := ReadMetrics(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range MetricNames {
				g, _ := got.Get(name)
				w, _ := tc.want.Get(name)
				if g != w && !(math.IsNaN(g) && math.IsNaN(w)) {
					t.Errorf("%s = %v, want %v", name, g, w)
				}
			}
			if got.Step != tc.want.Step {
				t.Errorf("step %d, want %d", got.Step, tc.want.Step)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 2, 3}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

// summaryRows is a sweep of 2 lr × 2 presets × 2 seeds whose final eval
// loss is lr·1000 + seed (+10 for "b"); one point did not finish.
func summaryRows(t *testing.T) (*Sweep, []Row) {
	s, err := Parse("grid.toml", []byte("base = \"x\"\nseeds = 2\n[grid]\n\"train.lr\" = [1e-3, 1e-2]\n\"model.preset\" = [\"a\", \"b\"]\n"), keys)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := s.Points()
	var rows []Row
	for _, p := range ps {
		loss := p.Values[0].(float64)*1000 + float64(p.Seed)
		if p.Values[1] == "b" {
			loss += 10
		}
		m := Metrics{Step: 8, FinalEval: loss, BestEval: loss - 0.5, PeakKurtosis: 2, PeakMaxMedian: 3, TokensPerSec: 100, WallSeconds: 1}
		r := Row{Point: p, Finished: true, Status: "finished", Metrics: m}
		if p.Name == "lr=0.01,preset=b,seed=1" {
			r.Finished, r.Status, r.Metrics.FinalEval = false, "step 4 of 8", 99
		}
		rows = append(rows, r)
	}
	return s, rows
}

func TestGroupsAndTables(t *testing.T) {
	s, rows := summaryRows(t)
	groups := Groups(rows)
	if len(groups) != 4 {
		t.Fatalf("%d groups", len(groups))
	}
	g := groups[0] // lr=0.001, preset=a: 1 and 2
	if sp := g.Spreads["final_eval_loss"]; g.Name != "lr=0.001,preset=a" || sp.N != 2 || sp.Mean != 1.5 || math.Abs(sp.SD-math.Sqrt(0.5)) > 1e-15 {
		t.Errorf("group %s: %+v", g.Name, sp)
	}
	if last := groups[3]; last.Finished != 1 || last.Spreads["final_eval_loss"].Mean != 20 {
		t.Errorf("the unfinished seed counts: %+v", last.Spreads["final_eval_loss"])
	}
	recs, err := csv.NewReader(bytes.NewReader(SummaryCSV(s, rows))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "point,lr,preset,seed,status,step,final_eval_loss,best_eval_loss,peak_kurtosis,peak_max_median,tokens_per_s,wall_s" ||
		strings.Join(recs[1], ",") != "lr=0.001,preset=a,seed=0,0.001,a,0,finished,8,1,0.5,2,3,100,1" || len(recs) != 9 {
		t.Errorf("summary.csv:\n%q", recs[:2])
	}
	seeds, _ := csv.NewReader(bytes.NewReader(SeedsCSV(s, groups))).ReadAll()
	if seeds[1][0] != "lr=0.001,preset=a" || seeds[1][3] != "2" || seeds[1][4] != "1.5" || seeds[4][3] != "1" {
		t.Errorf("summary-seeds.csv:\n%q", seeds)
	}
	var out strings.Builder
	if err := Table(&out, s, rows, groups); err != nil {
		t.Fatal(err)
	}
	table := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{"lr=0.01,preset=b,seed=1 step 4 of 8", "lr=0.001,preset=a 2/2 1.5000 ± 0.7071", "lr=0.01,preset=b 1/2 20.0000 19.5000 2 3 100 1.0"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFigures(t *testing.T) {
	s, rows := summaryRows(t)
	figs := Figures(s, rows, "final_eval_loss")
	if len(figs) != 2 {
		t.Fatalf("%d figures, want one per axis", len(figs))
	}
	lr, preset := figs[0], figs[1]
	if lr.Stem != "final_eval_loss-vs-lr" || !lr.Numeric || !lr.LogX || preset.Numeric || preset.LogX {
		t.Errorf("figures %s (numeric %v log %v), %s (numeric %v)", lr.Stem, lr.Numeric, lr.LogX, preset.Stem, preset.Numeric)
	}
	if len(lr.Lines) != 2 || lr.Lines[0].Name != "preset=a" || lr.Lines[1].Name != "preset=b" {
		t.Fatalf("lines %+v", lr.Lines)
	}
	p := lr.Lines[1].Points[1] // preset b, lr 0.01: seed 0 only finished
	if p.X != 0.01 || p.N != 1 || p.Mean != 20 {
		t.Errorf("point %+v", p)
	}
	q := preset.Lines[0].Points[1] // lr 0.001, preset b: 11 and 12
	if q.X != 1 || q.Label != "b" || q.N != 2 || q.Min != 11 || q.Max != 12 || q.Mean != 11.5 {
		t.Errorf("point %+v", q)
	}
	recs, err := csv.NewReader(bytes.NewReader(preset.CSV())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "line,preset,n,mean,sd,min,max,values" || strings.Join(recs[2], "|") != "lr=0.001|b|2|11.5|0.7071067811865476|11|12|11;12" {
		t.Errorf("figure csv %q", recs)
	}
}
