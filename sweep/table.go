package sweep

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"clm/internal/atomicfile"
)

// Row is one point of a summary.
type Row struct {
	Point Point
	// Finished: the run's final checkpoint is written (train knows).
	Finished bool
	// Status says where the point is: "finished", "step 40 of 100",
	// "not started", "failed (exit 1)".
	Status  string
	Metrics Metrics
}

// Group is the points that differ only in their seed, with the spread of
// each metric over those that finished.
type Group struct {
	Name   string
	Values []any // the value of each axis
	Rows   []Row
	// Finished counts the rows that finished.
	Finished int
	// Spreads, by metric name (MetricNames).
	Spreads map[string]Spread
}

// Groups gathers the rows by Point.Group, in the sweep's order.
func Groups(rows []Row) []Group {
	var out []Group
	at := map[string]int{}
	for _, r := range rows {
		i, ok := at[r.Point.Group]
		if !ok {
			i = len(out)
			at[r.Point.Group] = i
			out = append(out, Group{Name: r.Point.Group, Values: r.Point.Values})
		}
		out[i].Rows = append(out[i].Rows, r)
	}
	for i := range out {
		out[i].Spreads = map[string]Spread{}
		for _, name := range MetricNames {
			var xs []float64
			for _, r := range out[i].Rows {
				if r.Finished {
					if name == MetricNames[0] {
						out[i].Finished++
					}
					x, _ := r.Metrics.Get(name)
					xs = append(xs, x)
				}
			}
			out[i].Spreads[name] = SpreadOf(xs)
		}
	}
	return out
}

// num writes a number exactly (it reads back to the same float64); NaN as
// an empty cell.
func num(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// SummaryCSV is summary.csv: one line per point with its axis values,
// seed, status, last step and metrics, numbers exact.
func SummaryCSV(s *Sweep, rows []Row) []byte {
	head := []string{"point"}
	for _, a := range s.Axes {
		head = append(head, a.Short)
	}
	head = append(head, "seed", "status", "step")
	var lines [][]string
	for _, r := range rows {
		l := []string{r.Point.Name}
		for _, v := range r.Point.Values {
			l = append(l, ValueLabel(v))
		}
		seed := ""
		if r.Point.HasSeed {
			seed = strconv.FormatInt(r.Point.Seed, 10)
		}
		l = append(l, seed, r.Status, strconv.FormatInt(r.Metrics.Step, 10))
		for _, name := range MetricNames {
			x, _ := r.Metrics.Get(name)
			l = append(l, num(x))
		}
		lines = append(lines, l)
	}
	return csvBytes(append(head, MetricNames...), lines)
}

// SeedsCSV is summary-seeds.csv: one line per group with the number of
// finished seeds and each metric's mean and sample standard deviation.
func SeedsCSV(s *Sweep, groups []Group) []byte {
	head := []string{"group"}
	for _, a := range s.Axes {
		head = append(head, a.Short)
	}
	head = append(head, "n")
	for _, name := range MetricNames {
		head = append(head, name+"_mean", name+"_sd")
	}
	var lines [][]string
	for _, g := range groups {
		l := []string{g.Name}
		for _, v := range g.Values {
			l = append(l, ValueLabel(v))
		}
		l = append(l, strconv.Itoa(g.Finished))
		for _, name := range MetricNames {
			sp := g.Spreads[name]
			l = append(l, num(sp.Mean), num(sp.SD))
		}
		lines = append(lines, l)
	}
	return csvBytes(head, lines)
}

func csvBytes(head []string, lines [][]string) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(head)
	w.WriteAll(lines) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// WriteFile writes b to path atomically.
func WriteFile(path string, b []byte) error { return atomicfile.Write(path, b, 0o644) }

// columns are the terminal table's metric columns: header and format.
var columns = []struct{ name, head, format string }{
	{"final_eval_loss", "final eval", "%.4f"},
	{"best_eval_loss", "best eval", "%.4f"},
	{"peak_kurtosis", "peak kurt", "%.4g"},
	{"peak_max_median", "peak max/med", "%.4g"},
	{"tokens_per_s", "tok/s", "%.0f"},
	{"wall_s", "wall s", "%.1f"},
}

// Table writes the summary for the terminal: one line per point, then,
// when the sweep has seeds, one per group with mean ± sd over its
// finished seeds.
func Table(w io.Writer, s *Sweep, rows []Row, groups []Group) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"point", "status"}
	for _, c := range columns {
		head = append(head, c.head)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, r := range rows {
		cells := []string{r.Point.Name, r.Status}
		for _, c := range columns {
			x, _ := r.Metrics.Get(c.name)
			cells = append(cells, cell(c.format, x))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.Seeds == nil {
		return nil
	}
	fmt.Fprintf(w, "\nover seeds (mean ± sd of the finished seeds):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head = []string{"group", "n"}
	for _, c := range columns {
		head = append(head, c.head)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, g := range groups {
		cells := []string{g.Name, fmt.Sprintf("%d/%d", g.Finished, len(g.Rows))}
		for _, c := range columns {
			sp := g.Spreads[c.name]
			v := cell(c.format, sp.Mean)
			if !math.IsNaN(sp.SD) {
				v += " ± " + cell(c.format, sp.SD)
			}
			cells = append(cells, v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	return tw.Flush()
}

func cell(format string, x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf(format, x)
}
