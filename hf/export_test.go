package hf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"clm/safetensors"
)

// TestToF32: fp64 and bf16 checkpoints export as fp32 (bf16 exactly, fp64
// rounded); other dtypes are refused by name.
func TestToF32(t *testing.T) {
	bf := safetensors.Tensor{Name: "b", DType: safetensors.BF16, Shape: []int64{2}, Data: []byte{0x80, 0x3f, 0x00, 0xc0}} // 1, -2
	for _, c := range []struct {
		in   safetensors.Tensor
		want []float32
	}{
		{safetensors.NewTensor("f", []int64{2}, []float32{1.5, -3}), []float32{1.5, -3}},
		{safetensors.NewTensor("d", []int64{2}, []float64{0.1, 1e300}), []float32{0.1, float32(math.Inf(1))}},
		{bf, []float32{1, -2}},
	} {
		out, err := toF32(c.in)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := safetensors.FromBytes[float32](out.Data)
		if out.DType != safetensors.F32 || !slices.Equal(got, c.want) || out.Name != c.in.Name {
			t.Errorf("%s: %v %s, want %v", c.in.Name, got, out.DType, c.want)
		}
	}
	if _, err := toF32(safetensors.NewTensor("ids", []int64{1}, []int64{3})); err == nil || !strings.Contains(err.Error(), "ids") {
		t.Errorf("an I64 tensor: error %v, want one naming it", err)
	}
}

// TestExportFolder: the files of each kind of folder, config.json as
// ConfigJSON writes it, and a checkpoint whose tensors are not the ones its
// config declares is refused with nothing written.
func TestExportFolder(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		set   map[string]any
		plain bool
	}{
		{"op", nil, false},
		{"default", map[string]any{"norm_type": "ln"}, true},
	} {
		cfg := small(t, c.name, c.set)
		b, _ := cfg.JSON()
		var tensors []safetensors.Tensor
		var names []string
		for _, p := range cfg.Params() {
			n := int64(1)
			for _, s := range p.Shape {
				n *= s
			}
			tensors = append(tensors, safetensors.NewTensor(p.Name, p.Shape, make([]float32, n)))
			names = append(names, p.Name)
		}
		w := filepath.Join(dir, c.name+".safetensors")
		if err := safetensors.Write(w, tensors, map[string]string{"config": string(b)}); err != nil {
			t.Fatal(err)
		}
		src := Source{Weights: w, Names: names, Tokenizer: []byte("{}"), EOS: 0, Card: Card{Experiment: "x", EvalLoss: math.NaN()}}
		out := filepath.Join(dir, "out", c.name)
		res, err := Export(src, out, false)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
		if !c.plain {
			want = append(want, ConfigModule, ModelingModule)
			slices.Sort(want)
		}
		entries, _ := os.ReadDir(out)
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if res.Plain != c.plain || !slices.Equal(got, want) || !slices.Equal(res.Files, want) {
			t.Errorf("%s: plain %v, files %v (%v), want %v %v", c.name, res.Plain, got, res.Files, c.plain, want)
		}
		var conf map[string]any
		cb, _ := os.ReadFile(filepath.Join(out, "config.json"))
		if err := json.Unmarshal(cb, &conf); err != nil || (conf["model_type"] == ModelTypeGPT2) != c.plain {
			t.Errorf("%s: config.json %s (%v)", c.name, cb, err)
		}
		src.Names = names[1:]
		if _, err := Export(src, filepath.Join(dir, "bad"), false); err == nil || !strings.Contains(err.Error(), "tensors") {
			t.Errorf("%s: weights that are not the config's: error %v", c.name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
			t.Errorf("%s: a failed export left its folder", c.name)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".bad.export-*")); len(left) > 0 {
			t.Errorf("%s: a failed export left %v", c.name, left)
		}
	}
}
