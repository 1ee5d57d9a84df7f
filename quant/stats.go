package quant

import (
	"fmt"
	"io"
	"math"
	"strings"

	"clm/stats"
	"clm/torch"
)

// accumulator sums, over evaluation batches, the losses times the batch's
// rows and, per block output, the per-feature sums of squared centred
// activations and the squared norms of the int8 error and of the
// full-precision output.
type accumulator struct {
	layers       int
	fpSum, qSum  float64
	feat         [][]float64 // [layer][feature] Σ x̄²
	errSq, refSq []float64
	width        int
}

// add takes one batch of b rows: the mean losses and the block outputs of
// the full-precision and int8 forwards, with one host transfer.
func (a *accumulator) add(b int, lf, lq *torch.Tensor, fp, q []*torch.Tensor) {
	if len(fp) != a.layers || len(q) != a.layers {
		panic(&torch.Error{Op: "quant", Msg: fmt.Sprintf("%d and %d block outputs for %d layers", len(fp), len(q), a.layers)})
	}
	parts := []*torch.Tensor{lf.ToDType(torch.Float64).Reshape(1), lq.ToDType(torch.Float64).Reshape(1)}
	for i := range fp {
		d := fp[i].Size(-1)
		a.width = int(d)
		hf := fp[i].ToDType(torch.Float64).Reshape(-1, d)
		hq := q[i].ToDType(torch.Float64).Reshape(-1, d)
		xc := hf.Sub(hf.Mean(true, -1)) // centred across the width
		parts = append(parts, xc.Square().Sum(false, 0),
			hq.Sub(hf).Square().Sum(false).Reshape(1), hf.Square().Sum(false).Reshape(1))
	}
	v := torch.Cat(parts, 0).ToDevice(torch.CPU).Float64s()
	if a.feat == nil {
		a.feat = make([][]float64, a.layers)
		a.errSq, a.refSq = make([]float64, a.layers), make([]float64, a.layers)
		for i := range a.feat {
			a.feat[i] = make([]float64, a.width)
		}
	}
	a.fpSum += v[0] * float64(b)
	a.qSum += v[1] * float64(b)
	off := 2
	for i := range a.layers {
		for j := range a.width {
			a.feat[i][j] += v[off+j]
		}
		off += a.width
		a.errSq[i] += v[off]
		a.refSq[i] += v[off+1]
		off += 2
	}
}

// report is the Report of n evaluated rows.
func (a *accumulator) report(n int) *Report {
	r := &Report{Sequences: n, FP: evalOf(a.fpSum / float64(n)), Int8: evalOf(a.qSum / float64(n))}
	r.Degradation = r.Int8.Loss - r.FP.Loss
	for i := range a.layers {
		r.Layers = append(r.Layers, Layer{Layer: i, Kurtosis: kurtosis(a.feat[i]),
			Int8RelError: math.Sqrt(a.errSq[i] / math.Max(a.refSq[i], 1e-300))})
	}
	return r
}

// kurtosis is stats.Kurtosis of the per-feature sums of squares s2.
func kurtosis(s2 []float64) float64 {
	var k float64
	torch.WithScope(func(*torch.Scope) { k = stats.Kurtosis(torch.FromFloat64(s2, int64(len(s2)))).Item() })
	return k
}

// WriteTable prints the report: the losses and, per block, the kurtosis
// and the int8 error of its output.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "scheme %s (%d sequences", r.Scheme, r.Sequences)
	if r.CalibBatches > 0 {
		fmt.Fprintf(&b, ", %d calibration batches", r.CalibBatches)
	}
	fmt.Fprintf(&b, ")\n\n%-6s %10s %12s\n", "", "eval loss", "perplexity")
	fmt.Fprintf(&b, "%-6s %10.4f %12.3f\n", "fp32", r.FP.Loss, r.FP.Perplexity)
	fmt.Fprintf(&b, "%-6s %10.4f %12.3f\n", "int8", r.Int8.Loss, r.Int8.Perplexity)
	fmt.Fprintf(&b, "degradation %+.4f nats (perplexity ×%.3f)\n\n", r.Degradation, r.Int8.Perplexity/r.FP.Perplexity)
	fmt.Fprintf(&b, "%-6s %10s %15s\n", "block", "kurtosis", "int8 rel error")
	for _, l := range r.Layers {
		fmt.Fprintf(&b, "%-6d %10.2f %15.3g\n", l.Layer, l.Kurtosis, l.Int8RelError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
