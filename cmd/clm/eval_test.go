package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalCommand: clm eval prints one JSON record whose eval_loss is the
// one the run logged at its last step (the same checkpoint, batches and
// padding), evaluates another slice of the corpus with -set data.*, refuses
// other keys and another tokenizer with one line, and writes nothing in the
// run folder.
func TestEvalCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "run"); code != 0 {
		t.Fatalf("training the fixture run: %d\n%s", code, stderr)
	}
	run := filepath.Join(dir, "run")
	before := snapshot(t, run)
	var logged map[string]any
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["kind"] == "eval" {
			logged = r
		}
	}
	read := func(args ...string) evalRecord {
		t.Helper()
		out, stderr, code := clm(t, dir, append([]string{"eval"}, args...)...)
		var rec evalRecord
		if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &rec) != nil {
			t.Fatalf("clm eval %v: exit %d, stdout %q\n%s", args, code, out, stderr)
		}
		return rec
	}
	rec := read("run", "-device", "cpu")
	if rec.EvalLoss != logged["eval_loss"].(float64) || float64(rec.Sequences) != logged["eval_sequences"].(float64) {
		t.Errorf("clm eval: %+v; the run logged %v", rec, logged)
	}
	if rec.Checkpoint != "checkpoints/step-00000012" || rec.Data != "" || math.Abs(rec.Perplexity-math.Exp(rec.EvalLoss)) > 1e-9*rec.Perplexity {
		t.Errorf("clm eval: %+v", rec)
	}
	other := read("run", "-set", "data.valid_docs=5", "-eval-batches", "0")
	if other.Data != "data.valid_docs=5" || other.EvalLoss == rec.EvalLoss || other.Sequences == rec.Sequences {
		t.Errorf("another slice: %+v, the run's: %+v", other, rec)
	}
	for _, bad := range [][]string{
		{"run", "-set", "train.lr=1"},
		{"run", "-set", "data.tokenizer=gpt2"},
		{"run", "-eval-batches", "-2"},
		{"nowhere"},
	} {
		_, stderr, code := clm(t, dir, append([]string{"eval"}, bad...)...)
		if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "clm: ") {
			t.Errorf("clm eval %v: exit %d, stderr %q", bad, code, stderr)
		}
	}
	if after := snapshot(t, run); after != before {
		t.Errorf("clm eval wrote in the run folder:\n%s\nthen\n%s", before, after)
	}
}
