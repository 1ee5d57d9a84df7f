package quant

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/model"
	"clm/safetensors"
	"clm/stats"
	"clm/torch"
)

// memRows are chunks held in memory.
type memRows [][]int32

func (r memRows) Len() int                         { return len(r) }
func (r memRows) Chunk(i int, dst []int32) []int32 { return append(dst[:0], r[i]...) }

// randomRows draws n rows of T token ids below V, every 11th token the pad
// (0).
func randomRows(seed uint64, n, T, V int) memRows {
	r := rand.New(rand.NewPCG(seed, 3))
	rows := make(memRows, n)
	for i := range rows {
		rows[i] = make([]int32, T)
		for j := range rows[i] {
			rows[i][j] = int32(r.IntN(V))
			if (i*T+j)%11 == 5 {
				rows[i][j] = 0
			}
		}
	}
	return rows
}

// quantModel builds a small model of preset with overrides set, perturbs
// every weight by normal(0, 0.05) (so that zero-initialised Eq. 6 weights
// matter) and plants outlier features: column 5 of wte ×20 and output
// column 9 of every mlp.c_proj ×8.
func quantModel(t *testing.T, preset string, set map[string]any) *model.Model {
	t.Helper()
	all := map[string]any{"n_layer": int64(3), "n_embd": int64(64), "n_head": int64(4), "context_length": int64(32),
		"n_positions": int64(64), "vocab_size": int64(512)}
	for k, v := range set {
		all[k] = v
	}
	cfg, err := model.PresetWith(preset, all)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, model.Options{Device: torch.CPU, Attention: model.AttentionMaterialised})
	if err != nil {
		t.Fatal(err)
	}
	torch.ManualSeed(5)
	if err := m.Init(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	err = torch.Try(func() {
		torch.NoGrad(func() {
			torch.WithScope(func(*torch.Scope) {
				for _, p := range m.Params().Trainable() {
					if strings.HasSuffix(p.Name, ".weight") {
						p.T.CopyFrom(p.T.Add(torch.Randn(p.Shape, torch.Float32, torch.CPU).MulScalar(0.05)))
					}
					switch {
					case p.Name == "transformer.wte.weight":
						col := p.T.Narrow(1, 5, 1)
						col.CopyFrom(col.MulScalar(20))
					case strings.HasSuffix(p.Name, "mlp.c_proj.weight"):
						col := p.T.Narrow(1, 9, 1)
						col.CopyFrom(col.MulScalar(8))
					}
				}
			})
		})
	})
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}

// refCase is one model of the reference comparison.
type refCase struct {
	name, preset string
	set          map[string]any
}

var refCases = []refCase{
	{"pre-ln", "default", nil},
	{"op", "op", nil},
	{"eq6-reparam", "skipless", map[string]any{"val_init_type": "orth", "value_resid_gain": 0.5}},
}

// TestQuantMatchesReference checks every scheme's full-precision and int8
// evaluation loss against scripts/reference/quant_ref.py (fp32, ≤ 1e-5
// relative) on small models with outlier features, among them an Eq. 6
// model whose value and projection weights are the combined W.
func TestQuantMatchesReference(t *testing.T) {
	pyref.Require(t)
	const batch, calibBatches = 4, 2
	calib, valid := randomRows(1, 9, 32, 512), randomRows(2, 10, 32, 512) // short last batches
	schemes := Schemes()
	var jobs []map[string]any
	models := make([]*model.Model, len(refCases))
	for i, c := range refCases {
		m := quantModel(t, c.preset, c.set)
		defer m.Close()
		models[i] = m
		dir := filepath.Join(t.TempDir(), c.name)
		os.MkdirAll(dir, 0o755)
		cfg := m.Config()
		js, err := cfg.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cfg.json"), js, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := torch.SaveSafetensors(filepath.Join(dir, "w.safetensors"), m.State(), nil); err != nil {
			t.Fatal(err)
		}
		writeRows(t, filepath.Join(dir, "batches.safetensors"), calib, valid)
		jobs = append(jobs, map[string]any{"config": filepath.Join(dir, "cfg.json"), "weights": filepath.Join(dir, "w.safetensors"),
			"batches": filepath.Join(dir, "batches.safetensors"), "batch": batch, "calib_batches": calibBatches, "pad_id": 0,
			"schemes": schemes})
	}
	out := strings.Split(strings.TrimSpace(string(pyref.RunJobs(t, "quant_ref.py", jobs))), "\n")
	if len(out) != len(refCases) {
		t.Fatalf("reference printed %d lines for %d models", len(out), len(refCases))
	}
	for i, c := range refCases {
		var ref struct {
			FP   float64   `json:"fp"`
			Int8 []float64 `json:"int8"`
		}
		if err := json.Unmarshal([]byte(out[i]), &ref); err != nil {
			t.Fatal(err)
		}
		for j, s := range schemes {
			r, err := Evaluate(models[i], calib, valid, Options{Scheme: s, CalibBatches: calibBatches, Batch: batch, Pad: model.PadToken(0)})
			if err != nil {
				t.Fatalf("%s %v: %v", c.name, s, err)
			}
			checkRel(t, c.name+" fp "+s.String(), r.FP.Loss, ref.FP)
			checkRel(t, c.name+" int8 "+s.String(), r.Int8.Loss, ref.Int8[j])
			if !s.IsFullPrecision() && r.Int8.Loss == r.FP.Loss {
				t.Errorf("%s %v: int8 loss equals the full-precision loss %v", c.name, s, r.FP.Loss)
			}
			t.Logf("%-12s %-40v fp %.6f int8 %.6f (ref %.6f) Δ %+.5f", c.name, s, r.FP.Loss, r.Int8.Loss, ref.Int8[j], r.Degradation)
		}
	}
}

func checkRel(t *testing.T, what string, got, want float64) {
	t.Helper()
	if e := math.Abs(got-want) / math.Abs(want); !(e <= 1e-5) {
		t.Errorf("%s: loss %.8f, reference %.8f (relative error %.2g > 1e-5)", what, got, want, e)
	}
}

// writeRows saves the calibration and validation rows as int64 [N, T].
func writeRows(t *testing.T, path string, calib, valid memRows) {
	t.Helper()
	flat := func(r memRows) []int64 {
		var out []int64
		for _, row := range r {
			for _, v := range row {
				out = append(out, int64(v))
			}
		}
		return out
	}
	T := int64(len(calib[0]))
	err := safetensors.Write(path, []safetensors.Tensor{
		safetensors.NewTensor("calib", []int64{int64(len(calib)), T}, flat(calib)),
		safetensors.NewTensor("valid", []int64{int64(len(valid)), T}, flat(valid)),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// TestKurtosisIsOutlierStats checks the per-layer kurtosis against
// stats.OutlierStats on the same block outputs (one batch: the model's
// hidden states 1..L−1 are the outputs of blocks 0..L−2).
func TestKurtosisIsOutlierStats(t *testing.T) {
	m := quantModel(t, "default", nil)
	defer m.Close()
	rows := randomRows(3, 6, 32, 512)
	r, err := Evaluate(m, rows, rows, Options{Scheme: Scheme{Weights: WeightsPerChannel, Acts: ActsDynamic}, Batch: 6})
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	ids := torch.FromInt64(flatten(rows), 6, 32)
	var out model.Output
	torch.NoGrad(func() { out = m.Forward(ids, model.ForwardOptions{Hidden: true}) })
	ls, err := stats.OutlierStats(out.Hidden)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(r.Layers); i++ {
		want := ls[i+1].Kurtosis
		if e := math.Abs(r.Layers[i].Kurtosis-want) / want; e > 1e-5 {
			t.Errorf("block %d: kurtosis %.6g, stats.OutlierStats %.6g", i, r.Layers[i].Kurtosis, want)
		}
		t.Logf("block %d: kurtosis %.4g, int8 rel error %.3g", i, r.Layers[i].Kurtosis, r.Layers[i].Int8RelError)
	}
}

func flatten(rows memRows) []int64 {
	var out []int64
	for _, r := range rows {
		for _, v := range r {
			out = append(out, int64(v))
		}
	}
	return out
}
