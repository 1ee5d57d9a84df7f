package hf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"clm/model"
	"clm/safetensors"
)

// gpt2JSON is a transformers GPT2Config as save_pretrained writes it (the
// keys of transformers 5), with overrides; a nil value deletes the key.
func gpt2JSON(t *testing.T, over map[string]any) []byte {
	t.Helper()
	c := map[string]any{
		"activation_function": "gelu_new", "add_cross_attention": false, "architectures": []string{"GPT2LMHeadModel"},
		"attn_pdrop": 0.1, "bos_token_id": 0, "dtype": "float32", "embd_pdrop": 0.1, "eos_token_id": 0,
		"initializer_range": 0.02, "layer_norm_epsilon": 1e-5, "model_type": "gpt2", "n_embd": 8, "n_head": 2,
		"n_inner": nil, "n_layer": 1, "n_positions": 6, "pad_token_id": nil, "reorder_and_upcast_attn": false,
		"resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": false, "scale_attn_weights": true,
		"summary_type": "cls_index", "tie_word_embeddings": true, "use_cache": true, "vocab_size": 11,
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resolve reads a config.json and resolves its keys as train does.
func resolve(data []byte) (model.Config, Format, error) {
	keys, format, preset, err := ReadConfig(data)
	if err != nil {
		return model.Config{}, "", err
	}
	c, err := model.PresetWith(preset, keys)
	return c, format, err
}

// TestReadConfigRefusals: a config.json that does not map onto clm is
// refused with one line that names the key, by ReadConfig or when its
// keys are resolved.
func TestReadConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		over map[string]any
		want string
	}{
		{map[string]any{"scale_attn_by_inverse_layer_idx": true}, "scale_attn_by_inverse_layer_idx = true"},
		{map[string]any{"scale_attn_weights": false}, "scale_attn_weights = false"},
		{map[string]any{"add_cross_attention": true}, "add_cross_attention = true"},
		{map[string]any{"tie_word_embeddings": false}, "tie_word_embeddings = false"},
		{map[string]any{"activation_function": "gelu_10"}, `activation_function = "gelu_10" has no clm equivalent`},
		{map[string]any{"n_inner": -4}, "n_inner = -4: want a positive MLP width"},
		{map[string]any{"n_inner": "wide"}, `n_inner = "wide" is not a number`},
		{map[string]any{"pruned_heads": map[string]any{"0": []int{1}}}, "pruned_heads"},
		{map[string]any{"model_type": "llama"}, `model_type "llama"`},
		{map[string]any{"model_type": nil}, "model_type null"},
		{map[string]any{"n_head": 3}, "model.n_embd: 8 is not divisible by n_head 3"},
		{map[string]any{"n_layer": 0}, "model.n_layer: 0 must be positive"},
		{map[string]any{"vocab_size": 1.5}, "vocab_size"},
		{map[string]any{"layer_norm_epsilon": -1}, "model.layer_norm_epsilon: -1 must not be negative"},
		// An original-code checkpoint: its extra keys are checked as clm's.
		{map[string]any{"norm_type": "batchnorm"}, `model.norm_type: unknown value "batchnorm"`},
		{map[string]any{"norm_type": "ln", "mlp_width_mult": 4, "n_inner": 30}, "n_inner = 30 is not clm's MLP width"},
		{map[string]any{"norm_type": "ln", "scale_attn_weights": false}, "scale_attn_weights = false"},
		{map[string]any{"norm_type": "ln", "centre_atten": true}, "model.centre_atten: unknown key"},
		{map[string]any{"model_type": "clm", "clm_preset": "nope"}, `unknown preset "nope"`},
		{map[string]any{"model_type": "clm", "value_skip_gain": "one"}, "value_skip_gain"},
	} {
		_, _, err := resolve(gpt2JSON(t, tc.over))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line with %q", tc.over, err, tc.want)
		}
	}
}

// TestReadConfigFormats: a plain GPT-2 is the default preset with GPT-2's
// LayerNorm, activation, sizes and dropouts; the original's keys and clm's
// export give their variant.
func TestReadConfigFormats(t *testing.T) {
	plain := model.Default()
	plain.NormType, plain.VocabSize, plain.NPositions, plain.ContextLength = model.NormLN, 11, 6, 6
	plain.NEmbd, plain.NLayer, plain.NHead, plain.ActivationFunction = 8, 1, 2, model.ActGELUNew
	plain.ResidPdrop, plain.EmbdPdrop, plain.AttnPdrop = 0.1, 0.1, 0.1
	original := plain.Clone() // the original's checkpoints freeze those biases
	plain.TrainableBiases = true
	relu := plain.Clone()
	relu.ActivationFunction, relu.LReLUNegSlope, relu.MLPWidthMult, relu.ContextLength = model.ActLeakyReLU, 0.01, 2.5, 4
	op, _ := model.Preset("op")
	skipless, _ := model.PresetWith("skipless", map[string]any{"n_layer": 3, "n_embd": 16, "n_head": 2, "context_length": 32})
	export := map[string]any{"model_type": "clm", "clm_preset": "skipless", "architectures": []string{"CLMForCausalLM"}}
	b, _ := skipless.JSON()
	var keys map[string]any
	json.Unmarshal(b, &keys)
	for k, v := range keys {
		export[k] = v
	}
	export["n_inner"] = 64
	for _, tc := range []struct {
		name   string
		over   map[string]any
		format Format
		want   model.Config
	}{
		{"plain", nil, FormatGPT2, plain},
		{"leaky relu, n_inner, n_ctx", map[string]any{"activation_function": "leaky_relu", "n_inner": 20, "n_ctx": 4}, FormatGPT2, relu},
		{"original op", map[string]any{"architectures": []string{"myGPT2LMHeadModel"}, "vocab_size": 52000, "n_positions": 1024, "n_embd": 768,
			"n_layer": 12, "n_head": 12, "resid_pdrop": 0, "embd_pdrop": 0, "attn_pdrop": 0, "context_length": 128,
			"activation_function": "leaky_relu", "norm_type": "none", "qk_norm_type": "rmsnorm", "attn_block_resid_gain": 0.2,
			"mlp_block_resid_gain": 0.2, "n_inner": 3072}, FormatOriginal, op},
		{"clm export", export, FormatCLM, skipless},
		{"original, GPT2Config's defaults", map[string]any{"vocab_size": nil, "n_positions": nil, "norm_type": "ln", "resid_pdrop": nil},
			FormatOriginal, func() model.Config {
				c := original.Clone()
				c.VocabSize, c.NPositions, c.ContextLength, c.ResidPdrop = 50257, 1024, 1024, 0.1
				return c
			}()},
	} {
		got, format, err := resolve(gpt2JSON(t, tc.over))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err := tc.want.Validate(); err != nil {
			t.Fatal(err)
		}
		if format != tc.format || !reflect.DeepEqual(got, tc.want) {
			gb, _ := got.JSON()
			wb, _ := tc.want.JSON()
			t.Errorf("%s: format %s, config\n%s\nwant %s\n%s", tc.name, format, gb, tc.format, wb)
		}
	}
}

// hfTensors are the tensors of a GPT2LMHeadModel for gpt2JSON's sizes
// (d 8, one layer, vocabulary 11, 6 positions), each filled with
// distinct values, under transformers' names.
func hfTensors() map[string]safetensors.Tensor {
	shapes := map[string][]int64{
		"transformer.wte.weight": {11, 8}, "transformer.wpe.weight": {6, 8},
		"transformer.h.0.ln_1.weight": {8}, "transformer.h.0.ln_1.bias": {8},
		"transformer.h.0.attn.c_attn.weight": {8, 24}, "transformer.h.0.attn.c_attn.bias": {24},
		"transformer.h.0.attn.c_proj.weight": {8, 8}, "transformer.h.0.attn.c_proj.bias": {8},
		"transformer.h.0.ln_2.weight": {8}, "transformer.h.0.ln_2.bias": {8},
		"transformer.h.0.mlp.c_fc.weight": {8, 32}, "transformer.h.0.mlp.c_fc.bias": {32},
		"transformer.h.0.mlp.c_proj.weight": {32, 8}, "transformer.h.0.mlp.c_proj.bias": {8},
		"transformer.ln_f.weight": {8}, "transformer.ln_f.bias": {8},
		"transformer.h.0.attn.bias": {1, 1, 6, 6},
	}
	out := map[string]safetensors.Tensor{}
	seed := float32(1)
	for _, name := range sortedNames(shapes) {
		n := int64(1)
		for _, s := range shapes[name] {
			n *= s
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = seed + float32(i)/1000
		}
		seed++
		out[name] = safetensors.NewTensor(name, shapes[name], v)
	}
	out["lm_head.weight"] = renamed(out["transformer.wte.weight"], "lm_head.weight")
	return out
}

func renamed(t safetensors.Tensor, name string) safetensors.Tensor {
	t.Name = name
	return t
}

// writeFolder writes a model folder: config.json, the tensors (in
// model.safetensors, or in two shards with an index), a tokenizer.json.
func writeFolder(t *testing.T, cfg []byte, tensors map[string]safetensors.Tensor, sharded bool) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644)
	os.WriteFile(filepath.Join(dir, TokenizerFile), []byte("{}"), 0o644)
	var all []safetensors.Tensor
	for _, k := range sortedNames(tensors) {
		all = append(all, tensors[k])
	}
	if !sharded {
		if err := safetensors.Write(filepath.Join(dir, WeightsFile), all, nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	index := map[string]string{}
	for i, part := range [][]safetensors.Tensor{all[:len(all)/2], all[len(all)/2:]} {
		name := fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)
		for _, x := range part {
			index[x.Name] = name
		}
		if err := safetensors.Write(filepath.Join(dir, name), part, nil); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": index})
	os.WriteFile(filepath.Join(dir, WeightsIndexFile), b, 0o644)
	return dir
}

// TestTensors: a GPT2LMHeadModel's tensors, with or without the
// "transformer." prefix, in one file or shards, are exactly the model's
// parameters under clm's names (c_attn split into qk_attn and v_attn by
// columns, the gains added); the mask buffer and the tied head are dropped.
func TestTensors(t *testing.T) {
	hfT := hfTensors()
	unprefixed := map[string]safetensors.Tensor{}
	for k, v := range hfT {
		k = strings.TrimPrefix(k, "transformer.")
		unprefixed[k] = renamed(v, k)
	}
	cfg, _, err := resolve(gpt2JSON(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range cfg.Params() {
		want = append(want, p.Name)
	}
	sort.Strings(want)
	for _, tc := range []struct {
		name    string
		tensors map[string]safetensors.Tensor
		sharded bool
	}{{"as saved", hfT, false}, {"no prefix", unprefixed, false}, {"sharded", hfT, true}} {
		f, err := Open(writeFolder(t, gpt2JSON(t, nil), tc.tensors, tc.sharded))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		tensors, release, err := f.Tensors(keysOf(t, cfg))
		defer release()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := map[string]safetensors.Tensor{}
		var names []string
		for _, x := range tensors {
			got[x.Name] = x
			names = append(names, x.Name)
		}
		sort.Strings(names)
		if !reflect.DeepEqual(names, want) {
			t.Errorf("%s: tensors\n%v\nthe model's\n%v", tc.name, names, want)
		}
		checkSplit(t, hfT, got)
		for name, x := range hfT {
			if have, ok := got[name]; ok && !reflect.DeepEqual(have.Data, x.Data) {
				t.Errorf("%s: %s differs from the file's", tc.name, name)
			}
		}
	}
}

// checkSplit: qk_attn holds c_attn's first 16 columns, v_attn its last 8.
func checkSplit(t *testing.T, hfT, got map[string]safetensors.Tensor) {
	t.Helper()
	w, _ := safetensors.FromBytes[float32](hfT["transformer.h.0.attn.c_attn.weight"].Data)
	qk, _ := safetensors.FromBytes[float32](got["transformer.h.0.attn.qk_attn.weight"].Data)
	v, _ := safetensors.FromBytes[float32](got["transformer.h.0.attn.v_attn.weight"].Data)
	b, _ := safetensors.FromBytes[float32](hfT["transformer.h.0.attn.c_attn.bias"].Data)
	qkb, _ := safetensors.FromBytes[float32](got["transformer.h.0.attn.qk_attn.bias"].Data)
	vb, _ := safetensors.FromBytes[float32](got["transformer.h.0.attn.v_attn.bias"].Data)
	if len(qk) != 8*16 || len(v) != 8*8 || len(qkb) != 16 || len(vb) != 8 {
		t.Fatalf("split sizes %d %d %d %d", len(qk), len(v), len(qkb), len(vb))
	}
	for r := 0; r < 8; r++ {
		for c := 0; c < 24; c++ {
			want := w[r*24+c]
			var have float32
			if c < 16 {
				have = qk[r*16+c]
			} else {
				have = v[r*8+c-16]
			}
			if have != want {
				t.Fatalf("c_attn[%d, %d] = %v, split %v", r, c, want, have)
			}
		}
	}
	for c := 0; c < 24; c++ {
		if (c < 16 && qkb[c] != b[c]) || (c >= 16 && vb[c-16] != b[c]) {
			t.Fatalf("c_attn.bias[%d] split wrongly", c)
		}
	}
}

// TestTensorsRefusals: weights that are not a GPT-2's, an untied head, and
// PyTorch pickles are refused with one line that names the tensor or
// file. (Shapes and dtypes are the loader's check, model.LoadState.)
func TestTensorsRefusals(t *testing.T) {
	edit := func(f func(m map[string]safetensors.Tensor)) map[string]safetensors.Tensor {
		m := hfTensors()
		f(m)
		return m
	}
	other := hfTensors()["transformer.wte.weight"]
	other.Data = append([]byte(nil), other.Data...)
	other.Data[0]++
	cfg, _, err := resolve(gpt2JSON(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		tensors map[string]safetensors.Tensor
		want    string
	}{
		{"missing", edit(func(m map[string]safetensors.Tensor) { delete(m, "transformer.wpe.weight") }), "missing transformer.wpe.weight"},
		{"extra", edit(func(m map[string]safetensors.Tensor) {
			m["score.weight"] = safetensors.NewTensor("score.weight", []int64{2, 8}, make([]float32, 16))
		}), "unexpected transformer.score.weight"},
		{"untied head", edit(func(m map[string]safetensors.Tensor) {
			m["lm_head.weight"] = renamed(other, "lm_head.weight")
		}), "lm_head.weight differs from transformer.wte.weight"},
		{"twice", edit(func(m map[string]safetensors.Tensor) {
			m["wpe.weight"] = renamed(m["transformer.wpe.weight"], "wpe.weight")
		}), "transformer.wpe.weight is in the weights twice"},
	} {
		f, err := Open(writeFolder(t, gpt2JSON(t, nil), tc.tensors, false))
		if err == nil {
			var release func()
			_, release, err = f.Tensors(keysOf(t, cfg))
			release()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", tc.name, err, tc.want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), gpt2JSON(t, nil), 0o644)
	os.WriteFile(filepath.Join(dir, pytorchWeights), []byte("pickle"), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "pytorch_model.bin") || !strings.Contains(err.Error(), "save_pretrained") {
		t.Errorf("pytorch_model.bin only: %v, want the conversion", err)
	}
	os.WriteFile(filepath.Join(dir, WeightsFile), []byte("x"), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "has no tokenizer.json") {
		t.Errorf("no tokenizer: %v", err)
	}
	os.WriteFile(filepath.Join(dir, vocabFile), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, mergesFile), []byte(""), 0o644)
	if f, err := Open(dir); err != nil || f.Tokenizer != filepath.Join(dir, vocabFile)+":"+filepath.Join(dir, mergesFile) {
		t.Errorf("GPT-2's vocab.json and merges.txt: %v", err)
	}
}
