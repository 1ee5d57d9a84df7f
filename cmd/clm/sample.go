package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"clm/data"
	"clm/model"
	"clm/torch"
	"clm/train"
)

func init() {
	register("sample", "generate code from a run's checkpoint: clm sample -ckpt RUN_DIR -prompt 'def '", runSample)
}

func runSample(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("clm sample", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ckptFlag := fs.String("ckpt", "", "run folder (its latest checkpoint) or a checkpoint folder")
	prompt := fs.String("prompt", "def ", "text to continue")
	n := fs.Int("n", 100, "tokens to generate")
	temp := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy")
	topK := fs.Int("top-k", 0, "sample among the k most likely tokens (0: all)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	device := fs.String("device", "cpu", "cpu, cuda or cuda:N")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("sample: %v", err)
	}
	if *ckptFlag == "" {
		return errors.New("sample: -ckpt RUN_DIR is required")
	}
	switch {
	case *n < 0 || *n > 1<<20:
		return fmt.Errorf("sample: -n %d is outside [0, %d]", *n, 1<<20)
	case math.IsNaN(*temp) || math.IsInf(*temp, 0) || *temp < 0:
		return fmt.Errorf("sample: -temperature %v must be a finite number ≥ 0 (0 is greedy)", *temp)
	case *topK < 0:
		return fmt.Errorf("sample: -top-k %d must not be negative (0: all tokens)", *topK)
	}
	ckpt := *ckptFlag
	runDir := ckpt
	if _, err := os.Stat(filepath.Join(ckpt, "state.json")); err == nil {
		runDir = filepath.Dir(filepath.Dir(ckpt)) // RUN/checkpoints/step-N
	} else {
		latest, err := train.LatestCheckpoint(ckpt)
		if err != nil {
			return err
		}
		if latest == "" {
			return fmt.Errorf("sample: %s has no checkpoint", ckpt)
		}
		ckpt = latest
	}
	exp, err := train.Load(filepath.Join(runDir, "config.toml"), nil)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if exp.Data.Tokenizer == "" {
		return fmt.Errorf("sample: %s names no tokenizer", filepath.Join(runDir, "config.toml"))
	}
	tok, err := data.LoadTokenizer(context.Background(), exp.Data.Tokenizer, os.Stderr)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	dev, err := torch.ParseDevice(*device)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	cfg, err := train.ReadModelConfig(ckpt)
	if err != nil {
		return err
	}
	m, err := model.New(cfg, model.Options{Device: dev})
	if err != nil {
		return err
	}
	defer m.Close()
	s := torch.NewScope()
	defer s.Close()
	if err := train.LoadWeights(ckpt, m); err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	ids := tok.Encode(*prompt)
	if len(ids) == 0 {
		return errors.New("sample: the prompt encodes to no tokens")
	}
	eos, hasEOS := tok.ID("<|endoftext|>")
	rng := rand.New(rand.NewPCG(*seed, 1))
	fmt.Fprint(stdout, *prompt)
	err = torch.Try(func() {
		torch.NoGrad(func() {
			for i := 0; i < *n; i++ {
				step := torch.NewScope()
				ctx := ids
				if len(ctx) > cfg.ContextLength {
					ctx = ctx[len(ctx)-cfg.ContextLength:]
				}
				x := make([]int64, len(ctx))
				for j, v := range ctx {
					x[j] = int64(v)
				}
				out := m.Forward(torch.FromInt64(x, 1, int64(len(x))).ToDevice(dev), model.ForwardOptions{PadID: -1})
				logits := out.Logits.Narrow(1, int64(len(x)-1), 1).Reshape(-1).ToDType(torch.Float64).ToDevice(torch.CPU).Float64s()
				next := pick(logits, *temp, *topK, rng)
				step.Close()
				if hasEOS && next == eos {
					break
				}
				ids = append(ids, next)
				fmt.Fprint(stdout, tok.Decode([]int32{next}))
			}
		})
	})
	fmt.Fprintln(stdout)
	return err
}

// pick chooses the next token: the most likely one at temperature 0, else a
// draw from softmax(logits/temperature) restricted to the top k.
func pick(logits []float64, temp float64, topK int, rng *rand.Rand) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	if temp <= 0 {
		return int32(best)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	if topK > 0 && topK < len(idx) {
		// Partial selection of the k largest.
		for a := 0; a < topK; a++ {
			m := a
			for b := a + 1; b < len(idx); b++ {
				if logits[idx[b]] > logits[idx[m]] {
					m = b
				}
			}
			idx[a], idx[m] = idx[m], idx[a]
		}
		idx = idx[:topK]
	}
	weights := make([]float64, len(idx))
	var sum float64
	for i, j := range idx {
		weights[i] = expSafe((logits[j] - logits[best]) / temp)
		sum += weights[i]
	}
	r := rng.Float64() * sum
	for i, w := range weights {
		if r -= w; r <= 0 {
			return int32(idx[i])
		}
	}
	return int32(idx[len(idx)-1])
}

func expSafe(x float64) float64 {
	if x < -700 {
		return 0
	}
	return math.Exp(x)
}
