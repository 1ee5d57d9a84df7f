package runlog

import (
	"encoding/json"
	"math"
	"strconv"

	"clm/internal/jsonnum"
)

// LayerStats are the statistics of one hidden state x [B, T, d] (Sec. 3 and
// App. of "Understanding and Minimising Outlier Features in Transformer
// Training"). With x̄ the hidden state centred across the width (x minus
// its mean over d), r = √mean(x̄²) + 1e-8 (mean over every entry of the
// batch), F = x̄/r flattened to [N, d] (N = B·T tokens), G = FᵀF/N the d×d
// feature Gram matrix and s² = diag G the squared RMS of each neuron:
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
// A LayerStats marshals to a JSON object: "layer" and then the statistics
// under their names (see LayerStatNames); non-finite values (a median of
// zero, a diverged run) marshal as null, and null or an absent statistic
// unmarshals as NaN.
type LayerStats struct {
	// Layer is the index of the hidden state: 0 is the embedding output,
	// i < L the input of block i, L the output of ln_f.
	Layer int
	// XRMS is r = √mean(x̄²) + 1e-8 over the whole batch.
	XRMS float64
	// Kurtosis is the paper's kurtosis mean(s⁴)/mean(s²)².
	Kurtosis float64
	// KurtosisMinusOne is var(diag G) with Bessel's correction: the value
	// the original logs as "hidden_states.{i}.kurtosis".
	KurtosisMinusOne float64
	// FeatCorrRMS is the RMS of the d(d−1) off-diagonal entries of G.
	FeatCorrRMS float64
	// BatchCorrMean is the mean of the N(N−1) off-diagonal entries of the
	// token Gram matrix FFᵀ/d (signal propagation: how alike the
	// representations of different tokens are).
	BatchCorrMean float64
	// BatchCorrRMS is the RMS of the same off-diagonal entries.
	BatchCorrRMS float64
	// MaxMedianRatio is the mean over tokens of max|x̄|/median|x̄| across
	// the width, with torch's lower median (the original uses the centred
	// x̄ here too).
	MaxMedianRatio float64
}

// layerFields is the one place that orders the per-layer statistics: the
// order of Values and LayerStatsOf (the vector train computes), of the keys
// of the JSON object after "layer", and the last part of their TensorBoard
// tags.
var layerFields = [...]struct {
	name  string
	field func(*LayerStats) *float64
}{
	{"x_rms", func(l *LayerStats) *float64 { return &l.XRMS }},
	{"kurtosis", func(l *LayerStats) *float64 { return &l.Kurtosis }},
	{"kurtosis_minus_one", func(l *LayerStats) *float64 { return &l.KurtosisMinusOne }},
	{"feat_corr_rms", func(l *LayerStats) *float64 { return &l.FeatCorrRMS }},
	{"batch_corr_mean", func(l *LayerStats) *float64 { return &l.BatchCorrMean }},
	{"batch_corr_rms", func(l *LayerStats) *float64 { return &l.BatchCorrRMS }},
	{"max_median_ratio", func(l *LayerStats) *float64 { return &l.MaxMedianRatio }},
}

// StatsPerLayer is the number of statistics of a hidden state.
const StatsPerLayer = len(layerFields)

// LayerStatNames returns the JSON names of the statistics, in the order of
// Values.
func LayerStatNames() []string {
	out := make([]string, StatsPerLayer)
	for i, f := range layerFields {
		out[i] = f.name
	}
	return out
}

// Values returns the StatsPerLayer statistics of l in the order of
// LayerStatNames.
func (l LayerStats) Values() []float64 {
	out := make([]float64, StatsPerLayer)
	for i, f := range layerFields {
		out[i] = *f.field(&l)
	}
	return out
}

// LayerStatsOf returns the statistics of hidden state layer from v, its
// StatsPerLayer values in the order of LayerStatNames (Values's inverse).
// It panics when v is shorter.
func LayerStatsOf(layer int, v []float64) LayerStats {
	l := LayerStats{Layer: layer}
	for i, f := range layerFields {
		*f.field(&l) = v[i]
	}
	return l
}

// MarshalJSON implements json.Marshaler: {"layer":…,"x_rms":…,…} in the
// order of LayerStatNames, non-finite values as null.
func (l LayerStats) MarshalJSON() ([]byte, error) {
	b := strconv.AppendInt([]byte(`{"layer":`), int64(l.Layer), 10)
	for _, f := range layerFields {
		v, err := jsonnum.Float(*f.field(&l)).MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = append(append(append(append(b, `,"`...), f.name...), `":`...), v...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON implements json.Unmarshaler: null or absent statistics read
// as NaN, an absent "layer" as 0.
func (l *LayerStats) UnmarshalJSON(b []byte) error {
	v, err := decodeLayer(b, 0)
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// decodeLayer reads the JSON object of one hidden state's statistics; an
// absent or null "layer" is index, absent or null statistics are NaN, null
// is an object without keys.
func decodeLayer(b []byte, index int) (LayerStats, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return LayerStats{}, err
	}
	l := LayerStats{Layer: index}
	if raw, ok := obj["layer"]; ok {
		var layer *int
		if err := json.Unmarshal(raw, &layer); err != nil {
			return LayerStats{}, err
		}
		if layer != nil {
			l.Layer = *layer
		}
	}
	for _, f := range layerFields {
		*f.field(&l) = math.NaN()
		raw, ok := obj[f.name]
		if !ok {
			continue
		}
		var v *jsonnum.Float
		if err := json.Unmarshal(raw, &v); err != nil {
			return LayerStats{}, err
		}
		if v != nil {
			*f.field(&l) = float64(*v)
		}
	}
	return l, nil
}
