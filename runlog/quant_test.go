package runlog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestQuantRoundTrip: quant.json keeps every scheme and checkpoint `clm
// quant` evaluated, each under its key, with the field names it has always
// used; the same scheme again replaces only its own result; a file of one
// result (as written before) reads; a missing file is os.ErrNotExist, a
// broken one names the file.
func TestQuantRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a := &Quant{Checkpoint: "checkpoints/step-10", Scheme: QuantScheme{"per_channel", "static", true}, CalibBatches: 8,
		Batch: 4, Sequences: 10, FP: QuantEval{2, 7.389}, Int8: QuantEval{2.5, 12.18}, Degradation: 0.5,
		Layers: []QuantLayer{{0, 3.5, 0.01}, {1, 40, 0.3}}}
	b := &Quant{Checkpoint: "checkpoints/step-10", Scheme: QuantScheme{"per_tensor", "dynamic", false}, FP: QuantEval{2, 7.389}, Int8: QuantEval{2.2, 9.03}}
	b2 := *b
	b2.Int8 = QuantEval{2.1, 8.17}
	for _, q := range []*Quant{a, b, &b2} {
		if err := WriteQuant(dir, q); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, QuantFile))
	for _, key := range []string{`"results"`, `"checkpoints/step-10 per_channel/static/residual"`, `"checkpoints/step-10 per_tensor/dynamic"`,
		`"checkpoint"`, `"scheme"`, `"weights"`, `"acts"`, `"residual"`, `"calib_batches"`, `"eval_batch"`,
		`"eval_sequences"`, `"fp"`, `"int8"`, `"perplexity"`, `"degradation"`, `"layers"`, `"kurtosis"`, `"int8_rel_error"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("quant.json lacks %s:\n%s", key, raw)
		}
	}
	got, err := ReadQuants(dir)
	if err != nil || !reflect.DeepEqual(got, []*Quant{a, &b2}) {
		t.Fatalf("read %+v, %v; want the first result and the second's replacement", got, err)
	}

	old := t.TempDir() // one result, as clm wrote quant.json before
	os.WriteFile(filepath.Join(old, QuantFile), []byte(`{"checkpoint": "checkpoints/step-10", "scheme": {"weights": "per_tensor", "acts": "dynamic"}, "int8": {"loss": 2.2}}`), 0o644)
	if got, err := ReadQuants(old); err != nil || len(got) != 1 || got[0].Key() != b.Key() || got[0].Int8.Loss != 2.2 {
		t.Errorf("a one-result quant.json: %+v, %v", got, err)
	}
	if _, err := ReadQuants(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing quant.json: %v", err)
	}
	os.WriteFile(filepath.Join(dir, QuantFile), []byte("{"), 0o644)
	if _, err := ReadQuants(dir); err == nil || !strings.Contains(err.Error(), QuantFile) {
		t.Errorf("broken quant.json: %v", err)
	}
}
