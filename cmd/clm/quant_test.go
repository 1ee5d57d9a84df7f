package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuant trains the micro run, quantises it with several schemes, one
// and two per call, and checks quant.json: every scheme is kept under its
// key, each with the run's last eval_loss as its full-precision loss (the
// same evaluation); bad flags are one-line errors naming the flag.
func TestQuant(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "good.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", good, "-run-dir", "run"); code != 0 {
		t.Fatalf("training the fixture run failed (%d):\n%s", code, stderr)
	}
	want := lastEvalLoss(t, filepath.Join(dir, "run", "metrics.jsonl"))
	for _, c := range []struct {
		args []string
		keys []string
	}{
		{[]string{"-weights", "per_channel", "-acts", "static", "-calib-batches", "2"}, []string{"per_channel/static"}},
		{[]string{"-weights", "per_tensor", "-acts", "dynamic", "-residual"}, []string{"per_channel/static", "per_tensor/dynamic/residual"}},
		{[]string{"-weights", "per_tensor,per_channel", "-acts", "dynamic"},
			[]string{"per_channel/dynamic", "per_channel/static", "per_tensor/dynamic", "per_tensor/dynamic/residual"}},
	} {
		stdout, stderr, code := clm(t, dir, append([]string{"quant", "-ckpt", "run"}, c.args...)...)
		if code != 0 || !strings.Contains(stdout, "int8 rel error") {
			t.Fatalf("clm quant %v: exit %d\n%s\n%s", c.args, code, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(dir, "run", "quant.json"))
		var f struct {
			Results map[string]struct {
				Scheme struct{ Weights, Acts string }
				FP     struct{ Loss float64 }
				Int8   struct{ Loss float64 }
				Layers []struct{ Kurtosis float64 }
			}
		}
		if err == nil {
			err = json.Unmarshal(b, &f)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Results) != len(c.keys) {
			t.Errorf("clm quant %v: quant.json holds %d results, want %v", c.args, len(f.Results), c.keys)
		}
		for _, k := range c.keys {
			r, ok := f.Results["checkpoints/step-00000012 "+k]
			if !ok || r.FP.Loss != want || !strings.HasPrefix(k, r.Scheme.Weights+"/"+r.Scheme.Acts) || len(r.Layers) != 2 || r.Int8.Loss == r.FP.Loss {
				t.Errorf("clm quant %v: result %s is %+v (present %v); want fp loss %v (the run's last eval_loss), 2 layers, an int8 loss of its own",
					c.args, k, r, ok, want)
			}
		}
	}
	for _, c := range []struct{ args, flag string }{
		{"-weights int4", "-weights"},
		{"-weights per_tensor,int4", "-weights"},
		{"-acts per_channel", "-acts"},
		{"-acts none -residual", "-residual"},
		{"-calib-batches 0", "-calib-batches"},
		{"-eval-batches -2", "-eval-batches"},
		{"-device tpu", "tpu"},
	} {
		_, stderr, code := clm(t, dir, append([]string{"quant", "-ckpt", "run"}, strings.Fields(c.args)...)...)
		if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, c.flag) {
			t.Errorf("clm quant %s: exit %d, stderr %q: want one line naming %s", c.args, code, stderr, c.flag)
		}
	}
}

// lastEvalLoss is the eval_loss of the last eval record of a metrics file.
func lastEvalLoss(t *testing.T, path string) float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	loss := -1.0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct {
			Kind     string  `json:"kind"`
			EvalLoss float64 `json:"eval_loss"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Kind == "eval" {
			loss = rec.EvalLoss
		}
	}
	if loss < 0 {
		t.Fatalf("%s has no eval record", path)
	}
	return loss
}
