package model

import (
	"math"
	"strings"
	"testing"

	"clm/torch"
	"clm/torch/torchtest"
)

// TestModelTensorsMatchSpec: the tensors New allocates are exactly
// Config.Params() (checked against model.py by config_test.go), for every
// preset, and their element count is ParamCount.
func TestModelTensorsMatchSpec(t *testing.T) {
	for _, name := range PresetNames() {
		t.Run(name, func(t *testing.T) {
			torchtest.Guard(t)
			cfg := smallConfig(t, name, nil)
			m, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			specs := cfg.Params()
			all := m.Params().All()
			if len(all) != len(specs) {
				t.Fatalf("%d tensors, spec has %d", len(all), len(specs))
			}
			var n, trainable int64
			for i, p := range all {
				if p.Name != specs[i].Name || p.T.Numel() != numel(specs[i].Shape) {
					t.Fatalf("tensor %d: %s %v, spec %s %v", i, p.Name, p.T.Shape(), specs[i].Name, specs[i].Shape)
				}
				if p.T.RequiresGrad() != p.Trainable {
					t.Errorf("%s: requires_grad %v, spec %v", p.Name, p.T.RequiresGrad(), p.Trainable)
				}
				if !p.Buffer {
					n += p.T.Numel()
					if p.Trainable {
						trainable += p.T.Numel()
					}
				}
			}
			if wn, wt := cfg.ParamCount(); n != wn || trainable != wt {
				t.Errorf("counted %d/%d, ParamCount %d/%d", n, trainable, wn, wt)
			}
		})
	}
}

// TestPaperParameterCounts reproduces the paper's sizes at 18 layers, width
// 768, context 128: Pre-LN ≈ 167M and SAS ≈ 146M. Those figures match
// GPT-2's vocabulary (50257); with the code tokenizer's 52000 words the same
// models have 1.34M more (168.3M and 147.6M).
func TestPaperParameterCounts(t *testing.T) {
	cases := []struct {
		preset string
		vocab  int64
		wantM  float64
	}{
		{"default", 50257, 167},
		{"skipless", 50257, 146},
		{"default", 52000, 168.3},
		{"skipless", 52000, 147.6},
		{"default-parallel", 52000, 168.3},
		{"skipless-parallel", 52000, 147.6},
		{"op", 52000, 168.3},
		{"value-skipinit", 52000, 168.3},
	}
	for _, c := range cases {
		cfg, err := PresetWith(c.preset, map[string]any{"n_layer": int64(18), "vocab_size": c.vocab})
		if err != nil {
			t.Fatal(err)
		}
		total, trainable := cfg.ParamCount()
		t.Logf("%-18s vocab %5d: %6.1fM parameters (%6.1fM trainable)", c.preset, c.vocab, float64(total)/1e6, float64(trainable)/1e6)
		if got := float64(total) / 1e6; math.Abs(got-c.wantM) > 0.5 {
			t.Errorf("%s vocab %d: %.1fM parameters, want about %.1fM", c.preset, c.vocab, got, c.wantM)
		}
	}
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

// TestLoadStateMismatch: loading weights that do not fit the model names
// every missing, unexpected and misshapen tensor.
func TestLoadStateMismatch(t *testing.T) {
	torchtest.Guard(t)
	s := torch.NewScope()
	defer s.Close()
	m, err := New(smallConfig(t, "default", nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	good := m.State()
	drop := func(name string) []torch.Named {
		var out []torch.Named
		for _, n := range good {
			if n.Name != name {
				out = append(out, n)
			}
		}
		return out
	}
	cases := []struct {
		name    string
		tensors []torch.Named
		want    string
	}{
		{"missing", drop("transformer.ln_f.bias"), "missing transformer.ln_f.bias [64]"},
		{"unexpected", append(drop(""), torch.Named{Name: "lm_head.weight", Tensor: torch.Zeros([]int64{2}, torch.Float32, torch.CPU)}), "unexpected lm_head.weight"},
		{"shape", append(drop("transformer.wpe.weight"), torch.Named{Name: "transformer.wpe.weight", Tensor: torch.Zeros([]int64{32, 64}, torch.Float32, torch.CPU)}),
			"transformer.wpe.weight: shape [32 64], model has [64 64]"},
		{"dtype", append(drop("transformer.ln_f.weight"), torch.Named{Name: "transformer.ln_f.weight", Tensor: torch.Zeros([]int64{64}, torch.Int64, torch.CPU)}),
			"transformer.ln_f.weight: dtype int64 is not floating point"},
	}
	for _, c := range cases {
		err := m.LoadState(c.tensors)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if err := m.LoadState(good); err != nil {
		t.Errorf("loading the model's own state: %v", err)
	}
}

// TestRolesGiveTheOriginalsNameRules: the declared roles take the decisions
// the original takes by name, on every preset: weight decay for all but
// the parameters of LayerNorm/RMSNorm modules and names containing "bias"
// or "gain" (its optimizer groups); the gains it logs (names containing
// "gain"); the matrices Muon updates (2-D, not the embeddings).
func TestRolesGiveTheOriginalsNameRules(t *testing.T) {
	inNorm := func(name string) bool {
		parts := strings.Split(name, ".")
		for _, s := range parts[:len(parts)-1] {
			switch s {
			case "ln_1", "ln_2", "ln_f", "q_norm", "k_norm":
				return true
			}
		}
		return false
	}
	for _, name := range PresetNames() {
		cfg := smallConfig(t, name, nil)
		roles := map[Role]int{}
		for _, p := range cfg.Params() {
			roles[p.Role]++
			decays := !inNorm(p.Name) && !strings.Contains(p.Name, "bias") && !strings.Contains(p.Name, "gain")
			if !p.Buffer && p.Role.Decays() != decays {
				t.Errorf("%s: %s: role %v decays %v, the original's names say %v", name, p.Name, p.Role, p.Role.Decays(), decays)
			}
			if gain := strings.Contains(p.Name, "gain"); (p.Role == RoleGain) != gain {
				t.Errorf("%s: %s: role %v, a gain by name: %v", name, p.Name, p.Role, gain)
			}
			embedding := strings.HasPrefix(p.Name, "transformer.wte.") || strings.HasPrefix(p.Name, "transformer.wpe.")
			if matrix := len(p.Shape) == 2 && !p.Buffer && !embedding; (p.Role == RoleMatrix) != matrix {
				t.Errorf("%s: %s %v: role %v, a hidden matrix by name and shape: %v", name, p.Name, p.Shape, p.Role, matrix)
			}
			if p.Buffer != (p.Role == RoleInit) {
				t.Errorf("%s: %s: buffer %v, role %v", name, p.Name, p.Buffer, p.Role)
			}
		}
		t.Logf("%s: %d tensors per role %v", name, len(cfg.Params()), roles)
	}
}
