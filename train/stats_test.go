package train

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"clm/model"
	"clm/runlog"
	"clm/stats"
	"clm/torch"
)

// TestGains sets the gains of a small skipless model and reads them back.
func TestGains(t *testing.T) {
	cfg, err := model.PresetWith("skipless", map[string]any{
		"n_layer": int64(2), "n_embd": int64(16), "n_head": int64(4), "context_length": int64(8),
		"n_positions": int64(8), "vocab_size": int64(32),
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, model.Options{DType: torch.Float32})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := torch.LiveTensors()
	heads := []float64{0.5, 1, 1.5, 2}
	var names []string
	torch.WithScope(func(*torch.Scope) {
		for _, p := range m.Params().All() {
			if !strings.Contains(p.Name, "gain") {
				continue
			}
			names = append(names, p.Name)
			if p.T.Numel() == 4 {
				p.T.CopyFrom(torch.FromFloat64(heads, p.Shape...))
			} else {
				p.T.Fill(-0.25)
			}
		}
	})
	gs, err := Gains(m.Params())
	if err != nil {
		t.Fatal(err)
	}
	if n := torch.LiveTensors(); n != start {
		t.Errorf("LiveTensors = %d after Gains, want %d", n, start)
	}
	if len(gs) != len(names) || len(gs) == 0 {
		t.Fatalf("%d gains, want %d (%v)", len(gs), len(names), names)
	}
	sawHeads := false
	for i, g := range gs {
		if g.Name != names[i] {
			t.Errorf("gain %d is %s, want %s (registry order)", i, g.Name, names[i])
		}
		switch len(g.Values) {
		case 4:
			sawHeads = true
			// sample std of 0.5, 1, 1.5, 2 = √(1.25/3)
			if g.Mean != 1.25 || math.Abs(g.Std-math.Sqrt(1.25/3)) > 1e-12 || g.Values[2] != 1.5 {
				t.Errorf("%s: %+v", g.Name, g)
			}
		case 1:
			if g.Values[0] != -0.25 || g.Mean != -0.25 || g.Std != 0 {
				t.Errorf("%s: %+v", g.Name, g)
			}
		default:
			t.Errorf("%s: %d values", g.Name, len(g.Values))
		}
	}
	if !sawHeads {
		t.Error("no per-head gain in the skipless preset")
	}
	if v := runlog.GainValues(gs); len(v[gs[0].Name]) != len(gs[0].Values) {
		t.Errorf("GainValues: %v", v)
	}
	t.Logf("%d gains, e.g. %s = %v (mean %.3g std %.3g)", len(gs), gs[len(gs)-1].Name, gs[len(gs)-1].Values, gs[len(gs)-1].Mean, gs[len(gs)-1].Std)
}

// TestStatsOfModelForward runs the statistics on a real forward pass of a
// small model: L+1 hidden states, L attention maps, finite values, no
// leaks, and no graph kept alive through the inputs.
func TestStatsOfModelForward(t *testing.T) {
	for _, preset := range []string{"default", "skipless", "op"} {
		t.Run(preset, func(t *testing.T) {
			cfg, err := model.PresetWith(preset, map[string]any{
				"n_layer": int64(3), "n_embd": int64(32), "n_head": int64(4), "context_length": int64(16),
				"n_positions": int64(16), "vocab_size": int64(64),
			})
			if err != nil {
				t.Fatal(err)
			}
			m := seededModel(t, cfg, torch.CPU, 0)
			defer m.Close()
			start := torch.LiveTensors()
			var ls []runlog.LayerStats
			var ent []float64
			torch.WithScope(func(*torch.Scope) {
				ids := make([]int64, 4*16)
				for i := range ids {
					ids[i] = int64(i*7) % 64
				}
				out := m.Forward(torch.FromInt64(ids, 4, 16), model.ForwardOptions{Hidden: true, Attention: true})
				if ls, err = stats.OutlierStats(out.Hidden); err != nil {
					t.Fatal(err)
				}
				if ent, err = stats.AttentionEntropy(out.Attention); err != nil {
					t.Fatal(err)
				}
			})
			if n := torch.LiveTensors(); n != start {
				t.Errorf("LiveTensors = %d, want %d", n, start)
			}
			if len(ls) != cfg.NLayer+1 || len(ent) != cfg.NLayer {
				t.Fatalf("%d layer stats and %d entropies for %d layers", len(ls), len(ent), cfg.NLayer)
			}
			for _, s := range ls {
				for _, v := range []float64{s.XRMS, s.Kurtosis, s.KurtosisMinusOne, s.FeatCorrRMS, s.BatchCorrMean, s.BatchCorrRMS, s.MaxMedianRatio} {
					if math.IsNaN(v) || math.IsInf(v, 0) {
						t.Errorf("layer %d: non-finite statistic in %+v", s.Layer, s)
						break
					}
				}
			}
			for i, e := range ent {
				// Between 0 and log T (uniform over all 16 keys).
				if !(e >= 0 && e <= math.Log(16)+1e-6) {
					t.Errorf("layer %d: entropy %g", i, e)
				}
			}
			t.Logf("kurtosis by layer %v; entropy %v", kurtoses(ls), ent)
		})
	}
}

func kurtoses(ls []runlog.LayerStats) []string {
	out := make([]string, len(ls))
	for i, s := range ls {
		out[i] = fmt.Sprintf("%.3f", s.Kurtosis)
	}
	return out
}
