package main

import (
	"context"
	"encoding/json"
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
			"validation set beside full precision; every scheme is kept in RUN/quant.json. With -weights none -acts none it is a plain evaluation. "+
			"RUN may also be a Hugging Face GPT-2 model (a folder or hub:org/name[@revision]), calibrated and evaluated on the corpus -set data.* "+
			"names with its own tokenizer; nothing is written beside it.",
		"clm quant runs/of-op-soap",
		"clm quant runs/of-op-soap -weights per_tensor,per_channel -acts static,dynamic",
		"clm quant runs/default -acts dynamic -residual",
		"clm quant hub:openai-community/gpt2 -set data.source=dir -set data.path=src")
	ckptFlag, device := fs.oneRun()
	weights := fs.String("weights", "per_channel", "weight quantisation: none, per_tensor or per_channel; a comma-separated list evaluates each")
	acts := fs.String("acts", "static", "activation quantisation: none, static (per tensor, calibrated) or dynamic (per token); a list evaluates each")
	calib := fs.Int("calib-batches", 8, "training batches (of eval_batch rows) that calibrate static ranges")
	residual := fs.Bool("residual", false, "also quantise the residual stream between blocks and after the last")
	evalBatches := fs.Int("eval-batches", -1, "validation batches to evaluate (-1: the run's train.eval_batches; 0: all)")
	batch := fs.Int("batch", 0, "sequences per forward, calibration and evaluation (0: the run's train.eval_batch)")
	asJSON := fs.Bool("json", false, "print each scheme's record (as quant.json keeps it) as one JSON line instead of the table")
	var sets setFlags
	fs.Var(&sets, "set", "a Hugging Face model's corpus: a [data] key, e.g. -set data.source=dir -set data.path=src (repeatable)")
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
	if *batch < 0 || *batch > 1<<20 {
		return fmt.Errorf("quant: -batch %d is outside [0, %d]", *batch, 1<<20)
	}
	if *evalBatches < -1 || *evalBatches > 1<<30 {
		return fmt.Errorf("quant: -eval-batches %d is outside [-1, %d]", *evalBatches, 1<<30)
	}
	tr, err := train.OpenTrained(run, *device)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	defer tr.Close()
	exp, err := quantExperiment(tr, sets)
	if err != nil {
		return err
	}
	ds, err := train.PrepareData(context.Background(), exp, os.Stderr)
	if err != nil {
		return fmt.Errorf("quant: %w", err)
	}
	defer ds.Close()
	for i, scheme := range schemes {
		o := quant.Options{Scheme: scheme, CalibBatches: *calib, Batch: exp.Train.EvalBatch, EvalBatches: *evalBatches, Pad: train.EvalPad(ds)}
		if o.EvalBatches < 0 {
			o.EvalBatches = exp.Train.EvalBatches
		}
		if *batch > 0 {
			o.Batch = *batch
		}
		r, err := quant.Evaluate(tr.Model, ds.Train, ds.Valid, o)
		if err != nil {
			return fmt.Errorf("quant: %v: %w", scheme, err)
		}
		r.Checkpoint = tr.CheckpointName()
		if err := writeQuant(stdout, r, i, *asJSON); err != nil {
			return err
		}
		if tr.FromHF() {
			continue // a model folder (or the Hub cache) is not written to
		}
		// Each scheme is kept as soon as it is done, beside the others.
		if err := runlog.WriteQuant(tr.RunDir, r.Record()); err != nil {
			return err
		}
	}
	return nil
}

// writeQuant prints the i-th scheme's report: a table (after a blank line
// from the one before), or one JSON line.
func writeQuant(w io.Writer, r *quant.Report, i int, asJSON bool) error {
	if asJSON {
		line, err := json.Marshal(r.Record())
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", line)
		return err
	}
	if i > 0 {
		fmt.Fprintln(w)
	}
	return r.WriteTable(w)
}

// quantExperiment is the experiment quant evaluates with: the run's, or
// a Hugging Face model's with the corpus that -set names (a run's corpus
// is its own: -set is for models without one).
func quantExperiment(tr *train.Trained, sets setFlags) (*train.Experiment, error) {
	if !tr.FromHF() {
		if len(sets.order) > 0 {
			return nil, fmt.Errorf("quant: -set is for a Hugging Face model's corpus; a run is evaluated on its own validation set")
		}
		return tr.Exp, nil
	}
	if err := needsCorpus("quant", tr, sets); err != nil {
		return nil, err
	}
	for _, k := range sets.order {
		if !strings.HasPrefix(k, "data.") || strings.HasPrefix(k, "data.tokenizer") {
			return nil, fmt.Errorf("quant: -set %s: only [data] keys choose the corpus, and the tokenizer stays the model's", k)
		}
	}
	exp, err := tr.Experiment(sets.values)
	if err != nil {
		return nil, fmt.Errorf("quant: %w", err)
	}
	return exp, nil
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
