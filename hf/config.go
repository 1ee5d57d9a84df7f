// Package hf maps clm models to and from Hugging Face model folders: the
// config.json of a folder, the names of its weights, and (export*.go) the
// whole folder `clm export` writes. It knows the model configuration only
// as data, the JSON object that model.Config marshals (the original yaml's
// keys), and the weights only as safetensors tensors, so it never reaches
// libtorch: callers build a model.Config from the keys it returns
// (model.PresetWith) and load the tensors themselves.
//
// This file is the mapping that export and import share:
//
//   - ConfigJSON writes the config.json of an export. A model that a plain
//     Hugging Face GPT-2 computes exactly (PlainGPT2) is written as
//     "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], with
//     GPT2Config's keys only (plus n_ctx, clm_preset and clm_version);
//     transformers opens it without remote code. Every other model is
//     written as "model_type": "clm", "architectures": ["CLMForCausalLM"],
//     with the GPT2Config keys that apply, every model key under its
//     original name, n_inner, clm_preset, clm_version, and an auto_map to the
//     remote code (configuration_clm.py, modeling_clm.py).
//   - ModelKeysFromConfig reads a config.json of either kind (or of any
//     transformers GPT-2) back into model keys, refusing, by name, a key
//     whose value clm cannot compute.
//   - ToGPT2 and FromGPT2 rename the weights of a plain model between clm's
//     names and GPT2LMHeadModel's: clm's attn.qk_attn [d, 2d] and
//     attn.v_attn [d, d] are the columns [W_q W_k | W_v] of GPT-2's
//     attn.c_attn [d, 3d]; clm's block and attention gains (all 1 or 0 in a
//     plain model) have no GPT-2 tensor. Every other name is the same:
//     clm's names are the original's GPT2LMHeadModel module tree. The
//     remote-code export keeps clm's names as they are.
package hf

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
)

// Model types and architectures of config.json.
const (
	// ModelTypeCLM is the model_type of a remote-code export.
	ModelTypeCLM = "clm"
	// ArchCLM is its architecture, the class of modeling_clm.py.
	ArchCLM = "CLMForCausalLM"
	// ModelTypeGPT2 is the model_type of a plain GPT-2 export.
	ModelTypeGPT2 = "gpt2"
	// ArchGPT2 is transformers' GPT-2 with the tied language-model head.
	ArchGPT2 = "GPT2LMHeadModel"
	// ConfigModule and ModelingModule are the remote-code files.
	ConfigModule   = "configuration_clm.py"
	ModelingModule = "modeling_clm.py"
)

// AutoMap is config.json's auto_map of a remote-code export.
var AutoMap = map[string]string{
	"AutoConfig":           "configuration_clm.CLMConfig",
	"AutoModelForCausalLM": "modeling_clm.CLMForCausalLM",
}

// ModelKeys is a clm model configuration as the JSON object that
// model.Config marshals: the original yaml's keys, numbers as float64,
// null (nil) for an unset optional value. Build one with ParseModelKeys
// from model.Config.JSON() (or a checkpoint's "config" metadata); turn one
// back into a model.Config with model.PresetWith("default", keys) (every
// key overridden, so the preset's links change nothing).
type ModelKeys map[string]any

// ParseModelKeys decodes a model configuration written by model.Config.JSON.
func ParseModelKeys(data []byte) (ModelKeys, error) {
	var m ModelKeys
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("model config: not a JSON object")
	}
	return m, nil
}

// Meta is what config.json says besides the model: the special tokens
// (-1: none, written as null) and clm's provenance.
type Meta struct {
	// BOS, EOS and Pad are token ids; clm's tokenizers have one special
	// token, <|endoftext|>, which is all three (as in GPT-2 and in the
	// original's collator, whose pad is the eos token).
	BOS, EOS, Pad int
	// Preset is the run's model.preset (clm_preset).
	Preset string
	// Version is the clm version that wrote the folder (clm_version).
	Version string
}

// gpt2Keys are the GPT2Config keys that are also model keys, with the same
// meaning (activation_function is one only in a plain export, where it is
// written under its transformers name; see GPT2Activation).
var gpt2Keys = []string{"vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
	"resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range"}

// plainRequired are the model keys that a plain GPT-2 block fixes: Pre-LN
// LayerNorm, sequential, no query/key or logit norm, unit skips and
// residual gains that never train, the softmax alone (no Eq. 5 terms) and
// plain value and projection matrices (no Eq. 6).
var plainRequired = []struct {
	key  string
	want any
}{
	{"norm_type", "ln"}, {"norm_position", "pre"}, {"parallel_layers", false},
	{"qk_norm_type", "none"}, {"dot_norm_type", "none"},
	{"attn_block_resid_gain", 1.0}, {"attn_block_skip_gain", 1.0},
	{"mlp_block_resid_gain", 1.0}, {"mlp_block_skip_gain", 1.0},
	{"trainable_attn_block_gains", false}, {"trainable_mlp_block_gains", false},
	{"attn_mat_resid_gain", 1.0}, {"centre_attn", false}, {"trainable_attn_mat_gains", false},
	{"value_skip_gain", nil}, {"proj_skip_gain", nil},
}

// hfActivations are the activations whose transformers ACT2FN function is
// clm's, by clm name; leaky_relu is one only with slope 0 (relu) or 0.01
// (nn.LeakyReLU's default), see GPT2Activation.
var hfActivations = []string{"relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast",
	"quick_gelu", "silu", "swish", "tanh", "sigmoid"}

// GPT2Activation is the transformers activation_function that computes
// m's MLP nonlinearity exactly, and false when there is none.
func GPT2Activation(m ModelKeys) (string, bool) {
	act, _ := m["activation_function"].(string)
	slope, _ := m["lrelu_neg_slope"].(float64)
	switch {
	case act == "leaky_relu" && slope == 0:
		return "relu", true
	case act == "leaky_relu" && slope == 0.01:
		return "leaky_relu", true
	case slices.Contains(hfActivations, act):
		return act, true
	}
	return "", false
}

// PlainGPT2 reports whether transformers' GPT2LMHeadModel computes m
// exactly, and if not, the first key that prevents it (as "key = value").
// Initialisation keys do not matter (the weights are given), nor do the
// biases clm keeps as frozen zeros (GPT-2 has biases there).
func PlainGPT2(m ModelKeys) (bool, string) {
	for _, r := range plainRequired {
		v, ok := m[r.key]
		if !ok || v != r.want {
			return false, fmt.Sprintf("%s = %s", r.key, jsonValue(v))
		}
	}
	if _, ok := GPT2Activation(m); !ok {
		return false, fmt.Sprintf("activation_function = %s with lrelu_neg_slope = %s",
			jsonValue(m["activation_function"]), jsonValue(m["lrelu_neg_slope"]))
	}
	return true, ""
}

func jsonValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// NInner is the MLP width int(n_embd·mlp_width_mult) (GPT2Config's
// n_inner).
func NInner(m ModelKeys) int {
	d, _ := m["n_embd"].(float64)
	mult, _ := m["mlp_width_mult"].(float64)
	return int(d * mult)
}

// ConfigJSON is the config.json of an export of the model m (see the
// package comment for its two forms).
func ConfigJSON(m ModelKeys, meta Meta) ([]byte, error) {
	out := map[string]any{}
	for _, k := range gpt2Keys {
		v, ok := m[k]
		if !ok {
			return nil, fmt.Errorf("model config: no key %s", k)
		}
		out[k] = v
	}
	tok := func(id int) any {
		if id < 0 {
			return nil
		}
		return id
	}
	out["n_inner"] = NInner(m)
	out["bos_token_id"], out["eos_token_id"], out["pad_token_id"] = tok(meta.BOS), tok(meta.EOS), tok(meta.Pad)
	out["tie_word_embeddings"] = true
	out["dtype"] = "float32"
	out["clm_preset"], out["clm_version"] = meta.Preset, meta.Version
	if ok, _ := PlainGPT2(m); ok {
		out["model_type"], out["architectures"] = ModelTypeGPT2, []string{ArchGPT2}
		out["activation_function"], _ = GPT2Activation(m)
		out["n_ctx"] = m["context_length"]
		out["scale_attn_weights"], out["scale_attn_by_inverse_layer_idx"] = true, false
		out["reorder_and_upcast_attn"], out["add_cross_attention"] = false, false
		out["use_cache"] = true
	} else {
		for k, v := range m {
			out[k] = v
		}
		out["model_type"], out["architectures"] = ModelTypeCLM, []string{ArchCLM}
		out["auto_map"] = AutoMap
		out["use_cache"] = false
	}
	return indentJSON(out), nil
}

// hfOnlyKeys are the keys of a clm config.json that are not model keys:
// what ConfigJSON adds, and what transformers writes when it saves a
// config again.
var hfOnlyKeys = []string{"model_type", "architectures", "auto_map", "n_inner", "bos_token_id",
	"eos_token_id", "pad_token_id", "tie_word_embeddings", "dtype", "torch_dtype", "clm_preset",
	"clm_version", "use_cache", "transformers_version", "_name_or_path"}

// gpt2Ignored are GPT2Config keys that do not change a causal LM's logits:
// the sequence-summary head of GPT2DoubleHeadsModel, bookkeeping, the
// special tokens, and reorder_and_upcast_attn (which only changes the
// precision of the attention product).
var gpt2Ignored = []string{"summary_type", "summary_use_proj", "summary_activation",
	"summary_proj_to_labels", "summary_first_dropout", "task_specific_params", "use_cache",
	"reorder_and_upcast_attn", "model_type", "architectures", "bos_token_id", "eos_token_id",
	"pad_token_id", "dtype", "torch_dtype", "transformers_version", "_name_or_path",
	"clm_preset", "clm_version", "output_attentions", "output_hidden_states", "return_dict"}

// gpt2Fixed are GPT2Config keys whose other values clm cannot compute.
var gpt2Fixed = map[string]any{"scale_attn_weights": true, "scale_attn_by_inverse_layer_idx": false,
	"add_cross_attention": false, "tie_word_embeddings": true}

// ModelKeysFromConfig reads a config.json into model keys for
// model.PresetWith("default", keys) (every key of a clm export; for a
// GPT-2 the keys that differ from the default preset). A GPT-2 maps to the
// Pre-LN block with LayerNorm, its activation and trainable biases; a key clm cannot
// compute, or does not know, is an error that names it. plain says which
// kind the folder is (its weights then have GPT-2's names, see FromGPT2).
func ModelKeysFromConfig(data []byte) (keys ModelKeys, plain bool, err error) {
	var c map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, false, fmt.Errorf("config.json: %w", err)
	}
	switch c["model_type"] {
	case ModelTypeCLM:
		keys = ModelKeys{}
		for k, v := range c {
			if !slices.Contains(hfOnlyKeys, k) {
				keys[k] = v
			}
		}
		return keys, false, nil
	case ModelTypeGPT2:
		keys, err = gpt2ModelKeys(c)
		return keys, true, err
	}
	return nil, false, fmt.Errorf("config.json: model_type %s is neither %q nor %q", jsonValue(c["model_type"]), ModelTypeGPT2, ModelTypeCLM)
}

// gpt2Defaults are GPT2Config's defaults of the keys it shares with clm,
// for a config.json that leaves one out (transformers then uses these).
var gpt2Defaults = map[string]any{"vocab_size": 50257.0, "n_positions": 1024.0, "n_embd": 768.0,
	"n_layer": 12.0, "n_head": 12.0, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
	"layer_norm_epsilon": 1e-5, "initializer_range": 0.02}

// gpt2ModelKeys maps the keys of a GPT2Config to model keys.
func gpt2ModelKeys(c map[string]any) (ModelKeys, error) {
	c = maps.Clone(c)
	for k, v := range gpt2Defaults {
		if _, ok := c[k]; !ok {
			c[k] = v
		}
	}
	keys := ModelKeys{"norm_type": "ln", "activation_function": "gelu_new", "trainable_biases": true}
	names := slices.Sorted(maps.Keys(c))
	for _, k := range names {
		v := c[k]
		switch {
		case slices.Contains(gpt2Keys, k):
			keys[k] = v
		case slices.Contains(gpt2Ignored, k):
		case k == "n_ctx" || k == "n_inner" || k == "activation_function":
		case gpt2Fixed[k] != nil:
			if v != gpt2Fixed[k] {
				return nil, fmt.Errorf("config.json: %s = %s: clm computes only %s", k, jsonValue(v), jsonValue(gpt2Fixed[k]))
			}
		default:
			return nil, fmt.Errorf("config.json: key %s has no clm equivalent", k)
		}
	}
	if err := gpt2Derived(c, keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// gpt2Derived sets the model keys that GPT2Config spells differently:
// context_length (n_ctx, else n_positions), mlp_width_mult (n_inner,
// default 4·n_embd) and the activation (default gelu_new).
func gpt2Derived(c map[string]any, keys ModelKeys) error {
	if n, ok := c["n_ctx"]; ok {
		keys["context_length"] = n
	} else if n, ok := c["n_positions"]; ok {
		keys["context_length"] = n
	}
	d, _ := c["n_embd"].(float64)
	if d <= 0 {
		return fmt.Errorf("config.json: n_embd = %s is not a positive number", jsonValue(c["n_embd"]))
	}
	if inner, ok := c["n_inner"].(float64); ok {
		mult := inner / d
		if int(d*mult) != int(inner) || inner != math.Trunc(inner) {
			return fmt.Errorf("config.json: n_inner = %v is not int(n_embd·m) for any float m", inner)
		}
		keys["mlp_width_mult"] = mult
	} else if c["n_inner"] != nil {
		return fmt.Errorf("config.json: n_inner = %s is not a number", jsonValue(c["n_inner"]))
	}
	if act, ok := c["activation_function"]; ok {
		switch act {
		case "leaky_relu":
			keys["activation_function"], keys["lrelu_neg_slope"] = "leaky_relu", 0.01
		default:
			s, _ := act.(string)
			if !slices.Contains(hfActivations, s) {
				return fmt.Errorf("config.json: activation_function = %s has no clm equivalent (have leaky_relu, %s)",
					jsonValue(act), strings.Join(hfActivations, ", "))
			}
			keys["activation_function"] = s
		}
	}
	return nil
}

// sortedNames are the names of tensors, sorted (for error messages).
func sortedNames[T any](m map[string]T) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
