package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"clm/data"
	"clm/train"
)

func init() {
	register("eval", "the eval loss and perplexity of a run's checkpoint, on its validation set or another: one JSON record", runEval)
}

// evalRecord is clm eval's output, one JSON line.
type evalRecord struct {
	Run        string  `json:"run"`
	Checkpoint string  `json:"checkpoint"`
	Data       string  `json:"data"` // the [data] overrides, "" for the run's own set
	Device     string  `json:"device"`
	Batch      int     `json:"batch"`
	Sequences  int     `json:"sequences"`
	EvalLoss   float64 `json:"eval_loss"`
	Perplexity float64 `json:"perplexity"`
}

func runEval(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "eval", "clm eval [flags] RUN",
		"Evaluates RUN's checkpoint (a run folder: its latest; or a checkpoint folder) as the run logs eval_loss: the same "+
			"batches, padding and precision, on the run's validation set or, with -set data.KEY=VALUE, on another corpus "+
			"tokenized with the run's tokenizer. Prints one JSON record; writes nothing in the run folder. RUN may also be a "+
			"Hugging Face GPT-2 model, a folder or hub:org/name[@revision], evaluated with its own tokenizer on the corpus -set data.* names.",
		"clm eval runs/demo",
		"clm eval runs/demo -eval-batches 2 -device cpu",
		"clm eval runs/demo -set data.source=dir -set data.path=src",
		"clm eval hub:openai-community/gpt2 -set data.source=dir -set data.path=src")
	ckptFlag, device := fs.oneRun()
	batches := fs.Int("eval-batches", -1, "batches to evaluate (-1: the run's train.eval_batches; 0: all)")
	batch := fs.Int("batch", 0, "sequences per forward (0: the run's train.eval_batch)")
	var sets setFlags
	fs.Var(&sets, "set", "evaluate on another corpus: a [data] key, e.g. -set data.source=dir -set data.path=src (repeatable)")
	run, err := fs.parseRun(args, ckptFlag)
	if err != nil {
		return err
	}
	if *batches < -1 || *batch < 0 {
		return fmt.Errorf("eval: -eval-batches %d and -batch %d must not be negative (-1: the run's batches)", *batches, *batch)
	}
	for _, k := range sets.order {
		if !strings.HasPrefix(k, "data.") || strings.HasPrefix(k, "data.tokenizer") {
			return fmt.Errorf("eval: -set %s: only [data] keys choose the evaluation corpus, and the tokenizer stays the run's", k)
		}
	}
	tr, err := train.OpenTrained(run, *device)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer tr.Close()
	if err := needsCorpus("eval", tr, sets); err != nil {
		return err
	}
	exp := tr.Exp
	if len(sets.order) > 0 {
		if exp, err = tr.Experiment(sets.values); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	ctx, stop := signalContext()
	defer stop()
	ds, err := train.PrepareData(ctx, exp, os.Stderr)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer ds.Close()
	o := train.EvalOptions{Batch: exp.Train.EvalBatch, Batches: exp.Train.EvalBatches, Pad: train.EvalPad(ds), Precision: exp.Train.Precision}
	if *batch > 0 {
		o.Batch = *batch
	}
	if *batches >= 0 {
		o.Batches = *batches
	}
	var finish func()
	o.Progress, finish = batchProgress()
	r, err := train.Evaluate(ctx, tr.Model, ds.Valid, o)
	finish()
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	var kv []string
	for _, k := range sets.order {
		kv = append(kv, fmt.Sprintf("%s=%v", k, sets.values[k]))
	}
	line, err := json.Marshal(evalRecord{Run: tr.RunDir, Checkpoint: tr.CheckpointName(), Data: strings.Join(kv, " "),
		Device: tr.Model.Options().Device.String(), Batch: o.Batch, Sequences: r.Sequences,
		EvalLoss: r.Loss, Perplexity: math.Exp(r.Loss)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// needsCorpus refuses to evaluate a Hugging Face model on no corpus: it
// has no validation set of its own.
func needsCorpus(cmd string, tr *train.Trained, sets setFlags) error {
	if !tr.FromHF() || len(sets.order) > 0 {
		return nil
	}
	return fmt.Errorf("%s: %s is a Hugging Face model, which has no validation set: name a corpus, e.g. -set data.source=stdlib "+
		"(the local Python standard library), -set data.source=dir -set data.path=DIR, or -set data.source=hub -set data.dataset=ORG/NAME", cmd, tr.Checkpoint)
}

// batchProgress is a progress display of evaluation batches on stderr
// (train.EvalOptions.Progress) and the function that ends it.
func batchProgress() (update func(done, total int), finish func()) {
	prog := data.DefaultProgress(os.Stderr)
	started, last := false, 0
	update = func(done, total int) {
		if !started {
			prog.Start("eval batches", int64(total))
			started = true
		}
		prog.Add(int64(done - last))
		last = done
	}
	return update, func() {
		if started {
			prog.Finish()
		}
	}
}
