package plot

import (
	"fmt"
	"math"

	"gonum.org/v1/plot/vg"
)

// The outlier-features study's figures (He et al., NeurIPS 2024): outlier
// features over training per model, and what int8 quantisation costs each.

// ofKurtosisFigure compares the runs' outlier features over training: the
// mean over layers of the kurtosis of the hidden states' neuron RMS, one
// line per run (log scale). Nil unless two runs logged it.
func ofKurtosisFigure(runs []*Run) *figure {
	pn := &panel{xLabel: "step", yLabel: "mean kurtosis over layers (log)", logY: true, yMax: math.Inf(1)}
	f := &figure{stem: "of-kurtosis", title: "Outlier features during training", panels: []*panel{pn}, cols: 1}
	for i, r := range runs {
		s := runSeries(i, r.Label, vg.Points(2))
		for _, st := range r.Stats {
			if len(st.Layers) == 0 {
				continue
			}
			var sum float64
			for _, l := range st.Layers {
				sum += l.Kurtosis
			}
			s.add(float64(st.Step), sum/float64(len(st.Layers)))
		}
		if len(s.xy) > 0 {
			pn.series = append(pn.series, s)
			f.legend = append(f.legend, s)
		}
	}
	if len(pn.series) < 2 {
		return nil
	}
	return f
}

// quantFigure compares the full-precision and int8 perplexity of the runs
// that have a quant.json (clm quant), side by side per run. Nil when none
// has.
func quantFigure(runs []*Run) *figure {
	fp := barGroup{name: "full precision", color: runColor(0)}
	q := barGroup{name: "int8 (weights and activations)", color: runColor(1)}
	var labels []string
	scheme := ""
	for _, r := range runs {
		if r.Quant == nil {
			continue
		}
		sc := r.Quant.Scheme
		text := "int8 weights " + sc.Weights + ", activations " + sc.Acts
		if sc.Residual {
			text += ", residual stream too"
		}
		if scheme == "" {
			scheme = text
		} else if scheme != text {
			scheme = "schemes differ between runs (see each quant.json)"
		}
		labels = append(labels, r.Label)
		fp.values = append(fp.values, r.Quant.FP.Perplexity)
		q.values = append(q.values, r.Quant.Int8.Perplexity)
		q.notes = append(q.notes, fmt.Sprintf("×%.3g", r.Quant.Int8.Perplexity/r.Quant.FP.Perplexity))
	}
	if len(labels) == 0 {
		return nil
	}
	pn := &panel{title: scheme, xLabel: "run", yLabel: "eval perplexity", yMax: math.Inf(1),
		bars: &bars{categories: labels, groups: []barGroup{fp, q}}}
	return &figure{stem: "of-quant", title: "What int8 quantisation costs", panels: []*panel{pn}, cols: 1}
}
