package train

// Outlier-feature and signal-propagation statistics of "Understanding and
// Minimising Outlier Features in Transformer Training" (He et al., NeurIPS
// 2024), computed as the original training code logs them every 100 steps
// on the forward pass of a training batch, plus the attention entropy and
// gain values that "Simplifying Transformer Blocks" (He & Hofmann, ICLR
// 2024) tracks.

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"clm/internal/jsonnum"
	"clm/model"
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

// LayerStats are the statistics of one hidden state x [B, T, d] (Sec. 3 and
// App. of the outlier paper). With x̄ the hidden state centred across the
// width (x minus its mean over d), r = √mean(x̄²) + 1e-8 (mean over every
// entry of the batch), F = x̄/r flattened to [N, d] (N = B·T tokens),
// G = FᵀF/N the d×d feature Gram matrix and s² = diag G the squared RMS
// of each neuron:
//
//   - Kurtosis = mean(s⁴)/mean(s²)², the paper's kurtosis of the neuron
//     RMS values (Eq. 1): 1 when every neuron has the same scale, up to d
//     when one neuron carries all the activation.
//   - KurtosisMinusOne = var(s²) with Bessel's correction, which the
//     original logs under the name "kurtosis". The exact relation is
//     Kurtosis = 1 + (d−1)/d · KurtosisMinusOne / mean(s²)², and
//     mean(s²) = ((r−1e-8)/r)², which is 1 to float precision whenever
//     r ≫ 1e-8; so KurtosisMinusOne ≈ (Kurtosis − 1)·d/(d−1).
//
// The fields marshal to JSON under the names in their tags; non-finite
// values (a median of zero, a diverged run) marshal as null and unmarshal
// as NaN.
type LayerStats struct {
	// Layer is the index of the hidden state: 0 is the embedding output,
	// i < L the input of block i, L the output of ln_f.
	Layer int `json:"layer"`
	// XRMS is r = √mean(x̄²) + 1e-8 over the whole batch.
	XRMS float64 `json:"x_rms"`
	// Kurtosis is the paper's kurtosis mean(s⁴)/mean(s²)².
	Kurtosis float64 `json:"kurtosis"`
	// KurtosisMinusOne is var(diag G) with Bessel's correction: the value
	// the original logs as "hidden_states.{i}.kurtosis".
	KurtosisMinusOne float64 `json:"kurtosis_minus_one"`
	// FeatCorrRMS is the RMS of the d(d−1) off-diagonal entries of G.
	FeatCorrRMS float64 `json:"feat_corr_rms"`
	// BatchCorrMean is the mean of the N(N−1) off-diagonal entries of the
	// token Gram matrix FFᵀ/d (signal propagation: how alike the
	// representations of different tokens are).
	BatchCorrMean float64 `json:"batch_corr_mean"`
	// BatchCorrRMS is the RMS of the same off-diagonal entries.
	BatchCorrRMS float64 `json:"batch_corr_rms"`
	// MaxMedianRatio is the mean over tokens of max|x̄|/median|x̄| across
	// the width, with torch's lower median (the original uses the centred
	// x̄ here too).
	MaxMedianRatio float64 `json:"max_median_ratio"`
}

// statsPerLayer is the number of scalars OutlierStats computes per hidden
// state, in the order of LayerStats's float fields.
const statsPerLayer = 7

// layerStatsJSON mirrors LayerStats with null-safe floats.
type layerStatsJSON struct {
	Layer            int           `json:"layer"`
	XRMS             jsonnum.Float `json:"x_rms"`
	Kurtosis         jsonnum.Float `json:"kurtosis"`
	KurtosisMinusOne jsonnum.Float `json:"kurtosis_minus_one"`
	FeatCorrRMS      jsonnum.Float `json:"feat_corr_rms"`
	BatchCorrMean    jsonnum.Float `json:"batch_corr_mean"`
	BatchCorrRMS     jsonnum.Float `json:"batch_corr_rms"`
	MaxMedianRatio   jsonnum.Float `json:"max_median_ratio"`
}

// MarshalJSON writes the statistics with non-finite values as null.
func (s LayerStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(layerStatsJSON{
		Layer: s.Layer, XRMS: jsonnum.Float(s.XRMS), Kurtosis: jsonnum.Float(s.Kurtosis),
		KurtosisMinusOne: jsonnum.Float(s.KurtosisMinusOne), FeatCorrRMS: jsonnum.Float(s.FeatCorrRMS),
		BatchCorrMean: jsonnum.Float(s.BatchCorrMean), BatchCorrRMS: jsonnum.Float(s.BatchCorrRMS),
		MaxMedianRatio: jsonnum.Float(s.MaxMedianRatio),
	})
}

// UnmarshalJSON reads statistics written by MarshalJSON (null as NaN).
func (s *LayerStats) UnmarshalJSON(b []byte) error {
	var j layerStatsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = LayerStats{
		Layer: j.Layer, XRMS: float64(j.XRMS), Kurtosis: float64(j.Kurtosis),
		KurtosisMinusOne: float64(j.KurtosisMinusOne), FeatCorrRMS: float64(j.FeatCorrRMS),
		BatchCorrMean: float64(j.BatchCorrMean), BatchCorrRMS: float64(j.BatchCorrRMS),
		MaxMedianRatio: float64(j.MaxMedianRatio),
	}
	return nil
}

// statsDType is the dtype the statistics are computed in: the tensor's own
// for float32 and float64, float32 for the half types (autocast outputs).
func statsDType(dt torch.DType) torch.DType {
	if dt == torch.Float64 {
		return torch.Float64
	}
	return torch.Float32
}

// OutlierStats computes LayerStats for each hidden state [B, T, d] (any
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
func OutlierStats(hidden []*torch.Tensor) ([]LayerStats, error) {
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
	var vals []float64
	err := torch.Try(func() {
		torch.WithScope(func(outer *torch.Scope) {
			per := make([]*torch.Tensor, 0, len(hidden))
			for _, h := range hidden {
				torch.WithScope(func(inner *torch.Scope) {
					per = append(per, inner.Keep(layerStats(h)))
				})
			}
			vals = torch.Cat(per, 0).ToDevice(torch.CPU).Float64s()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("train: outlier stats: %w", err)
	}
	out := make([]LayerStats, len(hidden))
	for i := range out {
		out[i] = layerStatsOf(i, vals[i*statsPerLayer:(i+1)*statsPerLayer])
	}
	return out, nil
}

// layerStatsOf builds the statistics of hidden state i from its
// statsPerLayer scalars, in the order of LayerStats's float fields.
func layerStatsOf(i int, v []float64) LayerStats {
	return LayerStats{
		Layer: i, XRMS: v[0], Kurtosis: v[1], KurtosisMinusOne: v[2], FeatCorrRMS: v[3],
		BatchCorrMean: v[4], BatchCorrRMS: v[5], MaxMedianRatio: v[6],
	}
}

// values returns the statsPerLayer scalars of l, in layerStatsOf's order.
func (l LayerStats) values() []float64 {
	return []float64{l.XRMS, l.Kurtosis, l.KurtosisMinusOne, l.FeatCorrRMS, l.BatchCorrMean, l.BatchCorrRMS, l.MaxMedianRatio}
}

// layerStats returns the statsPerLayer scalars of one hidden state as a
// float64 vector, in the order of LayerStats.
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

	parts := []*torch.Tensor{xrms, kurt, kurtM1, featCorrRMS, batchMean, batchRMS, mmr}
	for i, p := range parts {
		parts[i] = p.ToDType(torch.Float64)
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
	var vals []float64
	err := torch.Try(func() {
		torch.WithScope(func(outer *torch.Scope) {
			per := make([]*torch.Tensor, 0, len(probs))
			for _, p := range probs {
				torch.WithScope(func(inner *torch.Scope) {
					a := p.Detach().ToDType(statsDType(p.DType()))
					plogp := a.Mul(a.Log())
					plogp = plogp.MaskedFill(plogp.Ne(plogp), 0) // nansum
					per = append(per, inner.Keep(plogp.Sum(false, -1).Neg().Mean(false).ToDType(torch.Float64)))
				})
			}
			vals = torch.Stack(per, 0).ToDevice(torch.CPU).Float64s()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("train: attention entropy: %w", err)
	}
	return vals, nil
}

// Gain is the current value of one gain parameter: a scalar block or
// value/projection gain (Eqs. 5–6 of Simplifying Transformer Blocks), or a
// per-head shaped-attention gain of shape [1, H, 1, 1].
type Gain struct {
	// Name is the parameter's state-dict name, e.g.
	// "transformer.h.0.attn.attn_mat_resid_gain".
	Name string `json:"name"`
	// Values are the entries in row-major order (one per head for the
	// attention-matrix gains).
	Values []float64 `json:"values"`
	// Mean of Values.
	Mean float64 `json:"mean"`
	// Std is the sample standard deviation of Values with Bessel's
	// correction (torch.std, as the original logs the per-head spread),
	// and 0 for a single value.
	Std float64 `json:"std"`
	// Trainable reports whether the gain is optimised.
	Trainable bool `json:"trainable"`
}

// Gains returns every parameter of ps whose name contains "gain", in
// registry order, with one host transfer. (The original logs the MLP
// block resid gain as its norm, i.e. |g|; Values keep the sign.)
func Gains(ps *model.Params) ([]Gain, error) {
	if ps == nil {
		return nil, fmt.Errorf("train: gains: no parameters")
	}
	var gains []Gain
	var ts []*torch.Tensor
	for _, p := range ps.All() {
		if !strings.Contains(p.Name, "gain") || p.Buffer {
			continue
		}
		if p.T == nil || p.T.Freed() {
			return nil, fmt.Errorf("train: gains: %s is freed", p.Name)
		}
		gains = append(gains, Gain{Name: p.Name, Trainable: p.Trainable})
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

// GainValues maps each gain's name to its values: the "gains" object of a
// metrics.jsonl stats record.
func GainValues(gs []Gain) map[string][]float64 {
	m := make(map[string][]float64, len(gs))
	for _, g := range gs {
		m[g.Name] = g.Values
	}
	return m
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
