// Package runlog is the schema of a run's log: the records of metrics.jsonl
// (one JSON object per line, with a "kind" of "train", "eval" or "stats"),
// the writer that appends them durably and mirrors their numbers into
// TensorBoard event files under tb/, and the reader that parses a log back.
// train writes through it and plot reads through it; it does not depend on
// libtorch.
//
// The lines on disk are what clm has always written: the keys of an object
// in alphabetical order (the layer statistics in their own order), numbers
// as encoding/json writes them, and NaN or ±Inf as null.
package runlog

import (
	"fmt"

	"clm/internal/jsonnum"
)

// MetricsFile is the name of the log in a run folder, and TensorBoardDir the
// folder of its TensorBoard event files.
const (
	MetricsFile    = "metrics.jsonl"
	TensorBoardDir = "tb"
)

// The kinds of record, the "kind" of a line and the first part of its
// TensorBoard tags.
const (
	KindTrain = "train"
	KindEval  = "eval"
	KindStats = "stats"
)

// Record is one line of the log: a Train, an Eval or a Stats record.
type Record interface {
	// Kind is the record's "kind": KindTrain, KindEval or KindStats.
	Kind() string
	// step is the step the record belongs to.
	step() int64
	// line is the JSON object of the line, stamped with time t.
	line(t float64) any
	// scalars adds the record's numbers to out under their TensorBoard
	// tags.
	scalars(out map[string]float64)
	// stamped is the record's own time, 0 when the writer stamps it.
	stamped() float64
}

// Train is a "train" record: the averages of a logging window.
type Train struct {
	// Step is the optimizer step the window ends with.
	Step int64
	// Time is the Unix time of writing in seconds: set by the writer when
	// zero, NaN when a read line lacks it.
	Time float64
	// Loss is the mean training loss of the window's steps, LR the
	// learning rate of the last, GradNorm its gradient norm before
	// clipping, TokensPerSec the window's throughput. Read back, a field
	// absent from the line is NaN.
	Loss, LR, GradNorm, TokensPerSec float64
	// Tokens is the number of tokens trained on so far (0 when absent).
	Tokens int64
	// LossScale is fp16's dynamic loss scale; 0 (the other precisions)
	// leaves it out of the line.
	LossScale float64
	// PeakMemory is the window's peak memory in bytes: the process's peak
	// resident set on a CPU, the caching allocator's peak on a GPU; 0
	// (unknown) leaves it out of the line.
	PeakMemory int64
}

// Eval is an "eval" record.
type Eval struct {
	// Step is the optimizer step evaluated after.
	Step int64
	// Time is as for Train.
	Time float64
	// EvalLoss is the mean loss over the validation sequences (NaN when a
	// read line lacks it).
	EvalLoss float64
	// EvalSequences is the number of validation sequences (0 when absent).
	EvalSequences int
}

// Stats is a "stats" record: the papers' statistics on a training batch.
// A nil field was not computed and is left out of the line; an empty one
// is written empty.
type Stats struct {
	// Step is the optimizer step whose batch was measured.
	Step int64
	// Time is as for Train.
	Time float64
	// Layers are the statistics of each hidden state (OutlierStats).
	Layers []LayerStats
	// AttnEntropy is the mean attention entropy of each layer.
	AttnEntropy []float64
	// Gains maps a gain's parameter name to its values (one per head for
	// the attention-matrix gains): GainValues of the model's gains.
	Gains map[string][]float64
}

// Kind implements Record.
func (Train) Kind() string { return KindTrain }

// Kind implements Record.
func (Eval) Kind() string { return KindEval }

// Kind implements Record.
func (Stats) Kind() string { return KindStats }

func (r Train) step() int64 { return r.Step }
func (r Eval) step() int64  { return r.Step }
func (r Stats) step() int64 { return r.Step }

func (r Train) stamped() float64 { return r.Time }
func (r Eval) stamped() float64  { return r.Time }
func (r Stats) stamped() float64 { return r.Time }

// trainLine is the JSON of a Train record, keys in alphabetical order.
type trainLine struct {
	GradNorm   jsonnum.Float  `json:"grad_norm"`
	Kind       string         `json:"kind"`
	Loss       jsonnum.Float  `json:"loss"`
	LossScale  *jsonnum.Float `json:"loss_scale,omitempty"`
	LR         jsonnum.Float  `json:"lr"`
	PeakMemory int64          `json:"peak_memory,omitempty"`
	Step       int64          `json:"step"`
	Time       jsonnum.Float  `json:"time"`
	Tokens     int64          `json:"tokens"`
	TokensPerS jsonnum.Float  `json:"tokens_per_s"`
}

func (r Train) line(t float64) any {
	j := trainLine{GradNorm: jsonnum.Float(r.GradNorm), Kind: KindTrain, Loss: jsonnum.Float(r.Loss),
		LR: jsonnum.Float(r.LR), Step: r.Step, Time: jsonnum.Float(t), Tokens: r.Tokens,
		TokensPerS: jsonnum.Float(r.TokensPerSec), PeakMemory: r.PeakMemory}
	if r.LossScale != 0 {
		s := jsonnum.Float(r.LossScale)
		j.LossScale = &s
	}
	return j
}

func (r Train) scalars(out map[string]float64) {
	out["train/grad_norm"] = r.GradNorm
	out["train/loss"] = r.Loss
	out["train/lr"] = r.LR
	out["train/tokens"] = float64(r.Tokens)
	out["train/tokens_per_s"] = r.TokensPerSec
	if r.LossScale != 0 {
		out["train/loss_scale"] = r.LossScale
	}
	if r.PeakMemory != 0 {
		out["train/peak_memory"] = float64(r.PeakMemory)
	}
}

// evalLine is the JSON of an Eval record.
type evalLine struct {
	EvalLoss      jsonnum.Float `json:"eval_loss"`
	EvalSequences int           `json:"eval_sequences"`
	Kind          string        `json:"kind"`
	Step          int64         `json:"step"`
	Time          jsonnum.Float `json:"time"`
}

func (r Eval) line(t float64) any {
	return evalLine{EvalLoss: jsonnum.Float(r.EvalLoss), EvalSequences: r.EvalSequences, Kind: KindEval,
		Step: r.Step, Time: jsonnum.Float(t)}
}

func (r Eval) scalars(out map[string]float64) {
	out["eval/eval_loss"] = r.EvalLoss
	out["eval/eval_sequences"] = float64(r.EvalSequences)
}

// statsLine is the JSON of a Stats record; a nil pointer leaves its key
// out, a pointer to an empty value writes [] or {}.
type statsLine struct {
	AttnEntropy *[]jsonnum.Float            `json:"attn_entropy,omitempty"`
	Gains       *map[string][]jsonnum.Float `json:"gains,omitempty"`
	Kind        string                      `json:"kind"`
	Layers      *[]LayerStats               `json:"layers,omitempty"`
	Step        int64                       `json:"step"`
	Time        jsonnum.Float               `json:"time"`
}

func (r Stats) line(t float64) any {
	j := statsLine{Kind: KindStats, Step: r.Step, Time: jsonnum.Float(t)}
	if r.AttnEntropy != nil {
		e := nullable(r.AttnEntropy)
		j.AttnEntropy = &e
	}
	if r.Gains != nil {
		g := make(map[string][]jsonnum.Float, len(r.Gains))
		for name, v := range r.Gains {
			g[name] = nullable(v)
		}
		j.Gains = &g
	}
	if r.Layers != nil {
		j.Layers = &r.Layers
	}
	return j
}

// nullable converts v for writing (non-finite values as null).
func nullable(v []float64) []jsonnum.Float {
	out := make([]jsonnum.Float, len(v))
	for i, x := range v {
		out[i] = jsonnum.Float(x)
	}
	return out
}

func (r Stats) scalars(out map[string]float64) {
	for _, l := range r.Layers {
		p := fmt.Sprintf("stats/layers/layer_%02d/", l.Layer)
		for _, f := range layerFields {
			out[p+f.name] = *f.field(&l)
		}
	}
	for i, e := range r.AttnEntropy {
		out[fmt.Sprintf("stats/attn_entropy/%d", i)] = e
	}
	for name, v := range r.Gains {
		for i, x := range v {
			if len(v) == 1 {
				out["stats/gains/"+name] = x
			} else {
				out[fmt.Sprintf("stats/gains/%s/%d", name, i)] = x
			}
		}
	}
}

// Gain is the current value of one gain parameter: a scalar block or
// value/projection gain (Eqs. 5–6 of Simplifying Transformer Blocks), or a
// per-head shaped-attention gain of shape [1, H, 1, 1].
type Gain struct {
	// Name is the parameter's state-dict name, e.g.
	// "transformer.h.0.attn.attn_mat_resid_gain".
	Name string `json:"name"`
	// Values are the entries in row-major order (one per head for the
	// attention-matrix gains).
	Values []float64 `json:"values"`
	// Mean of Values.
	Mean float64 `json:"mean"`
	// Std is the sample standard deviation of Values with Bessel's
	// correction (torch.std, as the original logs the per-head spread),
	// and 0 for a single value.
	Std float64 `json:"std"`
	// Trainable reports whether the gain is optimised.
	Trainable bool `json:"trainable"`
}

// GainValues maps each gain's name to its values: Stats.Gains. It is
// never nil, so that a model without gains logs an empty object.
func GainValues(gs []Gain) map[string][]float64 {
	m := make(map[string][]float64, len(gs))
	for _, g := range gs {
		m[g.Name] = g.Values
	}
	return m
}
