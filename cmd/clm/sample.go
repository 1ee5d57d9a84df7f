package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"clm/data"
	"clm/model"
	"clm/train"
)

func init() {
	register("sample", "generate code from a run's checkpoint: clm sample RUN -prompt 'def '", runSample)
}

func runSample(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "sample", "clm sample [flags] RUN",
		"Continues a prompt with the model of RUN: a run folder (its latest checkpoint) or one of its checkpoint folders, or a "+
			"Hugging Face GPT-2 model (a folder or hub:org/name[@revision]) with its own tokenizer.",
		"clm sample runs/demo -prompt 'def fib(n):' -n 60",
		"clm sample runs/demo/checkpoints/step-00000100 -temperature 0.8 -top-k 40 -seed 1",
		"clm sample hub:openai-community/gpt2 -prompt 'def fib(n):' -n 40")
	ckptFlag, device := fs.oneRun()
	prompt := fs.String("prompt", "def ", "text to continue")
	n := fs.Int("n", 100, "tokens to generate")
	temp := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy")
	topK := fs.Int("top-k", 0, "sample among the k most likely tokens (0: all)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	run, err := fs.parseRun(args, ckptFlag)
	if err != nil {
		return err
	}
	if *n < 0 || *n > 1<<20 {
		return fmt.Errorf("sample: -n %d is outside [0, %d]", *n, 1<<20)
	}
	sampler, err := model.NewSampler(*temp, *topK, *seed)
	if err != nil {
		return fmt.Errorf("sample: -%v", err) // names the flag
	}
	tr, err := train.OpenTrained(run, *device)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	defer tr.Close()
	if tr.Exp.Data.Tokenizer == "" {
		return fmt.Errorf("sample: %s names no tokenizer", tr.Config())
	}
	tok, err := data.LoadTokenizer(context.Background(), tr.Exp.Data.Tokenizer, os.Stderr)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	ids := tok.Encode(*prompt)
	if len(ids) == 0 {
		return errors.New("sample: the prompt encodes to no tokens")
	}
	stop := int32(-1)
	if eos, ok := tok.ID("<|endoftext|>"); ok {
		stop = eos
	}
	fmt.Fprint(stdout, *prompt)
	out, err := tr.Model.Generate(ids, *n, sampler, stop, func(id int32) { fmt.Fprint(stdout, tok.Decode([]int32{id})) })
	fmt.Fprintln(stdout)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	end := ""
	if len(out) < *n {
		end = ", stopped at <|endoftext|>"
	}
	fmt.Fprintf(os.Stderr, "clm sample: %d tokens%s\n", len(out), end)
	return nil
}
