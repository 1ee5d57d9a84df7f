// Package stats holds the outlier-feature and signal-propagation
// statistics of "Understanding and Minimising Outlier Features in
// Transformer Training" (He et al., NeurIPS 2024), computed as the
// original training code logs them every 100 steps on the forward pass of
// a training batch, and the attention entropy that "Simplifying
// Transformer Blocks" (He & Hofmann, ICLR 2024) tracks. Training logs them
// (train) and the int8 study reports the kurtosis (quant): one definition
// serves both. It knows hidden states and attention probabilities, not
// the model that made them.
package stats

import (
	"fmt"

	"clm/runlog"
	"clm/torch"
)

// XRMSEps is added to the RMS of the centred hidden state before it
// normalises the features (the original's 1e-8, added outside the root).
const XRMSEps = 1e-8

// batchGramChunkElems (a variable for tests) bounds the number of entries of the N×N batch Gram
// matrix FFᵀ/d that OutlierStats materialises at once (2^24: 64 MiB in
// float32). For the original's micro-batch N = 32·128 = 4096 tokens the
// whole matrix is one chunk.
var batchGramChunkElems int64 = 1 << 24

// statsDType is the dtype the statistics are computed in: the tensor's own
// for float32 and float64, float32 for the half types (autocast outputs).
func statsDType(dt torch.DType) torch.DType {
	if dt == torch.Float64 {
		return torch.Float64
	}
	return torch.Float32
}

// OutlierStats computes runlog.LayerStats for each hidden state [B, T, d] (any
// shape [..., d] is flattened to [N, d]), e.g. Model.Forward's Output.Hidden
// with ForwardOptions.Hidden. The inputs are detached (no graph is built)
// and are not modified; the statistics are computed in float64 for float64
// inputs and float32 otherwise, on the inputs' device, and copied to the
// host in one transfer. Every intermediate tensor is freed before
// OutlierStats returns.
//
// Memory beyond a few copies of x per layer: the d×d Gram matrix and
// blocks of at most 2^24 entries of the N×N token Gram matrix FFᵀ/d, of
// which up to two float copies and a bool mask are alive at once. For the
// original's micro-batch N = 32·128 = 4096 tokens, FFᵀ/d is one block:
// about 150 MiB at peak in float32.
func OutlierStats(hidden []*torch.Tensor) ([]runlog.LayerStats, error) {
	for i, h := range hidden {
		if h == nil || h.Freed() {
			return nil, fmt.Errorf("stats: outlier stats: hidden state %d is nil or freed", i)
		}
		s := h.Shape()
		if !h.DType().IsFloat() {
			return nil, fmt.Errorf("stats: outlier stats: hidden state %d is %v, not floating point", i, h.DType())
		}
		if len(s) < 2 || s[len(s)-1] < 2 || h.Numel()/s[len(s)-1] < 2 {
			return nil, fmt.Errorf("stats: outlier stats: hidden state %d of shape %v: want [..., d] with d ≥ 2 and at least 2 tokens", i, s)
		}
	}
	if len(hidden) == 0 {
		return nil, nil
	}
	vals, err := perLayer(len(hidden), func(i int) *torch.Tensor { return layerStats(hidden[i]) })
	if err != nil {
		return nil, fmt.Errorf("stats: outlier stats: %w", err)
	}
	out := make([]runlog.LayerStats, len(hidden))
	for i := range out {
		out[i] = runlog.LayerStatsOf(i, vals[i*runlog.StatsPerLayer:(i+1)*runlog.StatsPerLayer])
	}
	return out, nil
}

// layerStats returns the runlog.StatsPerLayer statistics of one hidden
// state as a float64 vector, in the order of runlog.LayerStatNames.
func layerStats(h *torch.Tensor) *torch.Tensor {
	dt := statsDType(h.DType())
	dev := h.Device()
	x := h.Detach().ToDType(dt)
	d := x.Size(-1)
	xc := x.Sub(x.Mean(true, -1)) // centred across the width
	xrms := xc.Square().Mean(false).Sqrt().AddScalar(XRMSEps)
	f := xc.Reshape(-1, d).Div(xrms) // [N, d]
	n := f.Size(0)

	// Feature Gram matrix G = FᵀF/N and s² = diag G (taken from G itself,
	// as the original does).
	g := f.T().Matmul(f).DivScalar(float64(n))
	diagIdx := torch.Arange(0, float64(d*d), float64(d+1), torch.Int64, dev)
	s2 := g.Reshape(-1).IndexSelect(0, diagIdx)
	kurt := Kurtosis(s2)
	kurtM1 := s2.Var(1, false)
	eyeD := torch.Eye(d, d, dt, dev).GtScalar(0.5)
	featCorrRMS := g.MaskedFill(eyeD, 0).Square().Sum(false).DivScalar(float64(d * (d - 1))).Sqrt()

	// Token Gram matrix FFᵀ/d, a block of rows at a time.
	rows := max(int64(1), min(n, batchGramChunkElems/n))
	cols := torch.Arange(0, float64(n), 1, torch.Int64, dev).Unsqueeze(0)
	ft := f.T()
	var sum, sumSq *torch.Tensor
	for o := int64(0); o < n; o += rows {
		c := min(rows, n-o)
		mm := f.Narrow(0, o, c).Matmul(ft)
		blk := mm.DivScalar(float64(d)) // [c, N]
		mm.Free()
		diag := torch.Arange(float64(o), float64(o+c), 1, torch.Int64, dev).Unsqueeze(1).Eq(cols)
		off := blk.MaskedFill(diag, 0)
		blk.Free()
		diag.Free()
		bs := off.Sum(false).ToDType(torch.Float64)
		sq := off.Square()
		off.Free()
		bq := sq.Sum(false).ToDType(torch.Float64)
		sq.Free()
		if sum == nil {
			sum, sumSq = bs, bq
		} else {
			sum, sumSq = sum.Add(bs), sumSq.Add(bq)
		}
	}
	pairs := float64(n) * float64(n-1)
	batchMean := sum.DivScalar(pairs)
	batchRMS := sumSq.DivScalar(pairs).Sqrt()

	a := xc.Abs()
	mmr := a.Amax(false, -1).Div(a.Median(-1, false)).Mean(false)

	byName := map[string]*torch.Tensor{"x_rms": xrms, "kurtosis": kurt, "kurtosis_minus_one": kurtM1,
		"feat_corr_rms": featCorrRMS, "batch_corr_mean": batchMean, "batch_corr_rms": batchRMS, "max_median_ratio": mmr}
	parts := make([]*torch.Tensor, runlog.StatsPerLayer)
	for i, name := range runlog.LayerStatNames() {
		parts[i] = byName[name].ToDType(torch.Float64)
	}
	return torch.Stack(parts, 0)
}

// Kurtosis is the papers' kurtosis of the per-feature second moments s²
// (a vector [d]): mean(s⁴)/mean(s²)², 1 when every feature has the same
// scale and up to d when one feature carries all of it. A common factor
// of s² cancels, so the moments may be sums instead of means.
func Kurtosis(s2 *torch.Tensor) *torch.Tensor {
	return s2.Square().Mean(false).Div(s2.Mean(false).Square())
}

// AttentionEntropy returns, for each layer's softmax attention
// probabilities A [B, H, T, T] (Model.Forward's Output.Attention with
// ForwardOptions.Attention), the Shannon entropy −Σ_j A_ij log A_ij of each
// query row, averaged over batch, heads and query positions — the
// original's attn.{i}.entropy. Terms that are NaN, in particular 0·log 0 at
// causally masked keys, count as 0 (the original's torch.nansum). Computed
// in float64 for float64 inputs and float32 otherwise, with one host
// transfer.
func AttentionEntropy(probs []*torch.Tensor) ([]float64, error) {
	for i, p := range probs {
		if p == nil || p.Freed() {
			return nil, fmt.Errorf("stats: attention entropy: layer %d probabilities are nil or freed", i)
		}
		if !p.DType().IsFloat() || p.Dim() < 1 {
			return nil, fmt.Errorf("stats: attention entropy: layer %d probabilities %v: want floating point [B, H, T, T]", i, p)
		}
	}
	if len(probs) == 0 {
		return nil, nil
	}
	vals, err := perLayer(len(probs), func(i int) *torch.Tensor {
		a := probs[i].Detach().ToDType(statsDType(probs[i].DType()))
		plogp := a.Mul(a.Log())
		plogp = plogp.MaskedFill(plogp.Ne(plogp), 0) // nansum
		return plogp.Sum(false, -1).Neg().Mean(false).ToDType(torch.Float64)
	})
	if err != nil {
		return nil, fmt.Errorf("stats: attention entropy: %w", err)
	}
	return vals, nil
}

// perLayer computes f(i) for each of n layers, each in a scope of its own
// (a layer's temporaries are freed before the next), and copies the results,
// float64 vectors or scalars, to the host in one transfer, concatenated.
func perLayer(n int, f func(i int) *torch.Tensor) ([]float64, error) {
	var vals []float64
	err := torch.Try(func() {
		torch.WithScope(func(*torch.Scope) {
			per := make([]*torch.Tensor, 0, n)
			for i := 0; i < n; i++ {
				torch.WithScope(func(inner *torch.Scope) { per = append(per, inner.Keep(f(i).Reshape(-1))) })
			}
			vals = torch.Cat(per, 0).ToDevice(torch.CPU).Float64s()
		})
	})
	return vals, err
}
