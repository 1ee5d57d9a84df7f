package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"clm/quant"
	"clm/runlog"
	"clm/train"
)

func init() {
	register("quant", "int8 post-training quantisation of a run's checkpoint: clm quant -ckpt RUN_DIR -weights per_channel -acts static", runQuant)
}

func runQuant(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("clm quant", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ckptFlag := fs.String("ckpt", "", "run folder (its latest checkpoint) or a checkpoint folder")
	weights := fs.String("weights", "per_channel", "weight quantisation: none, per_tensor or per_channel")
	acts := fs.String("acts", "static", "activation quantisation: none, static (per tensor, calibrated) or dynamic (per token)")
	calib := fs.Int("calib-batches", 8, "training batches (of eval_batch rows) that calibrate static ranges")
	residual := fs.Bool("residual", false, "also quantise the residual stream between blocks")
	evalBatches := fs.Int("eval-batches", -1, "validation batches to evaluate (-1: the run's train.eval_batches; 0: all)")
	device := fs.String("device", "cpu", "cpu, cuda or cuda:N")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("quant: %v", err)
	}
	if *ckptFlag == "" {
		return errors.New("quant: -ckpt RUN_DIR is required")
	}
	scheme, err := quantScheme(*weights, *acts, *residual)
	if err != nil {
		return err
	}
	if *calib < 1 || *calib > 1<<20 {
		return fmt.Errorf("quant: -calib-batches %d is outside [1, %d]", *calib, 1<<20)
	}
	if *evalBatches < -1 || *evalBatches > 1<<30 {
		return fmt.Errorf("quant: -eval-batches %d is outside [-1, %d]", *evalBatches, 1<<30)
	}
	tr, err := train.OpenTrained(*ckptFlag, *device)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	defer tr.Close()
	ds, err := train.PrepareData(context.Background(), tr.Exp, os.Stderr)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	defer ds.Close()
	o := quant.Options{Scheme: scheme, CalibBatches: *calib, Batch: tr.Exp.Train.EvalBatch, EvalBatches: *evalBatches, Pad: train.EvalPad(ds)}
	if o.EvalBatches < 0 {
		o.EvalBatches = tr.Exp.Train.EvalBatches
	}
	r, err := quant.Evaluate(tr.Model, ds.Train, ds.Valid, o)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	runDir := filepath.Dir(filepath.Dir(tr.Checkpoint))
	r.Checkpoint, _ = filepath.Rel(runDir, tr.Checkpoint)
	if err := r.WriteTable(stdout); err != nil {
		return err
	}
	return runlog.WriteQuant(runDir, r.Record())
}

// quantScheme parses the scheme flags; an error names the flag.
func quantScheme(weights, acts string, residual bool) (quant.Scheme, error) {
	w, err := quant.ParseWeights(weights)
	if err != nil {
		return quant.Scheme{}, fmt.Errorf("quant: -weights: %v", err)
	}
	a, err := quant.ParseActs(acts)
	if err != nil {
		return quant.Scheme{}, fmt.Errorf("quant: -acts: %v", err)
	}
	s := quant.Scheme{Weights: w, Acts: a, Residual: residual}
	if err := s.Validate(); err != nil {
		return quant.Scheme{}, fmt.Errorf("quant: -residual: %v", err)
	}
	return s, nil
}
