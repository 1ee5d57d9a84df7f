package runlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"clm/internal/atomicfile"
)

// QuantFile is the file `clm quant` writes in a run folder.
const QuantFile = "quant.json"

// Quant is one result of quant.json: int8 post-training quantisation of a
// run's checkpoint with one scheme, evaluated on its validation chunks.
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

// Key names a result in quant.json: the checkpoint and the scheme, e.g.
// "checkpoints/step-00000300 per_channel/static" (+"/residual").
func (q *Quant) Key() string {
	k := q.Checkpoint + " " + q.Scheme.Weights + "/" + q.Scheme.Acts
	if q.Scheme.Residual {
		k += "/residual"
	}
	return k
}

// quantFile is quant.json: every result of `clm quant` on a run, by Key.
type quantFile struct {
	Results map[string]*Quant `json:"results"`
}

// WriteQuant adds q to dir's quant.json, replacing only an earlier result
// of the same checkpoint and scheme, atomically.
func WriteQuant(dir string, q *Quant) error {
	qs, err := ReadQuants(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f := quantFile{Results: map[string]*Quant{}}
	for _, old := range qs {
		f.Results[old.Key()] = old
	}
	f.Results[q.Key()] = q
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, QuantFile), append(b, '\n'), 0o644)
}

// ReadQuants reads every result of dir's quant.json, ordered by key (a
// file of one result, as clm wrote before, is read too); the error wraps
// os.ErrNotExist when the run has none.
func ReadQuants(dir string) ([]*Quant, error) {
	path := filepath.Join(dir, QuantFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f quantFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if f.Results == nil {
		var one Quant
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		f.Results = map[string]*Quant{one.Key(): &one}
	}
	keys := make([]string, 0, len(f.Results))
	for k := range f.Results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*Quant, 0, len(keys))
	for _, k := range keys {
		out = append(out, f.Results[k])
	}
	return out, nil
}
