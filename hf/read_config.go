package hf

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Format is which kind of GPT-2 checkpoint a model folder holds, decided
// by its config.json.
type Format string

// Formats.
const (
	// FormatGPT2 is a plain transformers GPT2LMHeadModel (model_type
	// "gpt2" with GPT2Config's keys only), clm's plain export included:
	// the default preset with GPT-2's LayerNorm, activation, sizes and
	// dropouts (ModelKeysFromConfig).
	FormatGPT2 Format = "gpt2"
	// FormatOriginal is a checkpoint of the original code: model_type
	// "gpt2" plus the keys of its model yaml, which give the variant; its
	// weights have clm's names (the original's module tree).
	FormatOriginal Format = "original"
	// FormatCLM is clm's remote-code export: model_type "clm" with every
	// model key (ModelKeysFromConfig); clm's weight names.
	FormatCLM Format = "clm"
)

// gpt2Known are the keys of a GPT-2 config.json that GPT2Config (or
// transformers' bookkeeping, or clm's export) defines; a model_type "gpt2"
// config.json with any other key is the original code's, whose extra keys
// are its model yaml's.
func gpt2Known(k string) bool {
	_, fixed := gpt2Fixed[k]
	return fixed || slices.Contains(gpt2Keys, k) || slices.Contains(gpt2Ignored, k) || slices.Contains(hfOnlyKeys, k) ||
		k == "n_ctx" || k == "n_inner" || k == "activation_function"
}

// ReadConfig maps a model folder's config.json onto clm's model keys, for
// model.PresetWith(preset, keys), and says which format the folder is. A
// setting clm's blocks cannot compute is refused with its key; a key clm
// does not know is refused when the keys are resolved (model.PresetWith
// names it).
func ReadConfig(data []byte) (keys ModelKeys, format Format, preset string, err error) {
	var c map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, "", "", fmt.Errorf("not a JSON object: %v", err)
	}
	preset = "default"
	if p, ok := c["clm_preset"].(string); ok && c["model_type"] == ModelTypeCLM {
		preset = p
	}
	if c["model_type"] == ModelTypeGPT2 {
		for k := range c {
			if !gpt2Known(k) {
				keys, err := originalModelKeys(c)
				return keys, FormatOriginal, preset, err
			}
		}
	}
	if n, ok := c["n_inner"].(float64); ok && n < 1 {
		return nil, "", "", fmt.Errorf("n_inner = %v: want a positive MLP width (or null: 4·n_embd)", n)
	}
	if c["model_type"] == ModelTypeCLM {
		if data, err = withoutGPT2Only(c); err != nil {
			return nil, "", "", err
		}
	}
	keys, plain, err := ModelKeysFromConfig(data)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "config.json: "))
	}
	if plain {
		return keys, FormatGPT2, preset, nil
	}
	return keys, FormatCLM, preset, nil
}

// withoutGPT2Only is a clm config.json without the GPT2Config keys that
// are not model keys (transformers writes them when it saves the config of
// a GPT2Config subclass again), refusing those whose value clm cannot
// compute.
func withoutGPT2Only(c map[string]any) ([]byte, error) {
	out := map[string]any{}
	for k, v := range c {
		want, fixed := gpt2Fixed[k]
		switch {
		case fixed && v != want:
			return nil, fmt.Errorf("%s = %s: clm computes only %s", k, jsonValue(v), jsonValue(want))
		case fixed || k == "n_ctx" || (slices.Contains(gpt2Ignored, k) && !slices.Contains(hfOnlyKeys, k)):
		default:
			out[k] = v
		}
	}
	return json.Marshal(out)
}

// originalModelKeys are the model keys of an original-code checkpoint's
// config.json: GPT2Config's keys that are model keys (its defaults for
// those left out) and every key of its model yaml (clm's names), with
// GPT2Config's settings that clm cannot compute refused; context_length is n_ctx, else n_positions, unless
// given, and n_inner must be the width clm derives.
func originalModelKeys(c map[string]any) (ModelKeys, error) {
	keys := ModelKeys{}
	for k, v := range gpt2Defaults { // its config is a GPT2Config: what it leaves out is GPT2Config's default
		keys[k] = v
	}
	for _, k := range sortedNames(c) {
		v := c[k]
		switch want, fixed := gpt2Fixed[k]; {
		case fixed && v != want:
			return nil, fmt.Errorf("%s = %s: clm computes only %s", k, jsonValue(v), jsonValue(want))
		case fixed, k == "n_ctx", k == "n_inner", slices.Contains(gpt2Ignored, k), slices.Contains(hfOnlyKeys, k):
		default:
			keys[k] = v
		}
	}
	if _, ok := keys["context_length"]; !ok {
		if n, ok := c["n_ctx"]; ok {
			keys["context_length"] = n
		} else {
			keys["context_length"] = keys["n_positions"]
		}
	}
	inner, ok := c["n_inner"].(float64)
	if !ok {
		if c["n_inner"] != nil {
			return nil, fmt.Errorf("n_inner = %s is not a number", jsonValue(c["n_inner"]))
		}
		return keys, nil
	}
	if _, ok := keys["mlp_width_mult"]; !ok {
		if d, _ := keys["n_embd"].(float64); d > 0 {
			keys["mlp_width_mult"] = inner / d
		}
	}
	if _, known := keys["n_embd"]; known && NInner(keys) != int(inner) {
		return nil, fmt.Errorf("n_inner = %v is not clm's MLP width int(n_embd·mlp_width_mult) = %d", inner, NInner(keys))
	}
	return keys, nil
}
