package plot

import (
	"fmt"
	"math"

	"gonum.org/v1/plot/vg"

	"clm/runlog"
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

// quantFigure compares the full-precision perplexity of the runs that have
// a quant.json (clm quant) with each int8 scheme evaluated on them, side by
// side per run, at each run's latest quantised checkpoint. Nil when none
// has.
func quantFigure(runs []*Run) *figure {
	fp := barGroup{name: "full precision", color: runColor(0)}
	var labels, schemes []string
	byScheme := map[string]map[int]*runlog.Quant{} // scheme -> run index -> result
	for _, r := range runs {
		latest := latestQuants(r.Quants)
		if len(latest) == 0 {
			continue
		}
		i := len(labels)
		labels = append(labels, r.Label)
		fp.values = append(fp.values, latest[0].FP.Perplexity)
		for _, q := range latest {
			name := schemeName(q.Scheme)
			if byScheme[name] == nil {
				byScheme[name] = map[int]*runlog.Quant{}
				schemes = append(schemes, name)
			}
			byScheme[name][i] = q
		}
	}
	if len(labels) == 0 {
		return nil
	}
	groups := []barGroup{fp}
	for k, name := range schemes {
		g := barGroup{name: "int8 " + name, color: runColor(k + 1)}
		for i := range labels {
			q := byScheme[name][i]
			if q != nil {
				g.values = append(g.values, q.Int8.Perplexity)
				g.notes = append(g.notes, fmt.Sprintf("×%.3g", q.Int8.Perplexity/q.FP.Perplexity))
			} else {
				g.values = append(g.values, 0)
				g.notes = append(g.notes, "not run")
			}
			g.missing = append(g.missing, q == nil)
		}
		groups = append(groups, g)
	}
	pn := &panel{xLabel: "run", yLabel: "eval perplexity", yMax: math.Inf(1),
		bars: &bars{categories: labels, groups: groups}}
	return &figure{stem: "of-quant", title: "What int8 quantisation costs", panels: []*panel{pn}, cols: 1}
}

// latestQuants are the results of the latest checkpoint among qs.
func latestQuants(qs []*runlog.Quant) []*runlog.Quant {
	last := ""
	for _, q := range qs {
		last = max(last, q.Checkpoint)
	}
	var out []*runlog.Quant
	for _, q := range qs {
		if q.Checkpoint == last {
			out = append(out, q)
		}
	}
	return out
}

// schemeName is "weights per_channel, activations static" (", residual").
func schemeName(sc runlog.QuantScheme) string {
	s := "weights " + sc.Weights + ", activations " + sc.Acts
	if sc.Residual {
		s += ", residual"
	}
	return s
}
