package runlog

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"clm/internal/atomicfile"
)

// QuantFile is the file `clm quant` writes in a run folder.
const QuantFile = "quant.json"

// Quant is quant.json: int8 post-training quantisation of a run's
// checkpoint, evaluated on its validation chunks.
type Quant struct {
	// Checkpoint is the checkpoint folder, relative to the run folder.
	Checkpoint   string      `json:"checkpoint,omitempty"`
	Scheme       QuantScheme `json:"scheme"`
	CalibBatches int         `json:"calib_batches"`
	Batch        int         `json:"eval_batch"`
	Sequences    int         `json:"eval_sequences"`
	FP           QuantEval   `json:"fp"`
	Int8         QuantEval   `json:"int8"`
	// Degradation is the int8 loss minus the full-precision loss.
	Degradation float64      `json:"degradation"`
	Layers      []QuantLayer `json:"layers"`
}

// QuantScheme is what was quantised and how: weights none | per_tensor |
// per_channel; activations none | static | dynamic; and the residual
// stream between blocks.
type QuantScheme struct {
	Weights  string `json:"weights"`
	Acts     string `json:"acts"`
	Residual bool   `json:"residual"`
}

// QuantEval is a mean next-token loss per sequence and its perplexity.
type QuantEval struct {
	Loss       float64 `json:"loss"`
	Perplexity float64 `json:"perplexity"`
}

// QuantLayer is what quantisation does to one block's output: the kurtosis
// of the full-precision output (the run's outlier statistic) and the
// relative int8 error ‖h_int8 − h_fp‖/‖h_fp‖.
type QuantLayer struct {
	Layer        int     `json:"layer"`
	Kurtosis     float64 `json:"kurtosis"`
	Int8RelError float64 `json:"int8_rel_error"`
}

// WriteQuant writes q as dir's quant.json, atomically.
func WriteQuant(dir string, q *Quant) error {
	b, err := json.MarshalIndent(q, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, QuantFile), append(b, '\n'), 0o644)
}

// ReadQuant reads dir's quant.json; the error wraps os.ErrNotExist when the
// run has none.
func ReadQuant(dir string) (*Quant, error) {
	path := filepath.Join(dir, QuantFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var q Quant
	if err := json.Unmarshal(b, &q); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &q, nil
}
