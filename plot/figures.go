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

	"gonum.org/v1/plot/vg"

	"clm/runlog"
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
// RUN is the run's label (config.toml's name, else the folder
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
	for _, build := range []func([]*Run) *figure{lossFigure, ofKurtosisFigure, quantFigure} {
		if f := build(runs); f != nil {
			figs = append(figs, f)
		}
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

// uniqueLabels tells apart runs that share a label by the shortest tail of
// their folders' paths that differs: "tiny (seedA/run)", "tiny (seedB/run)".
func uniqueLabels(runs []*Run) {
	groups := map[string][]*Run{}
	for _, r := range runs {
		groups[r.Label] = append(groups[r.Label], r)
	}
	for label, group := range groups {
		if len(group) < 2 {
			continue
		}
		paths := make([][]string, len(group))
		for i, r := range group {
			abs, err := filepath.Abs(r.Dir)
			if err != nil {
				abs = r.Dir
			}
			paths[i] = strings.Split(filepath.ToSlash(abs), "/")
		}
		for n := 1; ; n++ {
			tails := map[string]bool{}
			longest := true
			for _, p := range paths {
				tails[strings.Join(p[max(0, len(p)-n):], "/")] = true
				longest = longest && n >= len(p)
			}
			if len(tails) == len(group) || longest {
				for i, r := range group {
					r.Label = label + " (" + strings.Join(paths[i][max(0, len(paths[i])-n):], "/") + ")"
				}
				break
			}
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

// lossFigure is the eval loss of every run with its training loss lighter.
func lossFigure(runs []*Run) *figure {
	pn := &panel{xLabel: "step", yLabel: "loss (nats/token)", yMax: math.Inf(1)}
	f := &figure{stem: "loss", title: "Eval loss (training loss lighter)", panels: []*panel{pn}, cols: 1}
	evalMax := math.Inf(-1)
	hasEval := false
	for i, r := range runs {
		tr := runSeries(i, r.Label+" (train)", vg.Points(1))
		tr.color, tr.marker = lighter(runColor(i), 0.6), nil
		for _, p := range r.Train {
			tr.add(float64(p.Step), p.Loss)
		}
		ev := runSeries(i, r.Label+" (eval)", vg.Points(2))
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
func perLayer(r *Run, label func(i, last int) string, get func(p runlog.Stats, i int) (float64, bool)) []*series {
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

func layerValue(field func(runlog.LayerStats) float64) func(p runlog.Stats, i int) (float64, bool) {
	return func(p runlog.Stats, i int) (float64, bool) {
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
	ss := perLayer(r, hiddenLabel, layerValue(func(l runlog.LayerStats) float64 { return l.Kurtosis }))
	return layerFigure("kurtosis-"+slug, "Kurtosis of neuron RMS per layer — "+r.Label,
		"kurtosis mean(s⁴)/mean(s²)² (log)", true, ss)
}

func maxMedianFigure(r *Run, slug string) *figure {
	ss := perLayer(r, hiddenLabel, layerValue(func(l runlog.LayerStats) float64 { return l.MaxMedianRatio }))
	return layerFigure("max-median-"+slug, "Max/median activation ratio per layer — "+r.Label,
		"mean over tokens of max|x|/median|x| (log)", true, ss)
}

func entropyFigure(r *Run, slug string) *figure {
	label := func(i, _ int) string { return "block " + strconv.Itoa(i) }
	ss := perLayer(r, label, func(p runlog.Stats, i int) (float64, bool) {
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
