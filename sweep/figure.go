package sweep

import (
	"math"
	"strconv"
	"strings"
)

// Figure is the data of one figure of a sweep: a metric against the values
// of one axis, one line per combination of the other axes' values, each
// point the spread over the seeds that finished.
type Figure struct {
	// Stem names the figure's files: "final_eval_loss-vs-lr".
	Stem string
	// Axis is the swept key on the x axis, Metric the metric (MetricNames).
	Axis   Axis
	Metric string
	// Numeric: every value of the axis is a number, at its value on the x
	// axis (else the values are categories, in the grid's order). LogX:
	// numbers all positive spanning a factor of 10 or more.
	Numeric, LogX bool
	Lines         []FigureLine
}

// FigureLine is one line of a Figure.
type FigureLine struct {
	// Name is the other axes' values, "preset=default" ("" for a sweep of
	// one axis).
	Name   string
	Points []FigurePoint
}

// FigurePoint is one x of a line: the axis value and the spread of the
// metric over the seeds.
type FigurePoint struct {
	Label string  // the value as ValueLabel writes it
	X     float64 // the number, or the category's index
	Spread
}

// Figures are the figures of metric against each axis of two values or
// more, from the summary's rows.
func Figures(s *Sweep, rows []Row, metric string) []Figure {
	var out []Figure
	for ai, a := range s.Axes {
		if len(a.Values) < 2 {
			continue
		}
		f := Figure{Stem: metric + "-vs-" + folderName(a.Short), Axis: a, Metric: metric, Numeric: true, LogX: true}
		lo, hi := math.Inf(1), math.Inf(-1)
		xs := make([]float64, len(a.Values))
		for i, v := range a.Values {
			x, ok := number(v)
			f.Numeric = f.Numeric && ok
			xs[i], lo, hi = x, math.Min(lo, x), math.Max(hi, x)
		}
		f.LogX = f.Numeric && lo > 0 && hi/lo >= 10
		if !f.Numeric {
			for i := range xs {
				xs[i] = float64(i)
			}
		}
		at := map[string]int{}
		for _, r := range rows {
			name := otherValues(s, r.Point, ai)
			li, ok := at[name]
			if !ok {
				li = len(f.Lines)
				at[name] = li
				line := FigureLine{Name: name, Points: make([]FigurePoint, len(a.Values))}
				for i, v := range a.Values {
					line.Points[i] = FigurePoint{Label: ValueLabel(v), X: xs[i]}
				}
				f.Lines = append(f.Lines, line)
			}
			if !r.Finished {
				continue
			}
			vi := valueIndex(a.Values, r.Point.Values[ai])
			y, _ := r.Metrics.Get(metric)
			p := &f.Lines[li].Points[vi]
			p.Spread = SpreadOf(append(p.Spread.Values, y))
		}
		for li := range f.Lines {
			for pi := range f.Lines[li].Points {
				if p := &f.Lines[li].Points[pi]; p.N == 0 {
					p.Spread = SpreadOf(nil)
				}
			}
		}
		out = append(out, f)
	}
	return out
}

// number is a numeric TOML value as a float64.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return math.NaN(), false
}

// otherValues names p's values of every axis but skip.
func otherValues(s *Sweep, p Point, skip int) string {
	var parts []string
	for i, a := range s.Axes {
		if i != skip {
			parts = append(parts, a.Short+"="+ValueLabel(p.Values[i]))
		}
	}
	return strings.Join(parts, ", ")
}

// valueIndex is the index of v among an axis' values.
func valueIndex(values []any, v any) int {
	for i, w := range values {
		if ValueLabel(w) == ValueLabel(v) {
			return i
		}
	}
	return 0
}

// CSV is the figure's data: one line per line and x, with the count,
// mean, sample standard deviation, minimum and maximum over the seeds and
// each seed's value (";"-separated), numbers exact.
func (f Figure) CSV() []byte {
	head := []string{"line", f.Axis.Short, "n", "mean", "sd", "min", "max", "values"}
	var lines [][]string
	for _, l := range f.Lines {
		for _, p := range l.Points {
			vals := make([]string, len(p.Values))
			for i, v := range p.Values {
				vals[i] = num(v)
			}
			lines = append(lines, []string{l.Name, p.Label, strconv.Itoa(p.N), num(p.Mean), num(p.SD), num(p.Min), num(p.Max), strings.Join(vals, ";")})
		}
	}
	return csvBytes(head, lines)
}
