package plot

import (
	"fmt"
	"image/color"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// DefaultFormats are the formats Figures writes when given none.
var DefaultFormats = []string{"png", "svg"}

// supportedFormats are the file formats Figures accepts.
var supportedFormats = map[string]bool{"png": true, "svg": true, "pdf": true}

// Figures reads the run folders and writes into outDir, in each of formats
// ("png", "svg", "pdf"; DefaultFormats when empty):
//
//   - loss: eval loss against step, one line per run, with the training
//     loss in a lighter shade of the run's colour (Figs. 2–5 of
//     Simplifying Transformer Blocks);
//   - kurtosis-RUN: per run, the kurtosis of neuron RMS of each hidden
//     state over training, one line per layer, log scale (the outlier
//     paper's central figure);
//   - gains-RUN: per run, one panel per kind of gain with the mean over
//     heads of each layer's gain over training;
//   - max-median-RUN: per run, the mean max/median activation ratio per
//     layer, log scale;
//   - entropy-RUN: per run, the mean attention entropy per layer.
//
// A figure without data (a run that logged no statistics) is not written.
// RUN is the run's label (config.toml's [experiment] name, else the folder
// name) made safe for file names. Malformed lines of metrics.jsonl are
// skipped with one warning per run (log/slog) giving their count; a
// missing run folder or metrics file is an error naming it. Figures returns
// the paths it wrote.
func Figures(runDirs []string, outDir string, formats []string) ([]string, error) {
	if len(runDirs) == 0 {
		return nil, fmt.Errorf("plot: no run folders given")
	}
	fmts, err := checkFormats(formats)
	if err != nil {
		return nil, err
	}
	runs := make([]*Run, 0, len(runDirs))
	for _, dir := range runDirs {
		r, err := ReadRun(dir)
		if err != nil {
			return nil, err
		}
		if r.Skipped > 0 {
			slog.Warn("plot: skipped malformed lines", "file", filepath.Join(dir, MetricsFile),
				"count", r.Skipped, "first_line", r.FirstSkipped)
		}
		runs = append(runs, r)
	}
	uniqueLabels(runs)

	var figs []*figure
	if f := lossFigure(runs); f != nil {
		figs = append(figs, f)
	}
	stems := map[string]int{}
	for _, r := range runs {
		slug := slugify(r.Label)
		if n := stems[slug]; n > 0 {
			slug += "-" + strconv.Itoa(n+1)
		}
		stems[slug]++
		for _, build := range []func(*Run, string) *figure{kurtosisFigure, gainsFigure, maxMedianFigure, entropyFigure} {
			if f := build(r, slug); f != nil {
				figs = append(figs, f)
			}
		}
	}
	if len(figs) == 0 {
		return nil, fmt.Errorf("plot: nothing to plot: no train, eval or stats records in %s", strings.Join(runDirs, ", "))
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	var written []string
	for _, f := range figs {
		for _, format := range fmts {
			path := filepath.Join(outDir, f.stem+"."+format)
			if err := f.save(path, format); err != nil {
				return written, fmt.Errorf("plot: %s: %w", path, err)
			}
			written = append(written, path)
		}
	}
	return written, nil
}

func checkFormats(formats []string) ([]string, error) {
	if len(formats) == 0 {
		return DefaultFormats, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range formats {
		f = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(f), "."))
		if f == "" || seen[f] {
			continue
		}
		if !supportedFormats[f] {
			return nil, fmt.Errorf("plot: unsupported format %q (want png, svg or pdf)", f)
		}
		seen[f] = true
		out = append(out, f)
	}
	if len(out) == 0 {
		return DefaultFormats, nil
	}
	return out, nil
}

// uniqueLabels appends the folder name to labels that several runs share.
func uniqueLabels(runs []*Run) {
	count := map[string]int{}
	for _, r := range runs {
		count[r.Label]++
	}
	for _, r := range runs {
		if count[r.Label] > 1 {
			abs, err := filepath.Abs(r.Dir)
			if err != nil {
				abs = r.Dir
			}
			r.Label += " (" + filepath.Base(abs) + ")"
		}
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func slugify(s string) string {
	s = strings.Trim(unsafeChars.ReplaceAllString(s, "-"), "-.")
	if s == "" {
		return "run"
	}
	return s
}

// ---- series ---------------------------------------------------------------

// series is one line: points (non-finite ones and, on log axes,
// non-positive ones are dropped when drawn) with its style and legend name.
type series struct {
	name  string
	xy    plotter.XYs
	color color.Color
	width vg.Length
	dash  []vg.Length
}

func (s *series) add(x, y float64) { s.xy = append(s.xy, plotter.XY{X: x, Y: y}) }

// line returns the gonum line, or nil when no point is drawable.
func (s *series) line(logY bool) *plotter.Line {
	var xy plotter.XYs
	for _, p := range s.xy {
		if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) || math.IsNaN(p.X) || math.IsInf(p.X, 0) || (logY && p.Y <= 0) {
			continue
		}
		xy = append(xy, p)
	}
	if len(xy) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil
	}
	l.Color = s.color
	l.Width = s.width
	if l.Width == 0 {
		l.Width = vg.Points(1.5)
	}
	l.Dashes = s.dash
	return l
}

// runColors are distinguishable colours for runs (Tableau 10).
var runColors = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

func runColor(i int) color.RGBA { return runColors[i%len(runColors)] }

// lighter blends c towards white.
func lighter(c color.RGBA, f float64) color.RGBA {
	mix := func(v uint8) uint8 { return uint8(float64(v) + f*(255-float64(v))) }
	return color.RGBA{mix(c.R), mix(c.G), mix(c.B), 255}
}

// depthRamp runs from dark purple (first layer) through teal to
// yellow-green (last layer), a perceptually ordered ramp like viridis,
// stopping short of its pale yellow end, which is hard to see on white.
var depthRamp = []color.RGBA{
	{68, 1, 84, 255}, {59, 82, 139, 255}, {33, 145, 140, 255}, {94, 201, 98, 255}, {190, 210, 40, 255},
}

// layerColor returns the colour of layer i of n.
func layerColor(i, n int) color.Color {
	if n <= 1 {
		return depthRamp[0]
	}
	t := float64(i) / float64(n-1) * float64(len(depthRamp)-1)
	k := min(int(t), len(depthRamp)-2)
	f := t - float64(k)
	a, b := depthRamp[k], depthRamp[k+1]
	lerp := func(x, y uint8) uint8 { return uint8(math.Round(float64(x) + f*(float64(y)-float64(x)))) }
	return color.RGBA{lerp(a.R, b.R), lerp(a.G, b.G), lerp(a.B, b.B), 255}
}

// ---- figures --------------------------------------------------------------

// panel is one set of axes.
type panel struct {
	title, xLabel, yLabel string
	logY                  bool
	series                []*series
	// yMax, when finite, caps the y axis (the loss figure zooms on the
	// eval curves; the early training loss is clipped).
	yMax float64
}

// figure is a titled grid of panels with one legend on the right.
type figure struct {
	stem, title string
	panels      []*panel
	cols        int
	// legend entries (name, style) in order; nil for none.
	legend []*series
}

const (
	panelW  = 6.5 * vg.Inch
	panelH  = 4.2 * vg.Inch
	tileW   = 4.2 * vg.Inch
	tileH   = 3.2 * vg.Inch
	titleH  = 0.45 * vg.Inch
	padding = 0.12 * vg.Inch
)

// body returns the size of the panel grid.
func (f *figure) body() (w, h vg.Length) {
	cols := max(1, f.cols)
	rows := (len(f.panels) + cols - 1) / cols
	pw, ph := panelW, panelH
	if len(f.panels) > 1 {
		pw, ph = tileW, tileH
	}
	return vg.Length(cols) * pw, vg.Length(rows) * ph
}

func (f *figure) size() (w, h vg.Length) {
	bw, bh := f.body()
	return bw + f.legendWidth(), bh + titleH
}

// legendStyle shrinks the legend's font (10 pt at most) until every entry
// fits the figure's height.
func (f *figure) legendStyle() text.Style {
	_, bh := f.body()
	size := vg.Points(10)
	if n := vg.Length(len(f.legend)); n > 0 {
		size = min(size, (bh-2*padding)/(n*1.25))
	}
	return text.Style{Font: font.From(gplot.DefaultFont, size), Handler: gplot.DefaultTextHandler}
}

func (f *figure) legendWidth() vg.Length {
	if len(f.legend) == 0 {
		return 0
	}
	sty := f.legendStyle()
	var w vg.Length
	for _, s := range f.legend {
		w = max(w, sty.Width(s.name))
	}
	return w + vg.Points(20) + 3*padding
}

// draw lays the figure out on c: the title strip, the panels and the
// legend strip.
func (f *figure) draw(c draw.Canvas) error {
	title := text.Style{Font: font.From(gplot.DefaultFont, vg.Points(14)), Handler: gplot.DefaultTextHandler,
		XAlign: draw.XCenter, YAlign: draw.YCenter}
	legW := f.legendWidth()
	body := draw.Crop(c, 0, -legW, 0, -titleH)
	c.FillText(title, vg.Point{X: (body.Min.X + body.Max.X) / 2, Y: c.Max.Y - titleH/2}, f.title)

	cols := max(1, f.cols)
	rows := (len(f.panels) + cols - 1) / cols
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: padding, PadY: padding, PadLeft: padding / 2, PadRight: padding, PadBottom: padding / 2}
	for i, pn := range f.panels {
		p, err := pn.plot()
		if err != nil {
			return err
		}
		if p == nil {
			continue
		}
		p.Draw(tiles.At(body, i%cols, i/cols))
	}
	if legW > 0 {
		lc := draw.Crop(c, c.Max.X-c.Min.X-legW, 0, 0, -titleH)
		l := gplot.NewLegend()
		l.TextStyle = f.legendStyle()
		l.Top, l.Left = true, true
		l.XOffs = padding
		l.Padding = vg.Points(1.5)
		for _, s := range f.legend {
			th := &plotter.Line{LineStyle: draw.LineStyle{Color: s.color, Width: max(s.width, vg.Points(2)), Dashes: s.dash}}
			l.Add(s.name, th)
		}
		l.Draw(lc)
	}
	return nil
}

// plot builds the gonum plot of a panel (nil when nothing is drawable).
func (pn *panel) plot() (*gplot.Plot, error) {
	p := gplot.New()
	p.Title.Text = pn.title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.X.Label.Text = pn.xLabel
	p.Y.Label.Text = pn.yLabel
	p.X.Tick.Marker = tidyTicks{gplot.DefaultTicks{}}
	p.Y.Tick.Marker = tidyTicks{gplot.DefaultTicks{}}
	p.Add(plotter.NewGrid())
	drawable := false
	yMin, yMax := math.Inf(1), math.Inf(-1)
	for _, s := range pn.series {
		l := s.line(pn.logY)
		if l == nil {
			continue
		}
		drawable = true
		p.Add(l)
		for _, q := range l.XYs {
			yMin, yMax = math.Min(yMin, q.Y), math.Max(yMax, q.Y)
		}
	}
	if !drawable {
		return nil, nil
	}
	if !math.IsInf(pn.yMax, 0) && !math.IsNaN(pn.yMax) && pn.yMax > yMin && pn.yMax < yMax {
		p.Y.Max = pn.yMax
	}
	if pn.logY {
		p.Y.Scale = gplot.LogScale{}
		p.Y.Tick.Marker = tidyTicks{logTicks{}}
		if yMin == yMax { // avoid the default ±1 padding, which reaches 0
			p.Y.Min, p.Y.Max = yMin/2, yMax*2
		}
	}
	return p, nil
}

// logTicks labels decades when the range spans one, and falls back to
// linear tick positions (still drawn on the log scale) otherwise, so that
// a kurtosis between 1 and 3 still gets labels.
type logTicks struct{}

// Ticks implements gplot.Ticker.
func (logTicks) Ticks(lo, hi float64) []gplot.Tick {
	var ts []gplot.Tick
	if hi/lo >= 10 {
		ts = gplot.LogTicks{Prec: -1}.Ticks(lo, hi)
	} else {
		ts = gplot.DefaultTicks{}.Ticks(lo, hi)
	}
	out := ts[:0]
	for _, t := range ts {
		if t.Value > 0 {
			out = append(out, t)
		}
	}
	return out
}

// tidyTicks relabels the major ticks of a ticker with up to six
// significant digits, so that close ticks (1.05 and 1.1) keep distinct
// labels.
type tidyTicks struct{ gplot.Ticker }

// Ticks implements gplot.Ticker.
func (t tidyTicks) Ticks(lo, hi float64) []gplot.Tick {
	ts := t.Ticker.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 6, 64)
		}
	}
	return ts
}

// save writes the figure in format to path.
func (f *figure) save(path, format string) (err error) {
	defer func() {
		// gonum panics on some degenerate inputs; report them as errors.
		if r := recover(); r != nil {
			err = fmt.Errorf("drawing %s: %v", f.stem, r)
		}
	}()
	w, h := f.size()
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return err
	}
	if err := f.draw(draw.New(c)); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// lossFigure is the eval loss of every run with its training loss lighter.
func lossFigure(runs []*Run) *figure {
	pn := &panel{xLabel: "step", yLabel: "loss (nats/token)", yMax: math.Inf(1)}
	f := &figure{stem: "loss", title: "Eval loss (training loss lighter)", panels: []*panel{pn}, cols: 1}
	evalMax := math.Inf(-1)
	hasEval := false
	for i, r := range runs {
		c := runColor(i)
		tr := &series{name: r.Label + " (train)", color: lighter(c, 0.6), width: vg.Points(1)}
		for _, p := range r.Train {
			tr.add(float64(p.Step), p.Loss)
		}
		ev := &series{name: r.Label + " (eval)", color: c, width: vg.Points(2)}
		for _, p := range r.Eval {
			ev.add(float64(p.Step), p.EvalLoss)
			if !math.IsNaN(p.EvalLoss) && !math.IsInf(p.EvalLoss, 0) {
				evalMax, hasEval = math.Max(evalMax, p.EvalLoss), true
			}
		}
		if len(tr.xy) > 0 {
			pn.series = append(pn.series, tr)
		}
		if len(ev.xy) > 0 {
			pn.series = append(pn.series, ev)
		}
		if len(ev.xy) > 0 {
			f.legend = append(f.legend, ev)
		}
		if len(tr.xy) > 0 {
			f.legend = append(f.legend, tr)
		}
	}
	if len(pn.series) == 0 {
		return nil
	}
	if hasEval {
		// Zoom on the eval curves: the first training losses (≈ log V)
		// would flatten them otherwise.
		pn.yMax = evalMax * 1.08
	}
	return f
}

// hiddenLabel names hidden state i of 0..last: the embedding output, the
// input of block i, the output of ln_f.
func hiddenLabel(i, last int) string {
	switch {
	case i == 0:
		return "0 (embeddings)"
	case i == last && last > 0:
		return strconv.Itoa(i) + " (final norm)"
	}
	return strconv.Itoa(i)
}

// perLayer builds one series per layer from the stats records; get returns
// a layer's value (NaN to skip).
func perLayer(r *Run, label func(i, last int) string, get func(p StatsPoint, i int) (float64, bool)) []*series {
	n := 0
	for _, p := range r.Stats {
		n = max(n, len(p.Layers), len(p.AttnEntropy))
	}
	var out []*series
	for i := 0; i < n; i++ {
		s := &series{name: label(i, n-1), color: layerColor(i, n), width: vg.Points(1.3)}
		for _, p := range r.Stats {
			if v, ok := get(p, i); ok {
				s.add(float64(p.Step), v)
			}
		}
		if len(s.xy) > 0 {
			out = append(out, s)
		}
	}
	return out
}

func layerValue(field func(LayerStats) float64) func(p StatsPoint, i int) (float64, bool) {
	return func(p StatsPoint, i int) (float64, bool) {
		if i >= len(p.Layers) {
			return 0, false
		}
		return field(p.Layers[i]), true
	}
}

func layerFigure(stem, title, yLabel string, logY bool, ss []*series) *figure {
	if len(ss) == 0 {
		return nil
	}
	pn := &panel{title: "", xLabel: "step", yLabel: yLabel, logY: logY, series: ss, yMax: math.Inf(1)}
	return &figure{stem: stem, title: title, panels: []*panel{pn}, cols: 1, legend: withHeader("hidden state", ss)}
}

// withHeader prefixes the legend with a line-less caption.
func withHeader(caption string, ss []*series) []*series {
	return append([]*series{{name: caption, color: color.Transparent}}, ss...)
}

func kurtosisFigure(r *Run, slug string) *figure {
	ss := perLayer(r, hiddenLabel, layerValue(func(l LayerStats) float64 { return l.Kurtosis }))
	return layerFigure("kurtosis-"+slug, "Kurtosis of neuron RMS per layer — "+r.Label,
		"kurtosis mean(s⁴)/mean(s²)² (log)", true, ss)
}

func maxMedianFigure(r *Run, slug string) *figure {
	ss := perLayer(r, hiddenLabel, layerValue(func(l LayerStats) float64 { return l.MaxMedianRatio }))
	return layerFigure("max-median-"+slug, "Max/median activation ratio per layer — "+r.Label,
		"mean over tokens of max|x|/median|x| (log)", true, ss)
}

func entropyFigure(r *Run, slug string) *figure {
	label := func(i, _ int) string { return "block " + strconv.Itoa(i) }
	ss := perLayer(r, label, func(p StatsPoint, i int) (float64, bool) {
		if i >= len(p.AttnEntropy) {
			return 0, false
		}
		return p.AttnEntropy[i], true
	})
	f := layerFigure("entropy-"+slug, "Attention entropy per layer — "+r.Label, "mean entropy (nats)", false, ss)
	if f != nil {
		f.legend[0].name = "layer"
	}
	return f
}

var layerName = regexp.MustCompile(`^(?:transformer\.)?h\.(\d+)\.(.+)$`)

// gainKind splits a gain's parameter name into its layer (−1 when none)
// and its kind, e.g. "transformer.h.3.attn.attn_mat_resid_gain" → 3,
// "attn.attn_mat_resid_gain".
func gainKind(name string) (int, string) {
	if m := layerName.FindStringSubmatch(name); m != nil {
		i, err := strconv.Atoi(m[1])
		if err == nil {
			return i, m[2]
		}
	}
	return -1, name
}

// gainsFigure has one panel per kind of gain, with the mean over heads of
// each layer's gain over training.
func gainsFigure(r *Run, slug string) *figure {
	type key struct {
		kind  string
		layer int
	}
	pts := map[key]*series{}
	kinds := map[string]bool{}
	nLayers := 0
	for _, p := range r.Stats {
		for name, v := range p.Gains {
			if len(v) == 0 {
				continue
			}
			layer, kind := gainKind(name)
			k := key{kind, layer}
			s := pts[k]
			if s == nil {
				s = &series{}
				pts[k] = s
			}
			mean := 0.0
			for _, x := range v {
				mean += x
			}
			s.add(float64(p.Step), mean/float64(len(v)))
			kinds[kind] = true
			nLayers = max(nLayers, layer+1)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	f := &figure{stem: "gains-" + slug, title: "Gains over training (mean over heads) — " + r.Label,
		cols: min(3, len(names))}
	legend := map[int]*series{}
	for _, kind := range names {
		pn := &panel{title: kind, xLabel: "step", yLabel: "gain", yMax: math.Inf(1)}
		for layer := -1; layer < nLayers; layer++ {
			s := pts[key{kind, layer}]
			if s == nil {
				continue
			}
			if layer >= 0 {
				s.color, s.name = layerColor(layer, nLayers), "layer "+strconv.Itoa(layer)
			} else {
				s.color, s.name = color.Black, "no layer"
			}
			s.width = vg.Points(1.3)
			sort.SliceStable(s.xy, func(i, j int) bool { return s.xy[i].X < s.xy[j].X })
			pn.series = append(pn.series, s)
			if legend[layer] == nil {
				legend[layer] = s
			}
		}
		f.panels = append(f.panels, pn)
	}
	var ls []*series
	for layer := -1; layer < nLayers; layer++ {
		if s := legend[layer]; s != nil {
			ls = append(ls, s)
		}
	}
	f.legend = withHeader("block", ls)
	return f
}
