// Package quant is int8 post-training quantisation (PTQ) of a trained model
// and its evaluation, after "Understanding and Minimising Outlier Features
// in Transformer Training" (He et al., NeurIPS 2024): outlier features make
// weight-and-activation int8 quantisation fail.
//
// Quantisation is simulated with libtorch's fake quantisation (round to the
// int8 grid, clamp, map back) at the points model.ForwardOptions.Quant
// exposes: the input and effective weight of every linear layer with a
// matrix product, and optionally the residual stream between blocks.
// Embeddings, norms, softmax and the tied head stay full precision.
// scripts/reference/quant_ref.py is the PyTorch reference of every scheme.
package quant

import (
	"fmt"
	"strings"
)

// Weights is how linear weights are quantised: symmetric int8 from the
// absolute maximum, on the grid [−127, 127] with zero point 0.
type Weights string

// Acts is how linear inputs (and, with Scheme.Residual, the residual
// stream) are quantised.
type Acts string

const (
	// WeightsNone keeps weights full precision.
	WeightsNone Weights = "none"
	// WeightsPerTensor is one scale per matrix: max|W|/127.
	WeightsPerTensor Weights = "per_tensor"
	// WeightsPerChannel is one scale per output channel (a column of the
	// [in, out] weight): max_i |W_ij|/127.
	WeightsPerChannel Weights = "per_channel"

	// ActsNone keeps activations full precision.
	ActsNone Acts = "none"
	// ActsStatic is one asymmetric int8 grid per tensor, [−128, 127], from
	// the min–max range that observers record on calibration batches.
	ActsStatic Acts = "static"
	// ActsDynamic is symmetric int8 per token, [−127, 127], from each
	// token's absolute maximum at run time.
	ActsDynamic Acts = "dynamic"
)

// WeightSchemes and ActSchemes list the valid values, in order.
var (
	WeightSchemes = []Weights{WeightsNone, WeightsPerTensor, WeightsPerChannel}
	ActSchemes    = []Acts{ActsNone, ActsStatic, ActsDynamic}
)

// Scheme is one quantisation setting.
type Scheme struct {
	Weights Weights `json:"weights"`
	Acts    Acts    `json:"acts"`
	// Residual also quantises the residual stream after every block, with
	// the Acts scheme (so it needs Acts other than none).
	Residual bool `json:"residual"`
}

// Schemes returns every valid scheme: weights × activations × residual,
// residual only with quantised activations.
func Schemes() []Scheme {
	var out []Scheme
	for _, w := range WeightSchemes {
		for _, a := range ActSchemes {
			for _, r := range []bool{false, true} {
				if s := (Scheme{w, a, r}); s.Validate() == nil {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// ParseWeights parses a weight scheme name.
func ParseWeights(s string) (Weights, error) {
	for _, w := range WeightSchemes {
		if string(w) == s {
			return w, nil
		}
	}
	return "", fmt.Errorf("unknown weight scheme %q (want %s)", s, joinNames(WeightSchemes))
}

// ParseActs parses an activation scheme name.
func ParseActs(s string) (Acts, error) {
	for _, a := range ActSchemes {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown activation scheme %q (want %s)", s, joinNames(ActSchemes))
}

// Validate reports a scheme that names unknown values or quantises the
// residual stream without an activation scheme.
func (s Scheme) Validate() error {
	if _, err := ParseWeights(string(s.Weights)); err != nil {
		return err
	}
	if _, err := ParseActs(string(s.Acts)); err != nil {
		return err
	}
	if s.Residual && s.Acts == ActsNone {
		return fmt.Errorf("quantising the residual stream needs an activation scheme (static or dynamic), not %q", s.Acts)
	}
	return nil
}

// String is e.g. "W per_channel, A static, residual".
func (s Scheme) String() string {
	r := "no residual"
	if s.Residual {
		r = "residual"
	}
	return fmt.Sprintf("W %s, A %s, %s", s.Weights, s.Acts, r)
}

// IsFullPrecision reports whether the scheme quantises nothing.
func (s Scheme) IsFullPrecision() bool {
	return s.Weights == WeightsNone && s.Acts == ActsNone && !s.Residual
}

func joinNames[T ~string](vs []T) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = string(v)
	}
	return strings.Join(parts, ", ")
}
