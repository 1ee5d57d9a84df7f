package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"clm/model"
)

// Format is which kind of GPT-2 checkpoint a model folder holds, decided
// by its config.json.
type Format string

// Formats.
const (
	// FormatGPT2 is a plain transformers GPT2LMHeadModel (model_type
	// "gpt2" and none of clm's keys): the default preset with GPT-2's
	// LayerNorm, activation, sizes and dropouts.
	FormatGPT2 Format = "gpt2"
	// FormatOriginal is a checkpoint of the original code: model_type
	// "gpt2" plus the keys of its model yaml, which give the variant.
	FormatOriginal Format = "original"
	// FormatCLM is clm's own export: model_type "clm", every model key
	// under its yaml name and clm_preset.
	FormatCLM Format = "clm"
)

// leakyReLUSlope is the negative slope of transformers' "leaky_relu"
// (torch.nn.LeakyReLU's default).
const leakyReLUSlope = 0.01

// gpt2Keys are the keys of GPT2Config that clm's model config shares,
// under the same name and meaning.
var gpt2Keys = map[string]bool{
	"vocab_size": true, "n_positions": true, "n_embd": true, "n_layer": true, "n_head": true,
	"activation_function": true, "resid_pdrop": true, "embd_pdrop": true, "attn_pdrop": true,
	"layer_norm_epsilon": true, "initializer_range": true,
}

// modelKeys are the JSON keys of model.Config.
var modelKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(model.Config{})
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); k != "" && k != "-" {
			keys[k] = true
		}
	}
	return keys
}()

// refusal is a GPT2Config setting clm's blocks cannot express: the key,
// the value that GPT-2 (and so clm) has, and why another does not map.
type refusal struct {
	key  string
	want any
	why  string
}

var refusals = []refusal{
	{"scale_attn_weights", true, "clm always scales the attention logits by 1/√head_dim"},
	{"scale_attn_by_inverse_layer_idx", false, "clm does not scale the attention logits by 1/(layer+1)"},
	{"reorder_and_upcast_attn", false, "clm has no reordered, upcast attention"},
	{"add_cross_attention", false, "clm's blocks have no cross-attention"},
}

// ParseConfig maps the config.json of a Hugging Face model folder onto
// clm's model config, validated, and says which format it is. A setting
// that clm's blocks cannot express is refused with its key.
func ParseConfig(data []byte) (model.Config, Format, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return model.Config{}, "", fmt.Errorf("not a JSON object: %v", err)
	}
	var mt string
	if err := getKey(raw, "model_type", &mt); err != nil || mt == "" {
		return model.Config{}, "", fmt.Errorf("model_type: want \"gpt2\" (a GPT2LMHeadModel) or \"clm\" (clm's export), not %s", orMissing(raw["model_type"]))
	}
	if mt != "gpt2" && mt != "clm" {
		return model.Config{}, "", fmt.Errorf("model_type %q: clm opens GPT-2-family checkpoints only (model_type \"gpt2\" or \"clm\")", mt)
	}
	if err := checkRefusals(raw); err != nil {
		return model.Config{}, "", err
	}
	format := FormatGPT2
	switch {
	case mt == "clm":
		format = FormatCLM
	case hasModelKeys(raw):
		format = FormatOriginal
	}
	var c model.Config
	var err error
	if format == FormatGPT2 {
		c, err = gpt2Config(raw)
	} else {
		c, err = variantConfig(raw)
	}
	if err != nil {
		return model.Config{}, "", err
	}
	if err := checkInner(raw, c); err != nil {
		return model.Config{}, "", err
	}
	return c, format, nil
}

// hasModelKeys reports whether raw holds any of clm's model keys that
// GPT2Config lacks (the original's or clm's extra keys).
func hasModelKeys(raw map[string]json.RawMessage) bool {
	for k := range raw {
		if modelKeys[k] && !gpt2Keys[k] {
			return true
		}
	}
	return false
}

// checkRefusals refuses GPT2Config settings that clm cannot express.
func checkRefusals(raw map[string]json.RawMessage) error {
	for _, r := range refusals {
		if _, ok := raw[r.key]; !ok {
			continue
		}
		var v bool
		if err := getKey(raw, r.key, &v); err != nil {
			return err
		}
		if v != r.want {
			return fmt.Errorf("%s = %v does not map onto clm: %s", r.key, v, r.why)
		}
	}
	var pruned map[string]any
	if getKey(raw, "pruned_heads", &pruned) == nil && len(pruned) > 0 {
		return fmt.Errorf("pruned_heads: clm's attention has no pruned heads")
	}
	return nil
}

// gpt2Config is a plain GPT2LMHeadModel's config as clm's: the default
// preset with GPT-2's LayerNorm, activation, sizes, epsilon, MLP width
// and dropouts (GPT2Config's defaults for the keys config.json omits).
// The training length context_length is the model's n_positions.
func gpt2Config(raw map[string]json.RawMessage) (model.Config, error) {
	c := model.Default()
	c.NormType = model.NormLN
	c.VocabSize, c.NPositions, c.NEmbd, c.NLayer, c.NHead = 50257, 1024, 768, 12, 12
	c.ResidPdrop, c.EmbdPdrop, c.AttnPdrop = 0.1, 0.1, 0.1
	c.ActivationFunction = model.ActGELUNew
	for _, f := range []struct {
		key string
		dst any
	}{
		{"vocab_size", &c.VocabSize}, {"n_positions", &c.NPositions}, {"n_embd", &c.NEmbd},
		{"n_layer", &c.NLayer}, {"n_head", &c.NHead}, {"activation_function", &c.ActivationFunction},
		{"resid_pdrop", &c.ResidPdrop}, {"embd_pdrop", &c.EmbdPdrop}, {"attn_pdrop", &c.AttnPdrop},
		{"layer_norm_epsilon", &c.LayerNormEpsilon}, {"initializer_range", &c.InitializerRange},
	} {
		if _, ok := raw[f.key]; ok {
			if err := getKey(raw, f.key, f.dst); err != nil {
				return model.Config{}, err
			}
		}
	}
	if c.ActivationFunction == model.ActLeakyReLU {
		c.LReLUNegSlope = leakyReLUSlope
	}
	c.ContextLength = c.NPositions
	c.MLPWidthMult = 4
	if inner, ok := raw["n_inner"]; ok && !bytes.Equal(bytes.TrimSpace(inner), []byte("null")) {
		var n int
		if err := getKey(raw, "n_inner", &n); err != nil {
			return model.Config{}, err
		}
		if n < 1 {
			return model.Config{}, fmt.Errorf("n_inner = %d: want a positive MLP width (or null: 4·n_embd)", n)
		}
		if c.NEmbd > 0 {
			c.MLPWidthMult = float64(n) / float64(c.NEmbd)
		}
	}
	if err := c.Validate(); err != nil {
		return model.Config{}, unprefix(err)
	}
	return c, nil
}

// variantConfig is the config of the original code's checkpoint or of
// clm's export: every model key it holds over its clm_preset (default:
// "default"); context_length defaults to n_positions.
func variantConfig(raw map[string]json.RawMessage) (model.Config, error) {
	preset := "default"
	if _, ok := raw["clm_preset"]; ok {
		if err := getKey(raw, "clm_preset", &preset); err != nil {
			return model.Config{}, err
		}
	}
	over := map[string]any{}
	for k, v := range raw {
		if !modelKeys[k] {
			continue
		}
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return model.Config{}, fmt.Errorf("%s: %v", k, err)
		}
		over[k] = x
	}
	if _, ok := over["context_length"]; !ok {
		if np, ok := over["n_positions"]; ok {
			over["context_length"] = np
		} else if p, err := model.Preset(preset); err == nil {
			over["context_length"] = p.NPositions
		}
	}
	c, err := model.PresetWith(preset, over)
	if err != nil {
		return model.Config{}, unprefix(err)
	}
	return c, nil
}

// checkInner refuses an n_inner that is not the MLP width clm derives
// from n_embd and mlp_width_mult.
func checkInner(raw map[string]json.RawMessage, c model.Config) error {
	inner, ok := raw["n_inner"]
	if !ok || bytes.Equal(bytes.TrimSpace(inner), []byte("null")) {
		return nil
	}
	var n int
	if err := getKey(raw, "n_inner", &n); err != nil {
		return err
	}
	if n != c.NInner {
		return fmt.Errorf("n_inner = %d is not expressible: clm's MLP width is int(n_embd·mlp_width_mult) = int(%d·%v) = %d",
			n, c.NEmbd, c.MLPWidthMult, c.NInner)
	}
	return nil
}

// unprefix drops the "model." of model's errors: in config.json the keys
// have no section.
func unprefix(err error) error {
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "model.", ""))
}

// getKey decodes raw[key] into dst; the error names the key.
func getKey(raw map[string]json.RawMessage, key string, dst any) error {
	v, ok := raw[key]
	if !ok {
		return fmt.Errorf("%s: missing", key)
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%s: want %s, not %s", key, kindOf(dst), bytes.TrimSpace(v))
	}
	return nil
}

func kindOf(dst any) string {
	switch reflect.TypeOf(dst).Elem().Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "another value"
}

func orMissing(v json.RawMessage) string {
	if v == nil {
		return "nothing"
	}
	return string(bytes.TrimSpace(v))
}
