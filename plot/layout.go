package plot

// The layout toolkit of the figures: series (styled lines), panels (one set
// of axes), figures (a titled grid of panels with one legend), their
// drawing, tick marks, colours and saving in each format. It knows nothing
// of runs or of the papers; figures.go builds the figures from them.

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// ---- series ---------------------------------------------------------------

// series is one line: points (non-finite ones and, on log axes,
// non-positive ones are dropped when drawn) with its style and legend name.
type series struct {
	name  string
	xy    plotter.XYs
	color color.Color
	width vg.Length
	dash  []vg.Length
	// marker, when set, marks some of the points (all of a short series),
	// so that a single point shows and overlapping curves stay apart.
	marker draw.GlyphDrawer
}

func (s *series) add(x, y float64) { s.xy = append(s.xy, plotter.XY{X: x, Y: y}) }

// points are the drawable points: finite, and positive on a log axis.
func (s *series) points(logY bool) plotter.XYs {
	var xy plotter.XYs
	for _, p := range s.xy {
		if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) || math.IsNaN(p.X) || math.IsInf(p.X, 0) || (logY && p.Y <= 0) {
			continue
		}
		xy = append(xy, p)
	}
	return xy
}

// visible reports whether any point of s shows within y ≤ yMax.
func (s *series) visible(logY bool, yMax float64) bool {
	for _, p := range s.points(logY) {
		if math.IsInf(yMax, 1) || math.IsNaN(yMax) || p.Y <= yMax {
			return true
		}
	}
	return false
}

// lineStyle is the series' pen.
func (s *series) lineStyle() draw.LineStyle {
	w := s.width
	if w == 0 {
		w = vg.Points(1.5)
	}
	return draw.LineStyle{Color: s.color, Width: w, Dashes: s.dash}
}

// plotters returns the gonum line (two points or more) and markers of s,
// none when no point is drawable.
func (s *series) plotters(logY bool) []gplot.Plotter {
	xy := s.points(logY)
	var out []gplot.Plotter
	if len(xy) >= 2 {
		if l, err := plotter.NewLine(xy); err == nil {
			l.LineStyle = s.lineStyle()
			out = append(out, l)
		}
	}
	if s.marker != nil && len(xy) > 0 {
		step := max(1, len(xy)/maxMarkers)
		var marked plotter.XYs
		for i := 0; i < len(xy); i += step {
			marked = append(marked, xy[i])
		}
		if last := xy[len(xy)-1]; marked[len(marked)-1] != last {
			marked = append(marked, last)
		}
		if sc, err := plotter.NewScatter(marked); err == nil {
			sc.GlyphStyle = draw.GlyphStyle{Color: s.color, Radius: vg.Points(2.8), Shape: s.marker}
			out = append(out, sc)
		}
	} else if len(xy) == 1 {
		// A lone point without a marker still shows, as a dot.
		if sc, err := plotter.NewScatter(xy); err == nil {
			sc.GlyphStyle = draw.GlyphStyle{Color: s.color, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
			out = append(out, sc)
		}
	}
	return out
}

// maxMarkers is about how many points of a long series are marked.
const maxMarkers = 16

// runColors are distinguishable colours for runs (Tableau 10).
var runColors = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

func runColor(i int) color.RGBA { return runColors[i%len(runColors)] }

// runDashes and runMarkers tell runs apart where their curves overlap (a
// block whose curve hides under another's): run i has colour i, dashes
// i mod 4 and marker i mod 5.
var runDashes = [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}}

var runMarkers = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.SquareGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}}

// runSeries is a series in run i's style.
func runSeries(i int, name string, width vg.Length) *series {
	return &series{name: name, color: runColor(i), width: width, dash: runDashes[i%len(runDashes)], marker: runMarkers[i%len(runMarkers)]}
}

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
	// bars, when set, are groups of bars side by side at categories
	// (instead of series against a numeric x).
	bars *bars
	// under are drawn beneath the series (spread bands, error bars).
	under []gplot.Plotter
	// logX puts x on a log scale; categories, when set, name x = 0, 1, …
	logX       bool
	categories []string
	// padX leaves a margin on either side of the data's x range, so that
	// points at its ends show whole.
	padX bool
}

// bars are grouped bar charts: one bar per group at each category.
type bars struct {
	categories []string
	groups     []barGroup
}

// barGroup is one bar per category, in one colour; notes, when set, follow
// each bar's value in its label.
type barGroup struct {
	name    string
	values  []float64
	notes   []string
	missing []bool // a category without a value (drawn as 0, labelled by its note alone)
	color   color.Color
}

// plotBars draws pn's bars, grouped around each category.
func (pn *panel) plotBars(p *gplot.Plot) error {
	w := vg.Points(20)
	n := len(pn.bars.groups)
	for i, g := range pn.bars.groups {
		b, err := plotter.NewBarChart(plotter.Values(g.values), w)
		if err != nil {
			return err
		}
		b.Color, b.LineStyle.Width = g.color, 0
		b.Offset = w * vg.Length(2*i-n+1) / 2
		p.Add(b)
		p.Legend.Add(g.name, b)
		// Each bar's value above it.
		xy := plotter.XYLabels{XYs: make(plotter.XYs, len(g.values)), Labels: make([]string, len(g.values))}
		for j, v := range g.values {
			xy.XYs[j] = plotter.XY{X: float64(j), Y: v}
			xy.Labels[j] = strconv.FormatFloat(v, 'g', 4, 64)
			switch {
			case j < len(g.missing) && g.missing[j]:
				xy.Labels[j] = g.notes[j] // no bar: only why
			case j < len(g.notes):
				xy.Labels[j] += "\n" + g.notes[j]
			}
		}
		l, err := plotter.NewLabels(xy)
		if err != nil {
			return err
		}
		for j := range l.TextStyle {
			l.TextStyle[j].XAlign, l.TextStyle[j].Font.Size = draw.XCenter, vg.Points(7)
		}
		l.Offset = vg.Point{X: b.Offset, Y: vg.Points(3)}
		p.Add(l)
	}
	p.NominalX(pn.bars.categories...)
	p.Legend.Top = true
	// Headroom above the tallest bar for its label and the legend.
	top := 0.0
	for _, g := range pn.bars.groups {
		for _, v := range g.values {
			top = math.Max(top, v)
		}
	}
	p.Y.Min, p.Y.Max = 0, 1.35*top
	return nil
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
			if !f.drawn(s) {
				continue
			}
			sty := s.lineStyle()
			sty.Width = max(sty.Width, vg.Points(2))
			thumbs := []gplot.Thumbnailer{&plotter.Line{LineStyle: sty}}
			if s.marker != nil {
				thumbs = append(thumbs, &plotter.Scatter{GlyphStyle: draw.GlyphStyle{Color: s.color, Radius: vg.Points(2.8), Shape: s.marker}})
			}
			l.Add(s.name, thumbs...)
		}
		l.Draw(lc)
	}
	return nil
}

// drawn reports whether a legend entry shows in some panel: a caption (a
// series of no panel) always does; a series only with a point in view.
func (f *figure) drawn(s *series) bool {
	inPanel := false
	for _, pn := range f.panels {
		for _, x := range pn.series {
			if x == s {
				inPanel = true
				if s.visible(pn.logY, pn.yMax) {
					return true
				}
			}
		}
	}
	return !inPanel
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
	if pn.bars != nil {
		return p, pn.plotBars(p)
	}
	pn.xAxis(p)
	p.Add(pn.under...)
	drawable := false
	yMin, yMax := math.Inf(1), math.Inf(-1)
	for _, s := range pn.series {
		ps := s.plotters(pn.logY)
		if len(ps) == 0 {
			continue
		}
		drawable = true
		p.Add(ps...)
		for _, q := range s.points(pn.logY) {
			yMin, yMax = math.Min(yMin, q.Y), math.Max(yMax, q.Y)
		}
	}
	if !drawable {
		return nil, nil
	}
	if !math.IsInf(pn.yMax, 0) && !math.IsNaN(pn.yMax) && pn.yMax > yMin && pn.yMax < yMax {
		p.Y.Max = pn.yMax
	}
	if pn.padX && len(pn.categories) == 0 {
		padX(p, pn.logX)
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

// xAxis sets a log or categorical x axis.
func (pn *panel) xAxis(p *gplot.Plot) {
	switch {
	case pn.logX:
		p.X.Scale = gplot.LogScale{}
		p.X.Tick.Marker = tidyTicks{logTicks{}}
	case len(pn.categories) > 0:
		p.NominalX(pn.categories...)
		p.X.Min, p.X.Max = -0.5, float64(len(pn.categories))-0.5
	}
}

// padX widens the x range by 5% on either side (of its decades on a log
// axis); a single x gets a range around it.
func padX(p *gplot.Plot, logX bool) {
	lo, hi := p.X.Min, p.X.Max
	switch {
	case logX && lo > 0:
		f := math.Pow(hi/lo, 0.05)
		if hi == lo {
			f = 2
		}
		p.X.Min, p.X.Max = lo/f, hi*f
	case hi > lo:
		d := 0.05 * (hi - lo)
		p.X.Min, p.X.Max = lo-d, hi+d
	default:
		d := math.Max(0.5*math.Abs(lo), 0.5)
		p.X.Min, p.X.Max = lo-d, hi+d
	}
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
