package train

// Outlier-feature and signal-propagation statistics of "Understanding and
// Minimising Outlier Features in Transformer Training" (He et al., NeurIPS
// 2024), computed as the original training code logs them every 100 steps
// on the forward pass of a training batch, plus the attention entropy and
// gain values that "Simplifying Transformer Blocks" (He & Hofmann, ICLR
// 2024) tracks.

import (
	"fmt"
	"math"

	"clm/model"
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
			return nil, fmt.Errorf("train: outlier stats: hidden state %d is nil or freed", i)
		}
		s := h.Shape()
		if !h.DType().IsFloat() {
			return nil, fmt.Errorf("train: outlier stats: hidden state %d is %v, not floating point", i, h.DType())
		}
		if len(s) < 2 || s[len(s)-1] < 2 || h.Numel()/s[len(s)-1] < 2 {
			return nil, fmt.Errorf("train: outlier stats: hidden state %d of shape %v: want [..., d] with d ≥ 2 and at least 2 tokens", i, s)
		}
	}
	if len(hidden) == 0 {
		return nil, nil
	}
	vals, err := perLayer(len(hidden), func(i int) *torch.Tensor { return layerStats(hidden[i]) })
	if err != nil {
		return nil, fmt.Errorf("train: outlier stats: %w", err)
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
	kurt := s2.Square().Mean(false).Div(s2.Mean(false).Square())
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
			return nil, fmt.Errorf("train: attention entropy: layer %d probabilities are nil or freed", i)
		}
		if !p.DType().IsFloat() || p.Dim() < 1 {
			return nil, fmt.Errorf("train: attention entropy: layer %d probabilities %v: want floating point [B, H, T, T]", i, p)
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
		return nil, fmt.Errorf("train: attention entropy: %w", err)
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

// Gains returns every gain of ps (model.RoleGain), in
// registry order, with one host transfer. (The original logs the MLP
// block resid gain as its norm, i.e. |g|; Values keep the sign.)
func Gains(ps *model.Params) ([]runlog.Gain, error) {
	if ps == nil {
		return nil, fmt.Errorf("train: gains: no parameters")
	}
	var gains []runlog.Gain
	var ts []*torch.Tensor
	for _, p := range ps.All() {
		if p.Role != model.RoleGain {
			continue
		}
		if p.T == nil || p.T.Freed() {
			return nil, fmt.Errorf("train: gains: %s is freed", p.Name)
		}
		gains = append(gains, runlog.Gain{Name: p.Name, Trainable: p.Trainable})
		ts = append(ts, p.T)
	}
	if len(gains) == 0 {
		return nil, nil
	}
	var vals []float64
	err := torch.Try(func() {
		torch.WithScope(func(*torch.Scope) {
			flat := make([]*torch.Tensor, len(ts))
			for i, t := range ts {
				flat[i] = t.Detach().Reshape(-1).To(torch.Float64, torch.CPU)
			}
			vals = torch.Cat(flat, 0).Float64s()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("train: gains: %w", err)
	}
	o := 0
	for i, t := range ts {
		n := int(t.Numel())
		g := &gains[i]
		g.Values = vals[o : o+n : o+n]
		o += n
		g.Mean, g.Std = meanStd(g.Values)
	}
	return gains, nil
}

// meanStd returns the mean and the Bessel-corrected standard deviation (0
// for fewer than two values).
func meanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return math.NaN(), 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1))
}
