package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"clm/quant"
	"clm/runlog"
	"clm/train"
)

func init() {
	register("quant", "int8 post-training quantisation of a run's checkpoint: clm quant RUN -weights per_channel -acts static,dynamic", runQuant)
}

func runQuant(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "quant", "clm quant [flags] RUN",
		"Quantises the weights and activations of RUN's checkpoint (a run folder, its latest) to int8 and evaluates it on the run's "+
			"validation set beside full precision; every scheme is kept in RUN/quant.json. With -weights none -acts none it is a plain evaluation.",
		"clm quant runs/of-op-soap",
		"clm quant runs/of-op-soap -weights per_tensor,per_channel -acts static,dynamic",
		"clm quant runs/default -acts dynamic -residual")
	ckptFlag, device := fs.oneRun()
	weights := fs.String("weights", "per_channel", "weight quantisation: none, per_tensor or per_channel; a comma-separated list evaluates each")
	acts := fs.String("acts", "static", "activation quantisation: none, static (per tensor, calibrated) or dynamic (per token); a list evaluates each")
	calib := fs.Int("calib-batches", 8, "training batches (of eval_batch rows) that calibrate static ranges")
	residual := fs.Bool("residual", false, "also quantise the residual stream between blocks and after the last")
	evalBatches := fs.Int("eval-batches", -1, "validation batches to evaluate (-1: the run's train.eval_batches; 0: all)")
	run, err := fs.parseRun(args, ckptFlag)
	if err != nil {
		return err
	}
	schemes, err := quantSchemes(*weights, *acts, *residual)
	if err != nil {
		return err
	}
	if *calib < 1 || *calib > 1<<20 {
		return fmt.Errorf("quant: -calib-batches %d is outside [1, %d]", *calib, 1<<20)
	}
	if *evalBatches < -1 || *evalBatches > 1<<30 {
		return fmt.Errorf("quant: -eval-batches %d is outside [-1, %d]", *evalBatches, 1<<30)
	}
	tr, err := train.OpenTrained(run, *device)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	defer tr.Close()
	ds, err := train.PrepareData(context.Background(), tr.Exp, os.Stderr)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	defer ds.Close()
	for i, scheme := range schemes {
		o := quant.Options{Scheme: scheme, CalibBatches: *calib, Batch: tr.Exp.Train.EvalBatch, EvalBatches: *evalBatches, Pad: train.EvalPad(ds)}
		if o.EvalBatches < 0 {
			o.EvalBatches = tr.Exp.Train.EvalBatches
		}
		r, err := quant.Evaluate(tr.Model, ds.Train, ds.Valid, o)
		if err != nil {
			return fmt.Errorf("quant: %v: %w", scheme, err)
		}
		r.Checkpoint = tr.CheckpointName()
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := r.WriteTable(stdout); err != nil {
			return err
		}
		// Each scheme is kept as soon as it is done, beside the others.
		if err := runlog.WriteQuant(tr.RunDir, r.Record()); err != nil {
			return err
		}
	}
	return nil
}

// quantSchemes parses the scheme flags, lists of weights and activation
// schemes evaluated in every combination; an error names the flag.
func quantSchemes(weights, acts string, residual bool) ([]quant.Scheme, error) {
	var out []quant.Scheme
	for _, wn := range strings.Split(weights, ",") {
		w, err := quant.ParseWeights(strings.TrimSpace(wn))
		if err != nil {
			return nil, fmt.Errorf("quant: -weights: %v", err)
		}
		for _, an := range strings.Split(acts, ",") {
			a, err := quant.ParseActs(strings.TrimSpace(an))
			if err != nil {
				return nil, fmt.Errorf("quant: -acts: %v", err)
			}
			s := quant.Scheme{Weights: w, Acts: a, Residual: residual}
			if err := s.Validate(); err != nil {
				return nil, fmt.Errorf("quant: -residual: %v", err)
			}
			out = append(out, s)
		}
	}
	return out, nil
}
