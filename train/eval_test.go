package train

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"clm/torch/torchtest"
)

// TestEvaluateIsTheRunsEvalLoss: Evaluate on a finished run's checkpoint
// and validation set gives the eval_loss the run logged at its last step,
// bit for bit, with its sequence count; a cancelled context stops it.
func TestEvaluateIsTheRunsEvalLoss(t *testing.T) {
	torchtest.Guard(t)
	t.Setenv("CLM_CACHE", t.TempDir())
	dir := filepath.Join(t.TempDir(), "run")
	exp := loadSetupExperiment(t, map[string]any{"train.eval_every": int64(3)})
	r, err := Setup(context.Background(), exp, SetupOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Trainer.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	evals := readMetrics(t, dir, "eval")
	last := evals[len(evals)-1]
	if last["step"].(float64) != 6 {
		t.Fatalf("the last evaluation is at step %v, want 6", last["step"])
	}

	tr, err := OpenTrained(dir, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ds, err := OpenData(context.Background(), tr.Exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	o := EvalOptions{Batch: tr.Exp.Train.EvalBatch, Batches: tr.Exp.Train.EvalBatches, Pad: EvalPad(ds), Precision: tr.Exp.Train.Precision}
	got, err := Evaluate(context.Background(), tr.Model, ds.Valid, o)
	if err != nil {
		t.Fatal(err)
	}
	if got.Loss != last["eval_loss"].(float64) || float64(got.Sequences) != last["eval_sequences"].(float64) {
		t.Errorf("Evaluate: loss %v over %d sequences; the run logged %v over %v", got.Loss, got.Sequences, last["eval_loss"], last["eval_sequences"])
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o.Batch = 1
	if _, err := Evaluate(ctx, tr.Model, ds.Valid, o); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
