package train

import (
	"strings"
	"testing"
)

func TestDifferences(t *testing.T) {
	const base = "name = \"x\"\n[model]\npreset = \"skipless\"\nn_layer = 4\n[train]\nmax_steps = 20\n[data]\ntokenizer_vocab = 300\n"
	run, err := Parse("run.toml", []byte(base), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	run.Data.Tokenizer = "/cache/tokenizers/stdlib-300.json" // what the run derived
	run.Model.VocabSize = 300
	cases := []struct {
		name string
		sets map[string]any
		want []string
	}{
		{"the same experiment", nil, nil},
		{"operational keys only", map[string]any{"train.threads": int64(1), "train.log_every": int64(1), "report.every": int64(7),
			"train.device": "cpu", "name": "y", "train.eval_every": int64(3)}, nil},
		{"a model key", map[string]any{"model.n_layer": int64(2)}, []string{"model.n_layer: 4 in the run, 2 asked"}},
		{"another preset", map[string]any{"model.preset": "default"}, []string{"model.attn_block_skip_gain: "}},
		{"the schedule and the data", map[string]any{"train.max_steps": int64(40), "data.num_token_mult": 6.0, "train.optim.momentum": 0.9},
			[]string{"data.num_token_mult: 2 in the run, 6 asked", "train.max_steps: 20 in the run, 40 asked", "train.optim.momentum: 0.95 in the run, 0.9 asked"}},
		{"another tokenizer", map[string]any{"data.tokenizer": "/elsewhere/tokenizer.json"},
			[]string{"data.tokenizer: /cache/tokenizers/stdlib-300.json in the run, /elsewhere/tokenizer.json asked"}},
		{"a vocabulary set", map[string]any{"model.vocab_size": int64(512)}, []string{"model.vocab_size: 300 in the run, 512 asked"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			asked, err := Parse("asked.toml", []byte(base), "x", c.sets)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Differences(run, asked)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.want) == 0 && len(got) != 0 {
				t.Fatalf("differences %q, want none", got)
			}
			for _, w := range c.want {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("differences %q lack %q", got, w)
				}
			}
		})
	}
}
