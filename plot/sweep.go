package plot

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// SpreadFigure is a figure of a metric against the values of one swept
// key: one line per combination of the other keys, through the mean over
// seeds at each value, with the seeds' spread (minimum to maximum) as
// whiskers and, on a numeric axis, a light band.
type SpreadFigure struct {
	// Stem names the files (STEM.png, STEM.svg).
	Stem, Title, XLabel, YLabel string
	// Categories name the x positions 0, 1, … when the values are not
	// numbers; nil: X are the values.
	Categories []string
	// LogX puts x on a log scale (numeric values only).
	LogX  bool
	Lines []SpreadLine
}

// SpreadLine is one line of a SpreadFigure: at each X, the mean and the
// range of the seeds' values (NaN where no seed finished).
type SpreadLine struct {
	Name              string
	X, Mean, Min, Max []float64
}

// WriteSpread draws f into outDir in each of formats (DefaultFormats when
// empty) and returns the paths written.
func WriteSpread(f SpreadFigure, outDir string, formats []string) ([]string, error) {
	fmts, err := checkFormats(formats)
	if err != nil {
		return nil, err
	}
	pn := &panel{xLabel: f.XLabel, yLabel: f.YLabel, yMax: math.Inf(1), logX: f.LogX && len(f.Categories) == 0, categories: f.Categories, padX: true}
	fig := &figure{stem: f.Stem, title: f.Title, panels: []*panel{pn}, cols: 1}
	for i, l := range f.Lines {
		name := l.Name
		if name == "" {
			name = "mean over seeds"
		}
		s := runSeries(i, name, vg.Points(1.8))
		for j := range l.X {
			s.add(l.X[j], l.Mean[j])
		}
		pn.series = append(pn.series, s)
		fig.legend = append(fig.legend, s)
		pn.under = append(pn.under, spreadPlotters(l, runColor(i), len(f.Categories) == 0)...)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	var written []string
	for _, format := range fmts {
		path := filepath.Join(outDir, f.Stem+"."+format)
		if err := fig.save(path, format); err != nil {
			return written, fmt.Errorf("plot: %s: %w", path, err)
		}
		written = append(written, path)
	}
	return written, nil
}

// spreadPlotters are a line's whiskers (min to max at each x with a
// finite spread) and, with band, the light band between them.
func spreadPlotters(l SpreadLine, c color.RGBA, band bool) []gplot.Plotter {
	var xy plotter.XYs
	var errs plotter.YErrors
	for j := range l.X {
		if !finiteAll(l.X[j], l.Mean[j], l.Min[j], l.Max[j]) {
			continue
		}
		xy = append(xy, plotter.XY{X: l.X[j], Y: l.Mean[j]})
		errs = append(errs, struct{ Low, High float64 }{l.Mean[j] - l.Min[j], l.Max[j] - l.Mean[j]})
	}
	if len(xy) == 0 {
		return nil
	}
	var out []gplot.Plotter
	if band && len(xy) > 1 {
		poly := make(plotter.XYs, 0, 2*len(xy))
		for i, p := range xy {
			poly = append(poly, plotter.XY{X: p.X, Y: p.Y - errs[i].Low})
		}
		for i := len(xy) - 1; i >= 0; i-- {
			poly = append(poly, plotter.XY{X: xy[i].X, Y: xy[i].Y + errs[i].High})
		}
		if pg, err := plotter.NewPolygon(poly); err == nil {
			pg.Color, pg.LineStyle.Width = lighter(c, 0.75), 0
			out = append(out, pg)
		}
	}
	if eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{xy, errs}); err == nil {
		eb.LineStyle.Color, eb.LineStyle.Width, eb.CapWidth = c, vg.Points(1.2), vg.Points(6)
		out = append(out, eb)
	}
	return out
}

func finiteAll(xs ...float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// Formats checks a comma-separated list of figure formats ("png,svg"),
// before a long job whose figures come last.
func Formats(list string) ([]string, error) {
	return checkFormats(strings.Split(list, ","))
}
