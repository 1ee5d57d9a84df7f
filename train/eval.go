package train

import (
	"context"
	"errors"
	"fmt"

	"clm/model"
	"clm/torch"
)

// errEvalInterrupted: the context was cancelled during an evaluation.
var errEvalInterrupted = errors.New("evaluation interrupted")

// evalLoop is a run's evaluation: the mean loss per sequence over the first
// n chunks of valid, in batches of batch rows, each batch's mean loss
// weighted by its rows. Data-parallel ranks take the batches round-robin
// and their sums meet in a collective; a lone process may stop between
// batches.
type evalLoop struct {
	valid      EvalSet
	n, batch   int
	rank, size int
	ids        func(rows [][]int32) *torch.Tensor // a batch on the device
	pad        model.Pad
	forward    func(ids *torch.Tensor, o model.ForwardOptions) model.Output
	phase      func(done, total int) // progress, after each batch
}

// sum is Σ loss·rows over this rank's batches, summed on the device with
// one host sync at the end. Cancelled, a lone process stops between
// batches with errEvalInterrupted.
func (l *evalLoop) sum(ctx context.Context) (float64, error) {
	var total float64
	interrupted := false
	var sum *torch.Tensor
	defer func() { sum.Free() }()
	err := torch.Try(func() {
		torch.NoGrad(func() {
			rows := make([][]int32, 0, l.batch)
			batch := 0
			flush := func() {
				if len(rows) == 0 {
					return
				}
				mine := batch%l.size == l.rank
				batch++
				if !mine {
					rows = rows[:0]
					return
				}
				s := torch.NewScope()
				defer s.Close()
				x := l.ids(rows)
				out := l.forward(x, model.ForwardOptions{Labels: x, Pad: l.pad, LossOnly: true})
				loss := out.Loss.ToDType(torch.Float64).MulScalar(float64(len(rows)))
				if sum != nil {
					next := sum.Add(loss)
					sum.Free()
					loss = next
				}
				sum = s.Keep(loss)
				rows = rows[:0]
			}
			batches := (l.n + l.batch - 1) / l.batch
			for i := 0; i < l.n; i++ {
				rows = append(rows, l.valid.Chunk(i, nil))
				if len(rows) == l.batch {
					flush()
					l.phase(batch, batches)
					if l.size == 1 && ctx.Err() != nil {
						interrupted = true
						return
					}
				}
			}
			flush()
			if sum != nil {
				total = sum.Item()
			}
		})
	})
	if err == nil && interrupted {
		err = errEvalInterrupted
	}
	return total, err
}

// evalSize is the number of chunks of valid an evaluation reads: all, or
// at most batches batches of batch (batches > 0).
func evalSize(valid EvalSet, batch, batches int) int {
	n := valid.Len()
	if batches > 0 {
		n = min(n, batches*batch)
	}
	return n
}

// EvalOptions are Evaluate's batches and padding.
type EvalOptions struct {
	// Batch is the number of sequences per forward (a run's eval_batch).
	Batch int
	// Batches caps the batches evaluated (0: every chunk of the set).
	Batches int
	// Pad is the token whose labels are ignored (EvalPad).
	Pad model.Pad
	// Precision is the autocast of the forwards (a run's train.precision;
	// auto is bf16 on a GPU, fp32 on the CPU).
	Precision Precision
	// Progress, if not nil, sees each batch done of the total.
	Progress func(done, total int)
}

// EvalResult is what Evaluate measured.
type EvalResult struct {
	// Loss is the mean loss per sequence, as a run's eval_loss.
	Loss float64
	// Sequences is the number of sequences evaluated.
	Sequences int
}

// Evaluate is the evaluation a run logs as eval_loss, of model m on valid:
// the same batches, padding, weighting and precision, in one process.
func Evaluate(ctx context.Context, m *model.Model, valid EvalSet, o EvalOptions) (EvalResult, error) {
	if o.Batch < 1 || o.Batches < 0 {
		return EvalResult{}, fmt.Errorf("evaluate: %d batches of %d sequences", o.Batches, o.Batch)
	}
	n := evalSize(valid, o.Batch, o.Batches)
	if n == 0 {
		return EvalResult{}, errors.New("evaluate: the evaluation set is empty")
	}
	dev := m.Options().Device
	e := &engine{dev: dev, m: m, precision: o.Precision.on(dev)} // its ids and forward, as a run's
	l := evalLoop{valid: valid, n: n, batch: o.Batch, rank: 0, size: 1, pad: o.Pad, ids: e.ids, forward: e.forward,
		phase: func(done, total int) {
			if o.Progress != nil {
				o.Progress(done, total)
			}
		}}
	sum, err := l.sum(ctx)
	if errors.Is(err, errEvalInterrupted) {
		return EvalResult{}, ctx.Err()
	}
	if err != nil {
		return EvalResult{}, fmt.Errorf("evaluate: %w", err)
	}
	return EvalResult{Loss: sum / float64(n), Sequences: n}, nil
}
