package train

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"clm/model"
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

// TestConfigTOMLRoundTrip: a run folder's config.toml keeps the preset and
// only the model keys that differ from it, integers as integers, and loads
// back to the same experiment, for every preset with and without overrides.
func TestConfigTOMLRoundTrip(t *testing.T) {
	overrides := []map[string]any{nil,
		{"model.n_layer": int64(3), "model.n_embd": int64(64), "model.n_head": int64(2), "train.lr": 3e-4},
		{"model.mlp_block_resid_gain": 0.25, "model.vocab_size": int64(1000), "model.activation_function": "gelu_new"},
	}
	for _, preset := range model.PresetNames() {
		for i, sets := range overrides {
			t.Run(fmt.Sprintf("%s/%d", preset, i), func(t *testing.T) {
				src := fmt.Sprintf("[model]\npreset = %q\n", preset)
				e, err := Parse("x.toml", []byte(src), "x", sets)
				if err != nil {
					t.Skipf("%s does not take these overrides: %v", preset, err)
				}
				b, err := e.TOML()
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), fmt.Sprintf("preset = %q", preset)) || strings.Contains(string(b), "n_positions") {
					t.Errorf("config.toml does not name preset %q with only the differing keys:\n%s", preset, b)
				}
				if strings.Contains(string(b), "n_layer = 3.0") || strings.Contains(string(b), "vocab_size = 1000.0") {
					t.Errorf("integers written as floats:\n%s", b)
				}
				back, err := Parse("config.toml", b, "x", nil)
				if err != nil {
					t.Fatalf("config.toml does not load: %v\n%s", err, b)
				}
				if !reflect.DeepEqual(back.Model, e.Model) || back.Preset != e.Preset || !reflect.DeepEqual(back.Train, e.Train) ||
					!reflect.DeepEqual(back.Data, e.Data) || back.Report != e.Report {
					t.Errorf("config.toml loads to another experiment:\n%s", b)
				}
			})
		}
	}
}
