package quant

import (
	"math"
	"testing"

	"clm/torch"
)

// plantedInput is a layer input [N, d] of standard normal features whose
// channel c is an outlier feature: 100·z² per token (z standard normal),
// so huge on average and heavy-tailed across tokens, as outlier features
// are.
func plantedInput(seed uint64, N, d, c int64) *torch.Tensor {
	torch.ManualSeed(seed)
	x := torch.Randn([]int64{N, d}, torch.Float32, torch.CPU)
	col := x.Narrow(1, c, 1)
	col.CopyFrom(torch.Randn([]int64{N, 1}, torch.Float32, torch.CPU).Square().MulScalar(100))
	return x
}

// TestPlantedOutlier checks the theory on a linear layer whose input has
// one huge channel that the layer ignores (its weight row is 0): the
// outlier still sets the int8 grid of the other channels, so per-tensor
// static quantisation (one grid for all tokens, from the calibration
// range) ruins the layer output, while per-token dynamic quantisation,
// whose grid follows each token's own maximum, degrades it far less.
// Without the outlier both are accurate.
func TestPlantedOutlier(t *testing.T) {
	const N, d, out, c = 512, 64, 32, 7
	cases := []struct {
		name    string
		outlier bool
		check   func(static, dynamic float64) bool
		want    string
	}{
		{"outlier channel", true, func(s, dy float64) bool { return s > 0.6 && dy < s/2 }, "static > 0.6 and dynamic < static/2"},
		{"no outlier", false, func(s, dy float64) bool { return s < 0.03 && dy < 0.03 }, "both < 0.03"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := torch.NewScope()
			defer s.Close()
			calib, x := plantedInput(1, N, d, c), plantedInput(2, N, d, c)
			if !tc.outlier {
				calib, x = calib.Narrow(1, 0, c), x.Narrow(1, 0, c)
			}
			torch.ManualSeed(3)
			w := torch.Randn([]int64{x.Size(1), out}, torch.Float32, torch.CPU).DivScalar(math.Sqrt(d))
			if tc.outlier {
				row := w.Narrow(0, c, 1)
				row.CopyFrom(row.MulScalar(0)) // the layer ignores the outlier channel
			}
			obs := &observer{ranges: Ranges{}}
			obs.Linear("layer", calib, w)
			errs := map[Acts]float64{}
			for _, a := range []Acts{ActsStatic, ActsDynamic} {
				q, err := NewQuantizer(Scheme{Weights: WeightsNone, Acts: a}, obs.ranges)
				if err != nil {
					t.Fatal(err)
				}
				xq, wq := q.Linear("layer", x, w)
				y := x.Matmul(w)
				errs[a] = y.Sub(xq.Matmul(wq)).Norm(2, false).Item() / y.Norm(2, false).Item()
			}
			t.Logf("relative error of the layer output: static per-tensor %.4f, dynamic per-token %.4f", errs[ActsStatic], errs[ActsDynamic])
			if !tc.check(errs[ActsStatic], errs[ActsDynamic]) {
				t.Errorf("static %.4f, dynamic %.4f: want %s", errs[ActsStatic], errs[ActsDynamic], tc.want)
			}
		})
	}
}

// TestSchemes checks parsing and validation, table-driven.
func TestSchemes(t *testing.T) {
	cases := []struct {
		s  Scheme
		ok bool
	}{
		{Scheme{WeightsNone, ActsNone, false}, true},
		{Scheme{WeightsPerChannel, ActsStatic, true}, true},
		{Scheme{WeightsPerTensor, ActsDynamic, false}, true},
		{Scheme{WeightsNone, ActsNone, true}, false}, // residual needs an activation scheme
		{Scheme{"per_row", ActsNone, false}, false},
		{Scheme{WeightsNone, "per_channel", false}, false},
	}
	for _, c := range cases {
		if err := c.s.Validate(); (err == nil) != c.ok {
			t.Errorf("%v: Validate = %v, want ok %v", c.s, err, c.ok)
		}
	}
	if n := len(Schemes()); n != 15 {
		t.Errorf("%d valid schemes, want 3 weights × (none + 2 activations × 2 residual) = 15", n)
	}
	if _, err := NewQuantizer(Scheme{WeightsNone, ActsStatic, false}, nil); err == nil {
		t.Error("static activations without ranges accepted")
	}
}

// TestAffine checks the static grid of a few ranges.
func TestAffine(t *testing.T) {
	cases := []struct {
		r     Range
		scale float64
		zp    int64
	}{
		{Range{-1, 1}, 2.0 / 255, 0},   // −128 − round(−127.5) = −128 + 128 (ties to even)
		{Range{0, 2.55}, 0.01, -128},   // all positive: 0 at the grid's bottom
		{Range{1, 2.55}, 0.01, -128},   // widened to contain 0
		{Range{-2.55, 0}, 0.01, 127},   // all negative
		{Range{0, 0}, MinScale, -128},  // all zero
		{Range{-0.5, 2.05}, 0.01, -78}, // −128 − (−50)
	}
	for _, c := range cases {
		s, zp := c.r.Affine()
		if math.Abs(s-c.scale) > 1e-15 || zp != c.zp {
			t.Errorf("%+v: scale %v zero point %d, want %v %d", c.r, s, zp, c.scale, c.zp)
		}
	}
}
