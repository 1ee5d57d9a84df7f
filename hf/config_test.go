package hf

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"clm/model"
	"clm/safetensors"
)

func keysOf(t *testing.T, c model.Config) ModelKeys {
	t.Helper()
	b, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseModelKeys(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func small(t *testing.T, preset string, set map[string]any) model.Config {
	t.Helper()
	o := map[string]any{"n_layer": int64(3), "n_embd": int64(8), "n_head": int64(2), "vocab_size": int64(11),
		"n_positions": int64(16), "context_length": int64(12)}
	for k, v := range set {
		o[k] = v
	}
	c, err := model.PresetWith(preset, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConfigRoundTrip: every preset (and plain GPT-2 configs) written by
// ConfigJSON reads back through ModelKeysFromConfig into the same model:
// the whole config for a clm export, every key that changes the logits for
// a plain GPT-2 one; the kind is the one PlainGPT2 says.
func TestConfigRoundTrip(t *testing.T) {
	cases := []struct {
		preset string
		set    map[string]any
		plain  bool
		act    string
	}{
		{preset: "default"}, {preset: "default-parallel"}, {preset: "skipless"},
		{preset: "skipless-parallel"}, {preset: "op"}, {preset: "value-skipinit"},
		{preset: "default", set: map[string]any{"norm_type": "ln", "activation_function": "gelu_new"}, plain: true, act: "gelu_new"},
		{preset: "default", set: map[string]any{"norm_type": "ln"}, plain: true, act: "relu"},
		{preset: "default", set: map[string]any{"norm_type": "ln", "lrelu_neg_slope": 0.01, "mlp_width_mult": 2.5}, plain: true, act: "leaky_relu"},
		{preset: "default", set: map[string]any{"norm_type": "ln", "lrelu_neg_slope": 0.2}},
		{preset: "default", set: map[string]any{"norm_type": "ln", "trainable_attn_block_gains": true}},
		{preset: "default", set: map[string]any{"norm_type": "ln", "norm_position": "post"}},
	}
	for _, c := range cases {
		cfg := small(t, c.preset, c.set)
		m := keysOf(t, cfg)
		plain, why := PlainGPT2(m)
		if plain != c.plain {
			t.Errorf("%s %v: PlainGPT2 = %v (%s), want %v", c.preset, c.set, plain, why, c.plain)
			continue
		}
		b, err := ConfigJSON(m, Meta{BOS: 3, EOS: 3, Pad: 3, Preset: c.preset, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		wantType := map[bool]string{true: ModelTypeGPT2, false: ModelTypeCLM}[c.plain]
		if out["model_type"] != wantType || out["n_inner"] != float64(cfg.NInner) || out["eos_token_id"] != 3.0 {
			t.Errorf("%s %v: config.json %s", c.preset, c.set, b)
		}
		if c.plain && out["activation_function"] != c.act {
			t.Errorf("%s %v: activation_function %v, want %s", c.preset, c.set, out["activation_function"], c.act)
		}
		keys, isPlain, err := ModelKeysFromConfig(b)
		if err != nil || isPlain != c.plain {
			t.Fatalf("%s %v: ModelKeysFromConfig: plain %v, %v", c.preset, c.set, isPlain, err)
		}
		back, err := model.PresetWith("default", keys)
		if err != nil {
			t.Fatalf("%s %v: %v", c.preset, c.set, err)
		}
		if c.plain {
			// Only the keys that change the logits come back.
			back.InitializerRange, back.ValInitType, back.ProjInitType = cfg.InitializerRange, cfg.ValInitType, cfg.ProjInitType
			back.QueryInitStd, back.KeyInitStd = cfg.QueryInitStd, cfg.KeyInitStd
			if !back.TrainableBiases {
				t.Errorf("%s %v: a GPT-2 reads back with frozen biases", c.preset, c.set)
			}
			back.TrainableBiases = cfg.TrainableBiases // GPT-2's biases train; clm's here are frozen zeros
			if c.act == "relu" {
				back.ActivationFunction = cfg.ActivationFunction // relu computes leaky_relu with slope 0
			}
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Errorf("%s %v: read back\n%+v\nwant\n%+v", c.preset, c.set, back, cfg)
		}
	}
}

// transformersGPT2 is the config.json transformers 5.24 writes for
// GPT2Config(n_layer=2, n_embd=32, n_head=2).
const transformersGPT2 = `{"activation_function": "gelu_new", "add_cross_attention": false, "attn_pdrop": 0.1,
 "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
 "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_inner": null,
 "n_layer": 2, "n_positions": 1024, "pad_token_id": null, "reorder_and_upcast_attn": false,
 "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": false, "scale_attn_weights": true,
 "summary_activation": null, "summary_first_dropout": 0.1, "summary_proj_to_labels": true,
 "summary_type": "cls_index", "summary_use_proj": true, "tie_word_embeddings": true,
 "transformers_version": "5.24.0", "use_cache": true, "vocab_size": 50257}`

// TestGPT2ConfigIn: a transformers GPT-2 config maps to the Pre-LN
// LayerNorm block; keys clm cannot compute are refused by name.
func TestGPT2ConfigIn(t *testing.T) {
	keys, plain, err := ModelKeysFromConfig([]byte(transformersGPT2))
	if err != nil || !plain {
		t.Fatalf("plain %v, %v", plain, err)
	}
	c, err := model.PresetWith("default", keys)
	if err != nil {
		t.Fatal(err)
	}
	if c.NormType != model.NormLN || c.ActivationFunction != model.ActGELUNew || c.NInner != 128 ||
		c.ContextLength != 1024 || c.ResidPdrop != 0.1 || c.VocabSize != 50257 {
		t.Errorf("config %+v", c)
	}
	// A config.json that leaves keys out gets GPT2Config's defaults.
	keys, _, err = ModelKeysFromConfig([]byte(`{"model_type": "gpt2", "n_layer": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	if c, err = model.PresetWith("default", keys); err != nil || c.NEmbd != 768 || c.NLayer != 2 || c.ContextLength != 1024 ||
		c.AttnPdrop != 0.1 || c.VocabSize != 50257 || c.ActivationFunction != model.ActGELUNew {
		t.Errorf("a sparse GPT-2 config: %+v, %v", c, err)
	}
	for _, bad := range []struct{ from, to, key string }{
		{`"scale_attn_by_inverse_layer_idx": false`, `"scale_attn_by_inverse_layer_idx": true`, "scale_attn_by_inverse_layer_idx"},
		{`"add_cross_attention": false`, `"add_cross_attention": true`, "add_cross_attention"},
		{`"activation_function": "gelu_new"`, `"activation_function": "relu6"`, "activation_function"},
		{`"n_inner": null`, `"n_inner": 100.5`, "n_inner"},
		{`"vocab_size": 50257`, `"vocab_size": 50257, "rotary_dim": 4`, "rotary_dim"},
		{`"model_type": "gpt2"`, `"model_type": "llama"`, "model_type"},
	} {
		_, _, err := ModelKeysFromConfig([]byte(strings.Replace(transformersGPT2, bad.from, bad.to, 1)))
		if err == nil || !strings.Contains(err.Error(), bad.key) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line naming %s", bad.to, err, bad.key)
		}
	}
}

// TestNamesRoundTrip: ToGPT2 gives exactly GPT-2's names with c_attn =
// [qk_attn | v_attn] column-wise, and FromGPT2 gives back clm's tensors,
// bytes for bytes (the gains from the config).
func TestNamesRoundTrip(t *testing.T) {
	cfg := small(t, "default", map[string]any{"norm_type": "ln", "activation_function": "gelu"})
	m := keysOf(t, cfg)
	r := rand.New(rand.NewPCG(1, 2))
	var clm []safetensors.Tensor
	for _, p := range cfg.Params() {
		n := int64(1)
		for _, s := range p.Shape {
			n *= s
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = r.Float32()
		}
		if strings.HasSuffix(p.Name, "_gain") {
			g, _ := m[p.Name[strings.LastIndex(p.Name, ".")+1:]].(float64) // the gain's key is its name
			for i := range v {
				v[i] = float32(g)
			}
		}
		clm = append(clm, safetensors.NewTensor(p.Name, p.Shape, v))
	}
	hfT, err := ToGPT2(clm, m)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(hfT), GPT2Names(3); !reflect.DeepEqual(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	byName := map[string]safetensors.Tensor{}
	for _, x := range clm {
		byName[x.Name] = x
	}
	ca := hfT[5] // wte, wpe, ln_1.weight, ln_1.bias, c_attn.weight, c_attn.bias
	if ca.Name != "transformer.h.0.attn.c_attn.bias" ||
		!bytes.Equal(ca.Data, append(append([]byte{}, byName["transformer.h.0.attn.qk_attn.bias"].Data...), byName["transformer.h.0.attn.v_attn.bias"].Data...)) {
		t.Errorf("c_attn.bias is not [qk_attn.bias | v_attn.bias]")
	}
	// An older GPT-2 file: no "transformer." prefix, lm_head and mask buffers.
	var old []safetensors.Tensor
	for _, x := range hfT {
		x.Name = strings.TrimPrefix(x.Name, "transformer.")
		old = append(old, x)
	}
	old = append(old, safetensors.NewTensor("lm_head.weight", []int64{1}, []float32{0}),
		safetensors.NewTensor("h.0.attn.bias", []int64{1}, []float32{0}))
	back, err := FromGPT2(old, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(clm) {
		t.Fatalf("%d tensors back, want %d: %v", len(back), len(clm), names(back))
	}
	for _, x := range back {
		w := byName[x.Name]
		if !reflect.DeepEqual(x.Shape, w.Shape) || !bytes.Equal(x.Data, w.Data) || x.DType != w.DType {
			t.Errorf("%s: %v %s differs from %v %s", x.Name, x.Shape, x.DType, w.Shape, w.DType)
		}
	}
	if _, err := ToGPT2(clm, keysOf(t, small(t, "skipless", nil))); err == nil {
		t.Error("ToGPT2 of a skipless config: no error")
	}
}

func names(ts []safetensors.Tensor) []string {
	out := make([]string, len(ts))
	for i, x := range ts {
		out[i] = x.Name
	}
	return out
}
