package runlog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestQuantRoundTrip: quant.json reads back what was written, with the
// field names `clm quant` has always used; a missing file is
// os.ErrNotExist, a broken one names the file.
func TestQuantRoundTrip(t *testing.T) {
	dir := t.TempDir()
	q := &Quant{Checkpoint: "checkpoints/step-10", Scheme: QuantScheme{"per_channel", "static", true}, CalibBatches: 8,
		Batch: 4, Sequences: 10, FP: QuantEval{2, 7.389}, Int8: QuantEval{2.5, 12.18}, Degradation: 0.5,
		Layers: []QuantLayer{{0, 3.5, 0.01}, {1, 40, 0.3}}}
	if err := WriteQuant(dir, q); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, QuantFile))
	for _, key := range []string{`"checkpoint"`, `"scheme"`, `"weights"`, `"acts"`, `"residual"`, `"calib_batches"`, `"eval_batch"`,
		`"eval_sequences"`, `"fp"`, `"int8"`, `"perplexity"`, `"degradation"`, `"layers"`, `"kurtosis"`, `"int8_rel_error"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("quant.json lacks %s:\n%s", key, b)
		}
	}
	got, err := ReadQuant(dir)
	if err != nil || !reflect.DeepEqual(got, q) {
		t.Fatalf("read %+v, %v; wrote %+v", got, err, q)
	}
	if _, err := ReadQuant(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing quant.json: %v", err)
	}
	os.WriteFile(filepath.Join(dir, QuantFile), []byte("{"), 0o644)
	if _, err := ReadQuant(dir); err == nil || !strings.Contains(err.Error(), QuantFile) {
		t.Errorf("broken quant.json: %v", err)
	}
}
