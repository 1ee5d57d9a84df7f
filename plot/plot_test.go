package plot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/runlog"
)

// writeRun writes a synthetic run folder: train and eval records, stats
// records built from runlog.LayerStats (so the JSON names are the ones the
// trainer writes), per-head gains, and the given extra raw lines.
func writeRun(t *testing.T, dir, name string, layers, steps int, outlier float64, extra ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if name != "" {
		cfg := fmt.Sprintf("name = %q\n\n[model]\nn_layer = %d\n", name, layers) // as train writes it
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	put := func(v any) {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	for s := 1; s <= steps; s++ {
		step := s * 100
		loss := 1.2 + 6/math.Sqrt(float64(s))
		put(map[string]any{"kind": "train", "step": step, "time": 1.7e9 + float64(s), "loss": loss,
			"lr": 1e-3, "grad_norm": 0.9, "tokens_per_s": 12000, "tokens": step * 16384})
		if s%5 == 0 {
			put(map[string]any{"kind": "eval", "step": step, "time": 1.7e9 + float64(s), "eval_loss": loss - 0.05})
		}
		var ls []runlog.LayerStats
		var ent []float64
		gains := map[string][]float64{}
		for l := 0; l <= layers; l++ {
			k := 1 + outlier*float64(s*l)/float64(steps*layers)
			ls = append(ls, runlog.LayerStats{Layer: l, XRMS: 1 + float64(l), Kurtosis: k, KurtosisMinusOne: k - 1,
				FeatCorrRMS: 0.1, BatchCorrMean: 0.2, BatchCorrRMS: 0.3, MaxMedianRatio: 3 + 10*k})
			if l < layers {
				ent = append(ent, 2-float64(s)/float64(steps)*float64(l+1)/float64(layers))
				gains[fmt.Sprintf("transformer.h.%d.mlp_block_resid_gain", l)] = []float64{0.1 + 0.01*float64(s)}
				gains[fmt.Sprintf("transformer.h.%d.attn.attn_mat_resid_gain", l)] = []float64{1, 1.1, 0.9, 1 + 0.02*float64(s)}
			}
		}
		if s == steps {
			ls[0].MaxMedianRatio = math.Inf(1) // marshals as null
		}
		put(map[string]any{"kind": "stats", "step": step, "time": 1.7e9, "layers": ls, "attn_entropy": ent, "gains": gains})
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFigures draws two synthetic runs (one with malformed lines) in PNG
// and SVG and checks every file.
func TestFigures(t *testing.T) {
	root := t.TempDir()
	runA, runB := filepath.Join(root, "pre-ln"), filepath.Join(root, "sas-p")
	writeRun(t, runA, "Pre-LN", 4, 30, 40)
	writeRun(t, runB, "", 6, 20, 2,
		`{"kind":"train","step":`, // truncated
		`not json at all`,
		`{"kind":"eval","time":1}`,                    // no step
		`{"kind":"train","step":5}`,                   // no loss
		`{"kind":"checkpoint","step":100,"path":"x"}`, // another kind: ignored
		``)

	// clm quant's reports: the int8 bar chart.
	for i, run := range []string{runA, runB} {
		fp, q := 2+0.1*float64(i), 3-0.8*float64(i)
		r := &runlog.Quant{Scheme: runlog.QuantScheme{Weights: "per_channel", Acts: "static"},
			FP: runlog.QuantEval{Loss: fp, Perplexity: math.Exp(fp)}, Int8: runlog.QuantEval{Loss: q, Perplexity: math.Exp(q)}}
		if err := runlog.WriteQuant(run, r); err != nil {
			t.Fatal(err)
		}
	}
	// A second scheme on one run only: its bar on the other reads "not run".
	dyn := &runlog.Quant{Scheme: runlog.QuantScheme{Weights: "per_tensor", Acts: "dynamic"},
		FP: runlog.QuantEval{Loss: 2, Perplexity: math.Exp(2)}, Int8: runlog.QuantEval{Loss: 2.4, Perplexity: math.Exp(2.4)}}
	if err := runlog.WriteQuant(runA, dyn); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)

	out := filepath.Join(root, "figs")
	if d := os.Getenv("CLM_PLOT_KEEP"); d != "" {
		out = d
	}
	paths, err := Figures([]string{runA, runB}, out, []string{"png", "svg"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d files: %s", len(paths), strings.Join(names(paths), " "))
	want := []string{"loss", "of-kurtosis", "of-quant"} // two runs with statistics and quant.json
	for _, slug := range []string{"Pre-LN", "sas-p"} {
		for _, kind := range []string{"kurtosis", "gains", "max-median", "entropy"} {
			want = append(want, kind+"-"+slug)
		}
	}
	if len(paths) != 2*len(want) {
		t.Errorf("%d files, want %d", len(paths), 2*len(want))
	}
	have := map[string]bool{}
	for _, p := range paths {
		have[filepath.Base(p)] = true
		checkFigureFile(t, p)
	}
	for _, w := range want {
		for _, ext := range []string{".png", ".svg"} {
			if !have[w+ext] {
				t.Errorf("missing %s%s", w, ext)
			}
		}
	}
	if !strings.Contains(logs.String(), "count=4") || !strings.Contains(logs.String(), filepath.Join(runB, MetricsFile)) {
		t.Errorf("warning log %q: want the count of 4 malformed lines and the file", logs.String())
	}
	if strings.Contains(logs.String(), runA) {
		t.Errorf("warning for the clean run: %q", logs.String())
	}
	t.Logf("warning: %s", strings.TrimSpace(logs.String()))
}

// checkFigureFile checks that the figure at p is a plausible PNG (decodes,
// at least 400×300 pixels and 10 kB) or SVG (an <svg> element, at least
// 5 kB).
func checkFigureFile(t *testing.T, p string) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	switch filepath.Ext(p) {
	case ".png":
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		bnd := img.Bounds()
		if bnd.Dx() < 400 || bnd.Dy() < 300 || st.Size() < 10_000 {
			t.Errorf("%s: %dx%d, %d bytes: too small", p, bnd.Dx(), bnd.Dy(), st.Size())
		}
	case ".svg":
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Line figures draw hundreds of points; the int8 bar chart of two
		// runs draws four bars and their labels.
		minSize := 5_000
		if strings.HasPrefix(filepath.Base(p), "of-quant.") {
			minSize = 4_000
		}
		if !bytes.Contains(b, []byte("<svg")) || len(b) < minSize || !bytes.Contains(b, []byte("<path")) {
			t.Errorf("%s: not a plausible SVG (%d bytes)", p, len(b))
		}
	}
}

func names(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// TestReadRun checks parsing: labels, counts, null as NaN, malformed lines
// and resumed (repeated) steps.
func TestReadRun(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "folder-name")
	writeRun(t, dir, "", 2, 10, 5,
		`{"kind":"eval","step":500,"eval_loss":9.5}`, // repeated step: the last wins
		`{"kind":"stats","step":`,
	)
	r, err := ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what      string
		got, want any
	}{
		{"label", r.Label, "folder-name"},
		{"train points", len(r.Train), 10},
		{"eval points", len(r.Eval), 2},
		{"stats points", len(r.Stats), 10},
		{"skipped", r.Skipped, 1},
		{"first skipped line", r.FirstSkipped, 10 + 2 + 10 + 2},
		{"layers", len(r.Stats[0].Layers), 3},
		{"entropies", len(r.Stats[0].AttnEntropy), 2},
		{"gains", len(r.Stats[0].Gains), 4},
		{"heads", len(r.Stats[0].Gains["transformer.h.1.attn.attn_mat_resid_gain"]), 4},
		{"eval at 500", r.Eval[0].EvalLoss, 9.5},
		{"null max/median is NaN", math.IsNaN(r.Stats[9].Layers[0].MaxMedianRatio), true},
		{"kurtosis_minus_one read", r.Stats[3].Layers[1].KurtosisMinusOne, r.Stats[3].Layers[1].Kurtosis - 1},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	for i := 1; i < len(r.Train); i++ {
		if r.Train[i].Step <= r.Train[i-1].Step {
			t.Fatalf("train points not sorted by step")
		}
	}
	writeRun(t, filepath.Join(root, "named"), "SAS-P, no norm", 1, 2, 0)
	if r, err := ReadRun(filepath.Join(root, "named")); err != nil || r.Label != "SAS-P, no norm" {
		t.Errorf("label from config.toml: %v, %v", r, err)
	}
}

// TestFiguresErrors checks that bad inputs are errors naming the file.
func TestFiguresErrors(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "good")
	writeRun(t, good, "good", 2, 3, 1)
	empty := filepath.Join(root, "no-metrics")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	blank := filepath.Join(root, "blank")
	if err := os.MkdirAll(blank, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blank, MetricsFile), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(root, "does-not-exist")
	cases := []struct {
		name    string
		runs    []string
		formats []string
		want    string
	}{
		{"missing run folder", []string{good, missing}, nil, missing},
		{"no metrics file", []string{empty}, nil, filepath.Join(empty, MetricsFile)},
		{"no runs", nil, nil, "no run folders"},
		{"bad format", []string{good}, []string{"png", "bmp"}, `unsupported format "bmp"`},
		{"nothing to plot", []string{blank}, nil, "nothing to plot"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Figures(c.runs, filepath.Join(root, "out"), c.formats)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
}

// TestSlugAndGainKind checks file-name labels and gain-name parsing.
func TestSlugAndGainKind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Pre-LN", "Pre-LN"}, {"SAS-P, no norm", "SAS-P-no-norm"}, {"../x", "x"}, {"///", "run"},
	} {
		if got := slugify(c.in); got != c.want {
			t.Errorf("slugify(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		in    string
		layer int
		kind  string
	}{
		{"transformer.h.12.attn.v_attn.resid_gain", 12, "attn.v_attn.resid_gain"},
		{"transformer.h.0.mlp_block_resid_gain", 0, "mlp_block_resid_gain"},
		{"some_gain", -1, "some_gain"},
	} {
		if l, k := gainKind(c.in); l != c.layer || k != c.kind {
			t.Errorf("gainKind(%q) = %d, %q; want %d, %q", c.in, l, k, c.layer, c.kind)
		}
	}
}
