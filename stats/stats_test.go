package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/runlog"
	"clm/torch"
)

// hiddenCase is a fixed hidden state [B, T, d] built from a seeded RNG.
type hiddenCase struct {
	name    string
	b, t, d int
	dtype   torch.DType
	// build fills x (row-major [B, T, d]) from r.
	build func(r *rand.Rand, x []float64, b, t, d int)
	// tol is the relative tolerance against PyTorch.
	tol float64
}

func gaussian(r *rand.Rand, x []float64, _, _, _ int) {
	for i := range x {
		x[i] = r.NormFloat64()
	}
}

// plantOutliers scales two neurons by 25 and 12 and shifts every token by
// a random offset (which centring removes).
func plantOutliers(r *rand.Rand, x []float64, b, t, d int) {
	for n := 0; n < b*t; n++ {
		off := 3 * r.NormFloat64()
		for j := 0; j < d; j++ {
			v := r.NormFloat64()
			switch j {
			case 3:
				v *= 25
			case d - 5:
				v *= 12
			}
			x[n*d+j] = v + off
		}
	}
}

// collapsed gives every token nearly the same representation (rank
// collapse): batch correlations near 1.
func collapsed(r *rand.Rand, x []float64, b, t, d int) {
	common := make([]float64, d)
	for j := range common {
		common[j] = r.NormFloat64()
	}
	for n := 0; n < b*t; n++ {
		for j := 0; j < d; j++ {
			x[n*d+j] = common[j] + 0.1*r.NormFloat64()
		}
	}
}

var hiddenCases = []hiddenCase{
	{"gaussian", 2, 8, 16, torch.Float64, gaussian, 1e-6},
	{"planted-outliers", 4, 16, 32, torch.Float64, plantOutliers, 1e-6},
	{"rank-collapse", 2, 16, 24, torch.Float64, collapsed, 1e-6},
	{"odd-width", 3, 5, 7, torch.Float64, plantOutliers, 1e-6},
	// float32: both sides run libtorch float32 kernels but reduce in a
	// different order (masked sums here, boolean indexing there); the
	// largest difference seen is 3.5e-7 (batch_corr_mean, a mean near 0).
	{"planted-outliers-f32", 4, 16, 32, torch.Float32, plantOutliers, 1e-6},
}

func (c hiddenCase) tensor(seed uint64) *torch.Tensor {
	r := rand.New(rand.NewPCG(seed, 99))
	x := make([]float64, c.b*c.t*c.d)
	c.build(r, x, c.b, c.t, c.d)
	var out *torch.Tensor
	torch.WithScope(func(s *torch.Scope) {
		out = s.Keep(torch.FromFloat64(x, int64(c.b), int64(c.t), int64(c.d)).ToDType(c.dtype))
	})
	return out
}

func relClose(got, want, tol float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), 1e-12)
}

// refFloat decodes a JSON number or null (NaN).
type refFloat float64

func (f *refFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = refFloat(math.NaN())
		return nil
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*f = refFloat(v)
	return err
}

// TestOutlierStatsMatchPyTorch compares every statistic with
// scripts/reference/stats_check.py on fixed hidden states, with the token
// Gram matrix in one chunk and in many, and checks the exact relation
// between the paper's kurtosis and the original's logged value.
func TestOutlierStatsMatchPyTorch(t *testing.T) {
	pyref.Require(t)
	for _, chunk := range []int64{batchGramChunkElems, 100} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			defer func(old int64) { batchGramChunkElems = old }(batchGramChunkElems)
			batchGramChunkElems = chunk
			got, path := outlierStatsOfCases(t)
			var ref map[string]map[string]refFloat
			if err := json.Unmarshal(pyref.Run(t, "stats_check.py", "outlier", path), &ref); err != nil {
				t.Fatal(err)
			}
			for i, c := range hiddenCases {
				checkOutlierStats(t, c, i, got[i], ref[c.name], chunk == 100)
			}
			// The planted outliers must stand out.
			if got[1].Kurtosis < 5*got[0].Kurtosis {
				t.Errorf("planted outliers: kurtosis %.3g not ≫ gaussian %.3g", got[1].Kurtosis, got[0].Kurtosis)
			}
			if got[2].BatchCorrMean < 0.9 {
				t.Errorf("rank collapse: batch_corr_mean %.3g, want near 1", got[2].BatchCorrMean)
			}
		})
	}
}

// outlierStatsOfCases computes OutlierStats of the hidden states of
// hiddenCases, checking that no tensor leaks, and saves those states for
// the reference: it returns the statistics and the safetensors file.
func outlierStatsOfCases(t *testing.T) ([]runlog.LayerStats, string) {
	t.Helper()
	start := torch.LiveTensors()
	var hidden []*torch.Tensor
	var named []torch.Named
	for i, c := range hiddenCases {
		x := c.tensor(uint64(i + 1))
		hidden = append(hidden, x)
		named = append(named, torch.Named{Name: c.name, Tensor: x})
	}
	path := filepath.Join(t.TempDir(), "hidden.safetensors")
	if err := torch.SaveSafetensors(path, named, nil); err != nil {
		t.Fatal(err)
	}
	got, err := OutlierStats(hidden)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range hidden {
		x.Free()
	}
	if n := torch.LiveTensors(); n != start {
		t.Errorf("LiveTensors = %d after OutlierStats, want %d", n, start)
	}
	return got, path
}

// checkOutlierStats compares the statistics g of case c (hidden state i)
// with the reference's r, and checks the exact relation between the
// paper's kurtosis and the original's logged value; logStats logs them.
func checkOutlierStats(t *testing.T, c hiddenCase, i int, g runlog.LayerStats, r map[string]refFloat, logStats bool) {
	t.Helper()
	if g.Layer != i {
		t.Errorf("%s: Layer = %d, want %d", c.name, g.Layer, i)
	}
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"x_rms", g.XRMS}, {"kurtosis", g.Kurtosis}, {"kurtosis_minus_one", g.KurtosisMinusOne},
		{"feat_corr_rms", g.FeatCorrRMS}, {"batch_corr_mean", g.BatchCorrMean},
		{"batch_corr_rms", g.BatchCorrRMS}, {"max_median_ratio", g.MaxMedianRatio},
	} {
		want, ok := r[f.key]
		if !ok {
			t.Fatalf("%s: reference has no %s", c.name, f.key)
		}
		if !relClose(f.v, float64(want), c.tol) {
			t.Errorf("%s %s = %.12g, PyTorch %.12g (rel %.2g)", c.name, f.key, f.v, float64(want),
				math.Abs(f.v-float64(want))/math.Abs(float64(want)))
		}
	}
	// Exact relation: kurtosis = 1 + (d−1)/d · var_bessel(s²)/mean(s²)²,
	// with mean(s²) = ((r − 1e-8)/r)².
	d := float64(c.d)
	m := math.Pow((g.XRMS-XRMSEps)/g.XRMS, 2)
	if !relClose(m, float64(r["s2_mean"]), c.tol) {
		t.Errorf("%s: mean(s²) from x_rms = %.15g, PyTorch %.15g", c.name, m, float64(r["s2_mean"]))
	}
	fromOrig := 1 + (d-1)/d*g.KurtosisMinusOne/(m*m)
	idTol := 1e-12
	if c.dtype == torch.Float32 {
		idTol = 1e-5
	}
	if !relClose(g.Kurtosis, fromOrig, idTol) {
		t.Errorf("%s: kurtosis %.15g != 1 + (d-1)/d·orig/mean(s²)² = %.15g", c.name, g.Kurtosis, fromOrig)
	}
	if logStats {
		t.Logf("%-22s d=%-3d kurtosis %9.4f  orig %9.4f  1+(d-1)/d·orig %9.4f  feat_corr_rms %.4f  batch_corr mean %.4f rms %.4f  max/median %.3f",
			c.name, c.d, g.Kurtosis, g.KurtosisMinusOne, 1+(d-1)/d*g.KurtosisMinusOne, g.FeatCorrRMS, g.BatchCorrMean, g.BatchCorrRMS, g.MaxMedianRatio)
	}
}

// TestAttentionEntropyMatchesPyTorch compares the entropy of causal softmax
// probabilities (zeros above the diagonal) and of one-hot rows with the
// reference's nansum formula.
func TestAttentionEntropyMatchesPyTorch(t *testing.T) {
	pyref.Require(t)
	start := torch.LiveTensors()
	cases := []struct {
		name        string
		b, h, tt    int64
		scale       float64
		dtype       torch.DType
		tol         float64
		wantExactly float64 // checked when ≥ 0
	}{
		{"causal-f64", 2, 3, 9, 1, torch.Float64, 1e-9, -1},
		{"peaked-f64", 1, 2, 6, 40, torch.Float64, 1e-9, -1},
		{"causal-f32", 2, 4, 16, 2, torch.Float32, 1e-6, -1},
		{"one-hot", 1, 1, 5, 1e4, torch.Float64, 0, 0},
	}
	var probs []*torch.Tensor
	var named []torch.Named
	torch.WithScope(func(s *torch.Scope) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, c := range cases {
			n := c.b * c.h * c.tt * c.tt
			v := make([]float64, n)
			for i := range v {
				v[i] = c.scale * r.NormFloat64()
			}
			logits := torch.FromFloat64(v, c.b, c.h, c.tt, c.tt)
			mask := torch.Ones([]int64{c.tt, c.tt}, torch.Float64, torch.CPU).Triu(1).GtScalar(0.5)
			p := s.Keep(logits.MaskedFill(mask, math.Inf(-1)).Softmax(-1).ToDType(c.dtype))
			probs = append(probs, p)
			named = append(named, torch.Named{Name: c.name, Tensor: p})
		}
	})
	path := filepath.Join(t.TempDir(), "probs.safetensors")
	if err := torch.SaveSafetensors(path, named, nil); err != nil {
		t.Fatal(err)
	}
	got, err := AttentionEntropy(probs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		p.Free()
	}
	if n := torch.LiveTensors(); n != start {
		t.Errorf("LiveTensors = %d after AttentionEntropy, want %d", n, start)
	}
	var ref map[string]refFloat
	if err := json.Unmarshal(pyref.Run(t, "stats_check.py", "entropy", path), &ref); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		want := float64(ref[c.name])
		t.Logf("%-10s entropy %.9f  PyTorch %.9f", c.name, got[i], want)
		if math.IsNaN(got[i]) || !relClose(got[i], want, math.Max(c.tol, 1e-15)) && math.Abs(got[i]-want) > 1e-12 {
			t.Errorf("%s: entropy %.12g, PyTorch %.12g", c.name, got[i], want)
		}
		if c.wantExactly >= 0 && math.Abs(got[i]-c.wantExactly) > 1e-9 {
			t.Errorf("%s: entropy %.12g, want %g", c.name, got[i], c.wantExactly)
		}
	}
}

// TestStatsErrors checks that bad inputs are errors, not panics, and leak
// nothing.
func TestStatsErrors(t *testing.T) {
	start := torch.LiveTensors()
	freed := torch.Zeros([]int64{2, 3, 4}, torch.Float32, torch.CPU)
	freed.Free()
	cases := []struct {
		name  string
		shape []int64
		dtype torch.DType
		free  bool
		want  string
	}{
		{"1-D", []int64{8}, torch.Float32, false, "want [..., d]"},
		{"width-1", []int64{2, 3, 1}, torch.Float32, false, "want [..., d]"},
		{"one-token", []int64{1, 1, 8}, torch.Float32, false, "at least 2 tokens"},
		{"integer", []int64{2, 3, 4}, torch.Int64, false, "not floating point"},
		{"freed", nil, 0, true, "nil or freed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := freed
			if !c.free {
				x = torch.Zeros(c.shape, c.dtype, torch.CPU)
				defer x.Free()
			}
			_, err := OutlierStats([]*torch.Tensor{x})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("OutlierStats error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := AttentionEntropy([]*torch.Tensor{freed}); err == nil {
		t.Error("AttentionEntropy of a freed tensor: no error")
	}
	if n := torch.LiveTensors(); n != start {
		t.Errorf("LiveTensors = %d, want %d", n, start)
	}
}
