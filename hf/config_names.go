package hf

import (
	"fmt"
	"strings"

	"clm/safetensors"
)

// blockGains are the per-block tensors of clm that a plain GPT-2 lacks
// (their values in a plain model are fixed by its config: 1, or unused),
// relative to transformer.h.<i>., with their model key.
var blockGains = []struct{ name, key string }{
	{"attn_block_resid_gain", "attn_block_resid_gain"},
	{"attn_block_skip_gain", "attn_block_skip_gain"},
	{"mlp_block_resid_gain", "mlp_block_resid_gain"},
	{"mlp_block_skip_gain", "mlp_block_skip_gain"},
	{"attn.attn_mat_resid_gain", "attn_mat_resid_gain"},
	{"attn.attn_mat_skip_gain", "attn_mat_skip_gain"},
	{"attn.centre_attn_gain", "centre_attn_gain"},
}

// gpt2Block are the tensors of a GPT-2 block, relative to transformer.h.<i>.
var gpt2Block = []string{"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
	"attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
	"mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"}

// GPT2Names are the state-dict names of a GPT2LMHeadModel with n_layer
// blocks as transformers saves it (the tied lm_head.weight left out).
func GPT2Names(nLayer int) []string {
	names := []string{"transformer.wte.weight", "transformer.wpe.weight"}
	for i := range nLayer {
		for _, n := range gpt2Block {
			names = append(names, fmt.Sprintf("transformer.h.%d.%s", i, n))
		}
	}
	return append(names, "transformer.ln_f.weight", "transformer.ln_f.bias")
}

func layers(m ModelKeys) int {
	n, _ := m["n_layer"].(float64)
	return int(n)
}

// ToGPT2 renames the weights of a plain model m (PlainGPT2) from clm's
// names to GPT2LMHeadModel's: the block gains are dropped and each block's
// qk_attn and v_attn are joined column-wise into c_attn. The result holds
// exactly GPT2Names(n_layer), in that order.
func ToGPT2(tensors []safetensors.Tensor, m ModelKeys) ([]safetensors.Tensor, error) {
	if ok, why := PlainGPT2(m); !ok {
		return nil, fmt.Errorf("not a plain GPT-2: %s", why)
	}
	have := map[string]safetensors.Tensor{}
	for _, t := range tensors {
		have[t.Name] = t
	}
	for i := range layers(m) {
		p := fmt.Sprintf("transformer.h.%d.", i)
		for _, g := range blockGains {
			delete(have, p+g.name)
		}
		for _, part := range []string{"weight", "bias"} {
			qk, v := have[p+"attn.qk_attn."+part], have[p+"attn.v_attn."+part]
			joined, err := joinColumns(qk, v)
			if err != nil {
				return nil, err
			}
			joined.Name = p + "attn.c_attn." + part
			delete(have, qk.Name)
			delete(have, v.Name)
			have[joined.Name] = joined
		}
	}
	return exactly(have, GPT2Names(layers(m)))
}

// exactly returns the tensors of have named names, in that order, and an
// error naming what is missing or left over.
func exactly(have map[string]safetensors.Tensor, names []string) ([]safetensors.Tensor, error) {
	out := make([]safetensors.Tensor, 0, len(names))
	var missing []string
	for _, n := range names {
		t, ok := have[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		out = append(out, t)
		delete(have, n)
	}
	if len(missing) > 0 || len(have) > 0 {
		return nil, fmt.Errorf("weights: missing %s; unexpected %s", list(missing), list(sortedNames(have)))
	}
	return out, nil
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	if len(names) > 4 {
		return strings.Join(names[:4], ", ") + fmt.Sprintf(" and %d more", len(names)-4)
	}
	return strings.Join(names, ", ")
}

// FromGPT2 renames the weights of a transformers GPT-2 to clm's names for
// the model m (from ModelKeysFromConfig, resolved to every key): c_attn is
// split into qk_attn [W_q W_k] and v_attn [W_v], and the block gains clm
// has are added with m's values, in the dtype of wte (F32 or F64). Names
// without the "transformer." prefix (older GPT-2 files) get it; the tied
// lm_head.weight and the attention-mask buffers attn.bias and
// attn.masked_bias are dropped.
func FromGPT2(tensors []safetensors.Tensor, m ModelKeys) ([]safetensors.Tensor, error) {
	have := map[string]safetensors.Tensor{}
	for _, t := range tensors {
		n := t.Name
		if n == "lm_head.weight" || strings.HasSuffix(n, ".attn.bias") || strings.HasSuffix(n, ".attn.masked_bias") {
			continue
		}
		if !strings.HasPrefix(n, "transformer.") {
			n = "transformer." + n
		}
		t.Name = n
		have[n] = t
	}
	want := GPT2Names(layers(m))
	got, err := exactly(have, want)
	if err != nil {
		return nil, err
	}
	var out []safetensors.Tensor
	for _, t := range got {
		p, part, ok := cAttn(t.Name)
		if !ok {
			out = append(out, t)
			continue
		}
		qk, v, err := splitColumns(t, 2*t.Shape[len(t.Shape)-1]/3) // [W_q W_k | W_v]
		if err != nil {
			return nil, err
		}
		qk.Name, v.Name = p+"attn.qk_attn."+part, p+"attn.v_attn."+part
		out = append(out, qk, v)
		if part == "bias" {
			gains, err := gainTensors(p, m, t.DType)
			if err != nil {
				return nil, err
			}
			out = append(out, gains...)
		}
	}
	return out, nil
}

// cAttn splits "transformer.h.<i>.attn.c_attn.<part>" into its block
// prefix and part.
func cAttn(name string) (prefix, part string, ok bool) {
	for _, part := range []string{"weight", "bias"} {
		if p, found := strings.CutSuffix(name, "attn.c_attn."+part); found {
			return p, part, true
		}
	}
	return "", "", false
}

// gainTensors are the block gains of block prefix p with m's values.
func gainTensors(p string, m ModelKeys, dt safetensors.DType) ([]safetensors.Tensor, error) {
	heads := int64(m["n_head"].(float64))
	var out []safetensors.Tensor
	for _, g := range blockGains {
		v, ok := m[g.key].(float64)
		if !ok {
			return nil, fmt.Errorf("model config: %s is not a number", g.key)
		}
		shape := []int64{1}
		if strings.HasPrefix(g.name, "attn.") {
			shape = []int64{1, heads, 1, 1}
		}
		t, err := filled(p+g.name, shape, v, dt)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// filled is a tensor of shape and dtype (F32 or F64) holding v everywhere.
func filled(name string, shape []int64, v float64, dt safetensors.DType) (safetensors.Tensor, error) {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	switch dt {
	case safetensors.F32:
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(v)
		}
		return safetensors.NewTensor(name, shape, vals), nil
	case safetensors.F64:
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = v
		}
		return safetensors.NewTensor(name, shape, vals), nil
	}
	return safetensors.Tensor{}, fmt.Errorf("%s: dtype %s (want F32 or F64)", name, dt)
}

// joinColumns concatenates a [r, n] and b [r, k] (or [n] and [k]) along
// the last dimension.
func joinColumns(a, b safetensors.Tensor) (safetensors.Tensor, error) {
	if len(a.Shape) == 0 || len(a.Shape) != len(b.Shape) || a.DType != b.DType ||
		(len(a.Shape) == 2 && a.Shape[0] != b.Shape[0]) || len(a.Shape) > 2 || a.Data == nil || b.Data == nil {
		return safetensors.Tensor{}, fmt.Errorf("weights: cannot join %s %v %s and %s %v %s column-wise",
			a.Name, a.Shape, a.DType, b.Name, b.Shape, b.DType)
	}
	rows := int64(1)
	if len(a.Shape) == 2 {
		rows = a.Shape[0]
	}
	ra, rb := len(a.Data)/int(rows), len(b.Data)/int(rows)
	data := make([]byte, 0, len(a.Data)+len(b.Data))
	for r := range int(rows) {
		data = append(data, a.Data[r*ra:(r+1)*ra]...)
		data = append(data, b.Data[r*rb:(r+1)*rb]...)
	}
	shape := append([]int64(nil), a.Shape...)
	shape[len(shape)-1] += b.Shape[len(b.Shape)-1]
	return safetensors.Tensor{DType: a.DType, Shape: shape, Data: data}, nil
}

// splitColumns splits t [r, n] (or [n]) into its first cols columns and
// the rest.
func splitColumns(t safetensors.Tensor, cols int64) (safetensors.Tensor, safetensors.Tensor, error) {
	last := t.Shape[len(t.Shape)-1]
	if len(t.Shape) > 2 || cols <= 0 || cols >= last || t.Data == nil {
		return t, t, fmt.Errorf("weights: cannot split %s %v at column %d", t.Name, t.Shape, cols)
	}
	rows := int64(1)
	if len(t.Shape) == 2 {
		rows = t.Shape[0]
	}
	es := int64(len(t.Data)) / (rows * last)
	var a, b []byte
	for r := range rows {
		row := t.Data[r*last*es : (r+1)*last*es]
		a = append(a, row[:cols*es]...)
		b = append(b, row[cols*es:]...)
	}
	sa, sb := append([]int64(nil), t.Shape...), append([]int64(nil), t.Shape...)
	sa[len(sa)-1], sb[len(sb)-1] = cols, last-cols
	return safetensors.Tensor{DType: t.DType, Shape: sa, Data: a}, safetensors.Tensor{DType: t.DType, Shape: sb, Data: b}, nil
}
