package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"clm/data"
	"clm/hf"
	"clm/model"
	"clm/runlog"
	"clm/train"
)

func init() {
	register("export", "write a run's checkpoint as a Hugging Face model folder (transformers' from_pretrained opens it)", runExport)
}

func runExport(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "export", "clm export [flags] RUN -o DIR",
		"Writes the model of RUN (a run folder: its latest checkpoint; or a checkpoint folder) as a Hugging Face model "+
			"folder DIR: config.json, model.safetensors, the tokenizer, generation_config.json, a model card and, unless "+
			"the model is a plain GPT-2 (LayerNorm, Pre-LN, sequential, an activation transformers has), the remote code "+
			"modeling_clm.py. Only reads the run; DIR appears complete or not at all.",
		"clm export runs/demo -o hf/demo",
		"clm export runs/demo/checkpoints/step-00000100 -o hf/demo-100 -force")
	out := fs.String("o", "", "the folder to write (must not exist, or be empty)")
	force := fs.Bool("force", false, "replace DIR if it is not empty")
	ckpt := new(string)
	run, err := fs.parseRun(args, ckpt)
	if err != nil {
		return err
	}
	if *out == "" {
		return errors.New("export: -o DIR is missing (the folder to write)")
	}
	if train.IsHF(run) {
		return fmt.Errorf("export: %s is a Hugging Face model already (export writes a clm run's checkpoint as one)", run)
	}
	tr, err := train.OpenTrained(run, "cpu") // checks the weights against their config
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer tr.Close()
	src, err := exportSource(tr)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	res, err := hf.Export(src, *out, *force)
	if err != nil {
		return err
	}
	kind := "a plain GPT2LMHeadModel (no remote code)"
	if !res.Plain {
		kind = "CLMForCausalLM with remote code (trust_remote_code=True), as GPT-2 cannot compute " + res.Why
	}
	fmt.Fprintf(stdout, "clm export: %s (step %d) -> %s: %s\n", tr.CheckpointName(), src.Card.Step, *out, kind)
	return nil
}

// exportSource gathers what hf.Export needs of an opened run: the
// checkpoint's weights and declared names, the tokenizer, and the card.
func exportSource(tr *train.Trained) (hf.Source, error) {
	if tr.Exp.Data.Tokenizer == "" {
		return hf.Source{}, fmt.Errorf("%s names no tokenizer", tr.Config())
	}
	tok, err := data.LoadTokenizer(context.Background(), tr.Exp.Data.Tokenizer, os.Stderr)
	if err != nil {
		return hf.Source{}, err
	}
	tokJSON, err := tok.MarshalJSON()
	if err != nil {
		return hf.Source{}, err
	}
	eos := -1
	if id, ok := tok.ID("<|endoftext|>"); ok {
		eos = int(id)
	}
	st, err := train.ReadState(tr.Checkpoint)
	if err != nil {
		return hf.Source{}, err
	}
	cfg := tr.Model.Config()
	var names []string
	for _, p := range cfg.Params() {
		names = append(names, p.Name)
	}
	total, _ := cfg.ParamCount()
	card := hf.Card{Experiment: tr.Exp.Name, Preset: tr.Exp.Preset, Step: st.Step, Tokens: st.Tokens, Params: total}
	for _, p := range model.Presets {
		if p.Name == tr.Exp.Preset {
			card.Source = p.Source
		}
	}
	card.EvalLoss, card.EvalStep = lastEval(tr.RunDir, st.Step)
	return hf.Source{Weights: filepath.Join(tr.Checkpoint, "model.safetensors"), Names: names,
		Tokenizer: tokJSON, EOS: eos, Card: card}, nil
}

// lastEval is the last eval_loss the run in dir logged at or before step,
// and its step; NaN when there is none.
func lastEval(dir string, step int) (float64, int64) {
	f, err := os.Open(filepath.Join(dir, runlog.MetricsFile))
	if err != nil {
		return math.NaN(), 0
	}
	defer f.Close()
	l, err := runlog.Read(f)
	if err != nil {
		return math.NaN(), 0
	}
	loss, at := math.NaN(), int64(0)
	for _, e := range l.Eval {
		if e.Step <= int64(step) && !math.IsNaN(e.EvalLoss) {
			loss, at = e.EvalLoss, e.Step
		}
	}
	return loss, at
}
