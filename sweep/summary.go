package sweep

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"clm/runlog"
)

// Metrics are what a sweep reports of one run, from its run log.
type Metrics struct {
	// Step is the last step the run logged.
	Step int64
	// FinalEval is the eval loss of the last evaluation, BestEval the
	// lowest of any.
	FinalEval, BestEval float64
	// PeakKurtosis is the largest kurtosis of neuron RMS of any hidden
	// state at any logged step (runlog.LayerStats.Kurtosis), PeakMaxMedian
	// the same of the max/median activation ratio.
	PeakKurtosis, PeakMaxMedian float64
	// TokensPerSec is the median throughput of the logged windows.
	TokensPerSec float64
	// WallSeconds is the time the run spent from each start (starts.jsonl,
	// to the second) to its last record before the next start: the stops
	// in between do not count.
	WallSeconds float64
}

// MetricNames are the metrics of the summary, in its columns' order: the
// names -metric takes and summary.csv's headers.
var MetricNames = []string{"final_eval_loss", "best_eval_loss", "peak_kurtosis", "peak_max_median", "tokens_per_s", "wall_s"}

// Get is the metric of that name (one of MetricNames).
func (m Metrics) Get(name string) (float64, bool) {
	switch name {
	case "final_eval_loss":
		return m.FinalEval, true
	case "best_eval_loss":
		return m.BestEval, true
	case "peak_kurtosis":
		return m.PeakKurtosis, true
	case "peak_max_median":
		return m.PeakMaxMedian, true
	case "tokens_per_s":
		return m.TokensPerSec, true
	case "wall_s":
		return m.WallSeconds, true
	}
	return math.NaN(), false
}

// startsFile is the run folder's record of its starts (train.StartsFile;
// docs/run-folder.md): one JSON line with its "time" (RFC 3339) each.
const startsFile = "starts.jsonl"

// ReadMetrics reads the metrics of a run folder; a folder without a run
// log has none (every value NaN, step 0).
func ReadMetrics(dir string) (Metrics, error) {
	nan := math.NaN()
	m := Metrics{FinalEval: nan, BestEval: nan, PeakKurtosis: nan, PeakMaxMedian: nan, TokensPerSec: nan, WallSeconds: nan}
	f, err := os.Open(filepath.Join(dir, runlog.MetricsFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	defer f.Close()
	l, err := runlog.Read(f)
	if err != nil {
		return m, fmt.Errorf("%s: %w", f.Name(), err)
	}
	starts, err := readStarts(dir)
	if err != nil {
		return m, err
	}
	return metricsOf(l, starts), nil
}

// metricsOf computes the metrics of a run log whose run started at starts.
func metricsOf(l *runlog.Log, starts []float64) Metrics {
	nan := math.NaN()
	m := Metrics{FinalEval: nan, BestEval: nan, PeakKurtosis: nan, PeakMaxMedian: nan, TokensPerSec: nan}
	var times, tps []float64
	for _, r := range l.Train {
		m.Step = max(m.Step, r.Step)
		times = append(times, r.Time)
		if finite(r.TokensPerSec) {
			tps = append(tps, r.TokensPerSec)
		}
	}
	for _, r := range l.Eval {
		m.Step = max(m.Step, r.Step)
		times = append(times, r.Time)
		m.FinalEval = r.EvalLoss // sorted by step: the last wins
		m.BestEval = fmin(m.BestEval, r.EvalLoss)
	}
	for _, r := range l.Stats {
		times = append(times, r.Time)
		for _, ls := range r.Layers {
			m.PeakKurtosis = fmax(m.PeakKurtosis, ls.Kurtosis)
			m.PeakMaxMedian = fmax(m.PeakMaxMedian, ls.MaxMedianRatio)
		}
	}
	m.TokensPerSec = median(tps)
	m.WallSeconds = wall(starts, times)
	return m
}

// wall sums, for each start, the time to the last record before the next
// start; without starts, the span of the records. NaN without records.
func wall(starts, records []float64) float64 {
	recs := slices.DeleteFunc(slices.Clone(records), func(t float64) bool { return !finite(t) })
	if len(recs) == 0 {
		return math.NaN()
	}
	slices.Sort(recs)
	if len(starts) == 0 {
		return recs[len(recs)-1] - recs[0]
	}
	sum := 0.0
	for i, s := range starts {
		end := math.Inf(1)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		last := math.NaN()
		for _, t := range recs {
			if t >= s && t < end {
				last = t
			}
		}
		if finite(last) {
			sum += last - s
		}
	}
	return sum
}

// readStarts reads the start times of a run folder, in order.
func readStarts(dir string) ([]float64, error) {
	f, err := os.Open(filepath.Join(dir, startsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s struct {
			Time string `json:"time"`
		}
		if json.Unmarshal(sc.Bytes(), &s) != nil {
			continue // a line torn by a crash
		}
		if t, err := time.Parse(time.RFC3339, s.Time); err == nil {
			out = append(out, float64(t.UnixNano())/1e9)
		}
	}
	sort.Float64s(out)
	return out, sc.Err()
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// fmax and fmin ignore a NaN on either side.
func fmax(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Max(a, b)
}

func fmin(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Min(a, b)
}

// median of xs (the mean of the middle two for an even count); NaN when
// empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Spread is the mean, sample standard deviation (n−1), minimum and maximum
// of the finite values of xs, and their count.
type Spread struct {
	N                  int
	Mean, SD, Min, Max float64
	Values             []float64
}

// SpreadOf computes the spread of xs; with no finite value every field is
// NaN, with one the SD is.
func SpreadOf(xs []float64) Spread {
	s := Spread{Mean: math.NaN(), SD: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	for _, x := range xs {
		if !finite(x) {
			continue
		}
		s.Values = append(s.Values, x)
		s.Min, s.Max = fmin(s.Min, x), fmax(s.Max, x)
	}
	s.N = len(s.Values)
	if s.N == 0 {
		return s
	}
	sum := 0.0
	for _, x := range s.Values {
		sum += x
	}
	s.Mean = sum / float64(s.N)
	if s.N > 1 {
		ss := 0.0
		for _, x := range s.Values {
			ss += (x - s.Mean) * (x - s.Mean)
		}
		s.SD = math.Sqrt(ss / float64(s.N-1))
	}
	return s
}
