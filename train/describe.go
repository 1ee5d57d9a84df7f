package train

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"clm/runlog"
)

// Describe lists what an experiment amounts to, as TOML comments (so that
// `clm config`'s output stays an experiment file): the model's size, the
// tokens per step and in all, the steps, the memory its weights, gradients
// and AdamW state need, and, when a run of it has logged its speed
// (tokensPerSec > 0), how long the whole run takes at that speed.
func Describe(e *Experiment, tokensPerSec float64) string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, "# "+format+"\n", a...) }
	cfg := e.Model
	total, trainable := cfg.ParamCount()
	perStep := int64(e.Train.MicroBatch) * int64(e.Train.Accumulation) * int64(cfg.ContextLength)
	line("derived (not keys):")
	line("  model       preset %s: %s parameters (%s trainable), %d layers × %d, %d heads, vocabulary %d%s", e.Preset,
		count(total), count(trainable), cfg.NLayer, cfg.NEmbd, cfg.NHead, cfg.VocabSize, vocabNote(e))
	line("  step        %s tokens: %d sequences × %d accumulation × %d tokens", count(perStep), e.Train.MicroBatch, e.Train.Accumulation, cfg.ContextLength)
	docs := int64(e.Data.NumTokenMult * 100000)
	if e.Train.MaxSteps > 0 {
		steps := int64(e.Train.MaxSteps)
		line("  steps       %d (train.max_steps), %s tokens in all; %d training documents wanted (data.num_token_mult × 100000)", steps, count(steps*perStep), docs)
		if tokensPerSec > 0 {
			line("  time        about %s at the %.0f tokens/s a run of it logged", roundDuration(time.Duration(float64(steps*perStep)/tokensPerSec*float64(time.Second))), tokensPerSec)
		}
	} else {
		line("  steps       %g epochs over the chunks of %d training documents wanted (counted when the data are prepared)", e.Train.Epochs, docs)
	}
	need, _ := stateMemory(cfg)
	line("  memory      at least %s for weights, gradients and AdamW state (activations come on top)", human(need))
	return b.String()
}

func vocabNote(e *Experiment) string {
	if _, set := e.ModelOverrides["vocab_size"]; !set && e.Data.Tokenizer == "" {
		return fmt.Sprintf(" (becomes the trained tokenizer's, data.tokenizer_vocab %d)", e.Data.TokenizerVocab)
	}
	return ""
}

// LoggedSpeed is the tokens/s of the last training record of the run in
// dir, or 0 when it has none.
func LoggedSpeed(dir string) float64 {
	f, err := os.Open(filepath.Join(dir, runlog.MetricsFile))
	if err != nil {
		return 0
	}
	defer f.Close()
	l, err := runlog.Read(f)
	if err != nil || len(l.Train) == 0 {
		return 0
	}
	return l.Train[len(l.Train)-1].TokensPerSec
}
