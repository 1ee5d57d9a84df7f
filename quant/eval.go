package quant

import (
	"fmt"
	"math"

	"clm/model"
	"clm/runlog"
	"clm/torch"
)

// Rows are token chunks of one context length (data.Chunks is one).
type Rows interface {
	Len() int
	Chunk(i int, dst []int32) []int32
}

// Options of Evaluate.
type Options struct {
	Scheme Scheme
	// CalibBatches is the number of calibration forwards (static
	// activations): the first CalibBatches·Batch calibration rows, in order.
	CalibBatches int
	// Batch is the rows per forward (the run's eval_batch).
	Batch int
	// EvalBatches limits the evaluation to the first EvalBatches·Batch
	// validation rows; 0 is all of them.
	EvalBatches int
	// Pad is the padding token whose labels the loss ignores.
	Pad model.Pad
}

// Eval is a mean next-token loss per sequence and its perplexity exp(loss).
type Eval = runlog.QuantEval

func evalOf(loss float64) Eval { return Eval{Loss: loss, Perplexity: math.Exp(loss)} }

// Layer is what quantisation does to one block's output hidden state (the
// residual stream after block Layer): the kurtosis of the full-precision
// output, mean(s⁴)/mean(s²)² with s² the per-feature mean square of the
// activations centred across the width (stats.Kurtosis), and
// ‖h_int8 − h_fp‖ / ‖h_fp‖, both over every evaluated token.
type Layer = runlog.QuantLayer

// Report is the outcome of Evaluate; Record turns it into quant.json's
// record.
type Report struct {
	Checkpoint   string
	Scheme       Scheme
	CalibBatches int
	Batch        int
	Sequences    int
	FP           Eval
	Int8         Eval
	Degradation  float64 // int8 loss − fp loss
	Layers       []Layer
}

// Record is r as runlog writes it (quant.json).
func (r *Report) Record() *runlog.Quant {
	return &runlog.Quant{Checkpoint: r.Checkpoint,
		Scheme:       runlog.QuantScheme{Weights: string(r.Scheme.Weights), Acts: string(r.Scheme.Acts), Residual: r.Scheme.Residual},
		CalibBatches: r.CalibBatches, Batch: r.Batch, Sequences: r.Sequences, FP: r.FP, Int8: r.Int8,
		Degradation: r.Degradation, Layers: r.Layers}
}

// Calibrate runs the model full precision on the first batches·batch rows
// (batch rows per forward) and returns the min–max range of every linear
// input and, with residual, of the residual stream after every block.
func Calibrate(m *model.Model, rows Rows, batches, batch int, residual bool) (Ranges, error) {
	if batches < 1 || batch < 1 {
		return nil, fmt.Errorf("quant: calibration needs at least one batch of one row (have %d batches of %d)", batches, batch)
	}
	n := min(rows.Len(), batches*batch)
	if n == 0 {
		return nil, fmt.Errorf("quant: no calibration rows")
	}
	obs := &observer{ranges: Ranges{}, residual: residual}
	err := forEachBatch(rows, n, batch, m.Options().Device, func(ids *torch.Tensor, _ int) {
		m.Forward(ids, model.ForwardOptions{Quant: obs})
	})
	if err != nil {
		return nil, fmt.Errorf("quant: calibration: %w", err)
	}
	return obs.ranges, nil
}

// forEachBatch calls f on the first n rows, batch rows at a time (the last
// batch may be short), each call in a scope of its own and without
// gradients; f gets the ids [B, T] on dev and B.
func forEachBatch(rows Rows, n, batch int, dev torch.Device, f func(ids *torch.Tensor, b int)) error {
	return torch.Try(func() {
		torch.NoGrad(func() {
			var chunk []int32
			for a := 0; a < n; a += batch {
				b := min(batch, n-a)
				var buf []int64
				for i := a; i < a+b; i++ {
					chunk = rows.Chunk(i, chunk)
					for _, v := range chunk {
						buf = append(buf, int64(v))
					}
				}
				torch.WithScope(func(*torch.Scope) {
					ids := torch.FromInt64(buf, int64(b), int64(len(buf)/b))
					if dev.IsCUDA() {
						ids = ids.ToDevice(dev)
					}
					f(ids, b)
				})
			}
		})
	})
}

// Evaluate measures o.Scheme on m: it calibrates on calib when the scheme
// has static activations, then computes, over the validation rows, the
// mean next-token loss per sequence full precision and int8 (as the
// trainer's evaluation does, o.Batch rows per forward) and, per block, the
// kurtosis of the full-precision output and the int8 error of the output.
func Evaluate(m *model.Model, calib, valid Rows, o Options) (*Report, error) {
	if err := o.Scheme.Validate(); err != nil {
		return nil, err
	}
	if o.Batch < 1 || o.EvalBatches < 0 {
		return nil, fmt.Errorf("quant: %d evaluation batches of %d rows", o.EvalBatches, o.Batch)
	}
	var ranges Ranges
	if o.Scheme.Acts == ActsStatic {
		r, err := Calibrate(m, calib, o.CalibBatches, o.Batch, o.Scheme.Residual)
		if err != nil {
			return nil, err
		}
		ranges = r
	}
	q, err := NewQuantizer(o.Scheme, ranges)
	if err != nil {
		return nil, err
	}
	n := valid.Len()
	if o.EvalBatches > 0 {
		n = min(n, o.EvalBatches*o.Batch)
	}
	if n == 0 {
		return nil, fmt.Errorf("quant: no validation rows")
	}
	acc := &accumulator{layers: m.Config().NLayer}
	err = forEachBatch(valid, n, o.Batch, m.Options().Device, func(ids *torch.Tensor, b int) {
		fp, int8 := &recorder{}, &recorder{inner: q}
		lf := m.Forward(ids, model.ForwardOptions{Labels: ids, Pad: o.Pad, LossOnly: true, Quant: fp}).Loss
		lq := m.Forward(ids, model.ForwardOptions{Labels: ids, Pad: o.Pad, LossOnly: true, Quant: int8}).Loss
		acc.add(b, lf, lq, fp.out, int8.out)
	})
	if err != nil {
		return nil, fmt.Errorf("quant: evaluation: %w", err)
	}
	r := acc.report(n)
	r.Scheme, r.Batch = o.Scheme, o.Batch
	if o.Scheme.Acts == ActsStatic {
		r.CalibBatches = o.CalibBatches
	}
	return r, nil
}

// recorder passes a forward through inner (nil: full precision) and keeps
// the residual stream after every block.
type recorder struct {
	inner model.Quantizer
	out   []*torch.Tensor
}

func (r *recorder) Linear(name string, x, w *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
	if r.inner == nil {
		return x, w
	}
	return r.inner.Linear(name, x, w)
}

func (r *recorder) Residual(layer int, h *torch.Tensor) *torch.Tensor {
	if r.inner != nil {
		h = r.inner.Residual(layer, h)
	}
	r.out = append(r.out, h)
	return h
}
