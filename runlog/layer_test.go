package runlog

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"testing"
)

// TestLayerStatsJSON checks the field names and that non-finite values
// round-trip through null as NaN.
func TestLayerStatsJSON(t *testing.T) {
	s := LayerStats{Layer: 2, XRMS: 1.5, Kurtosis: 3, KurtosisMinusOne: 2, FeatCorrRMS: 0.1,
		BatchCorrMean: 0.2, BatchCorrRMS: 0.3, MaxMedianRatio: math.Inf(1)}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"layer":2,"x_rms":1.5,"kurtosis":3,"kurtosis_minus_one":2,"feat_corr_rms":0.1,"batch_corr_mean":0.2,"batch_corr_rms":0.3,"max_median_ratio":null}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	var back LayerStats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(back.MaxMedianRatio) || back.Kurtosis != 3 || back.Layer != 2 {
		t.Errorf("round trip: %+v", back)
	}
}

// TestLayerStatsDecode checks the reading of partial and malformed layer
// objects.
func TestLayerStatsDecode(t *testing.T) {
	cases := []struct {
		name, json string
		index      int
		want       LayerStats // NaN compares equal to NaN here
		bad        bool
	}{
		{name: "absent layer is the index", json: `{"kurtosis":2}`, index: 4, want: nanStats(4, func(l *LayerStats) { l.Kurtosis = 2 })},
		{name: "null layer is the index", json: `{"layer":null,"x_rms":1}`, index: 1, want: nanStats(1, func(l *LayerStats) { l.XRMS = 1 })},
		{name: "null object", json: `null`, index: 3, want: nanStats(3, nil)},
		{name: "null statistic", json: `{"layer":0,"batch_corr_rms":null,"feat_corr_rms":0.5}`, want: nanStats(0, func(l *LayerStats) { l.FeatCorrRMS = 0.5 })},
		{name: "fractional layer", json: `{"layer":1.5}`, bad: true},
		{name: "string statistic", json: `{"kurtosis":"x"}`, bad: true},
		{name: "not an object", json: `[1]`, bad: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeLayer([]byte(c.json), c.index)
			if c.bad {
				if err == nil {
					t.Errorf("decoded %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Layer != c.want.Layer || !slices.EqualFunc(got.Values(), c.want.Values(), sameFloat) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// nanStats returns the statistics of layer, all NaN but those set.
func nanStats(layer int, set func(*LayerStats)) LayerStats {
	v := make([]float64, StatsPerLayer)
	for i := range v {
		v[i] = math.NaN()
	}
	l := LayerStatsOf(layer, v)
	if set != nil {
		set(&l)
	}
	return l
}

// sameFloat reports whether a and b are equal or both NaN.
func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

// TestLayerFields checks that the one list of statistics names every
// float field of LayerStats once, and that Values and LayerStatsOf invert
// each other in the order of LayerStatNames.
func TestLayerFields(t *testing.T) {
	typ := reflect.TypeFor[LayerStats]()
	floats := 0
	for f := range typ.Fields() {
		if f.Type.Kind() == reflect.Float64 {
			floats++
		}
	}
	if floats != StatsPerLayer || len(LayerStatNames()) != StatsPerLayer {
		t.Fatalf("%d float fields, %d names, StatsPerLayer %d", floats, len(LayerStatNames()), StatsPerLayer)
	}
	v := make([]float64, StatsPerLayer)
	for i := range v {
		v[i] = float64(i + 1)
	}
	l := LayerStatsOf(7, v)
	seen := map[float64]bool{}
	for f := range typ.Fields() {
		if f.Type.Kind() == reflect.Float64 {
			seen[reflect.ValueOf(l).FieldByIndex(f.Index).Float()] = true
		}
	}
	if len(seen) != StatsPerLayer || l.Layer != 7 || !slices.Equal(l.Values(), v) {
		t.Errorf("LayerStatsOf(7, %v) = %+v (%d distinct fields); Values %v", v, l, len(seen), l.Values())
	}
	want := []string{"x_rms", "kurtosis", "kurtosis_minus_one", "feat_corr_rms", "batch_corr_mean", "batch_corr_rms", "max_median_ratio"}
	if !slices.Equal(LayerStatNames(), want) {
		t.Errorf("LayerStatNames() = %v, want %v", LayerStatNames(), want)
	}
	if l.XRMS != 1 || l.MaxMedianRatio != 7 {
		t.Errorf("LayerStatsOf: x_rms %g, max_median_ratio %g; want 1 and 7 (the vector's order)", l.XRMS, l.MaxMedianRatio)
	}
}
