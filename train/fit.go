package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"clm/model"
	"clm/torch"
)

// Micro-batch fitting (train.fit_micro_batch). The experiment defines an
// optimizer step as `accumulation` micro-batches of `micro_batch` sequences
// (the original: 4 × 32 = 128) and its loss as the mean of the micro-batches'
// mean losses. On a GPU, fewer and larger forwards are faster, so each rank
// regroups its share of the step's sequences into forwards of `rows`
// sequences, the largest divisor of that share whose forward and backward fit
// in memory. The sequences and the loss stay the same: a forward covering
// several micro-batches (or part of one) weights each micro-batch's rows so
// that the forwards' losses add up to the sum of the micro-batches' means
// (model.ForwardOptions.LossSegments). Only the summation order of floating
// point changes. The data cursor and checkpoints stay in micro-batch units,
// so a run can resume on another GPU that fits a different size.

// memoryHeadroom is the share of the device's usable memory that the trial
// step's peak (plus the optimizer state still to come) may take: the rest
// absorbs fragmentation and what differs between a trial and a real step.
const memoryHeadroom = 0.9

// forward is one forward and backward of a step: rows of token ids and, when
// they are not exactly one micro-batch, the loss weights of their segments.
type forward struct {
	rows [][]int32
	segs []model.LossSegment
}

// planForwards regroups a rank's micro-batches of one step (in order) into
// forwards of size rows. A forward that is exactly one micro-batch has no
// segments (the plain mean loss, bit for bit the unfitted step); otherwise
// each part of micro-batch j in a forward gets the weight n_part/n_j, where n
// counts the targets that are not ignored (positions 1..T−1, labels ≠ the pad token),
// so that the forwards' losses sum to Σ_j mean_j. A part without targets
// gets weight 0 (skipped), unless its whole micro-batch has none: then the
// weight is NaN, as the unfitted mean would be. A forward whose parts all
// have weight 0 is dropped (it contributes nothing).
func planForwards(micro [][][]int32, size int, pad model.Pad) []forward {
	var all [][]int32
	var owner []int // micro-batch index of each row
	counts := make([]int, len(micro))
	for j, mb := range micro {
		for _, r := range mb {
			all = append(all, r)
			owner = append(owner, j)
			counts[j] += targets(r, pad)
		}
	}
	var out []forward
	for a := 0; a < len(all); a += size {
		b := min(a+size, len(all))
		f := forward{rows: all[a:b]}
		whole := b-a == len(micro[owner[a]]) && owner[a] == owner[b-1] && (a == 0 || owner[a-1] != owner[a])
		if whole {
			out = append(out, f)
			continue
		}
		used := false
		for i := a; i < b; {
			j, n, k := owner[i], 0, i
			for ; k < b && owner[k] == j; k++ {
				n += targets(all[k], pad)
			}
			w := 0.0
			switch {
			case counts[j] == 0:
				w = math.NaN()
			case n > 0:
				w = float64(n) / float64(counts[j])
			}
			if w != 0 {
				used = true
			}
			f.segs = append(f.segs, model.LossSegment{Rows: k - i, Weight: w})
			i = k
		}
		if used {
			out = append(out, f)
		}
	}
	return out
}

// targets counts the next-token targets of a row that the loss uses.
func targets(row []int32, pad model.Pad) int {
	if len(row) < 2 {
		return 0
	}
	padID, ok := pad.ID()
	if !ok {
		return len(row) - 1
	}
	n := 0
	for _, v := range row[1:] {
		if int64(v) != padID {
			n++
		}
	}
	return n
}

// divisorsDesc returns the divisors of n, largest first.
func divisorsDesc(n int) []int {
	var d []int
	for k := n; k >= 1; k-- {
		if n%k == 0 {
			d = append(d, k)
		}
	}
	return d
}

// errTrialOOM marks a trial that ran out of memory or would not leave the
// headroom.
var errTrialOOM = errors.New("does not fit")

// chooseRows returns the largest divisor of perStep for which trial
// succeeds; trial returns errTrialOOM for a size that does not fit, and any
// other error stops the search.
func chooseRows(perStep int, trial func(rows int) error) (int, error) {
	var last error
	for _, rows := range divisorsDesc(perStep) {
		err := trial(rows)
		if err == nil {
			return rows, nil
		}
		if !errors.Is(err, errTrialOOM) {
			return 0, err
		}
		last = err
	}
	return 0, fmt.Errorf("no micro-batch fits in memory, not even one sequence: %w", last)
}

// fitForwardRows sets fwdRows; Run calls it once (unless a test set it),
// fresh when the optimizer has taken no step yet. On a CUDA device with train.fit_micro_batch, the rows per forward
// are chosen by trial forwards and backwards on random tokens under the
// training precision, largest first; on the CPU, or when fitting is off,
// forwards are the configured micro-batches. Data-parallel ranks take the
// smallest size any rank fits.
func (e *engine) fitForwardRows(fresh bool) error {
	tr := e.tr
	perStep := tr.MicroBatch * tr.Accumulation / e.peers.Size()
	e.fwdRows = tr.MicroBatch
	if !tr.FitMicroBatch || !e.dev.IsCUDA() {
		return nil
	}
	// The trial must not change the run: dropout draws from the generators,
	// and the gradients it leaves are dropped.
	var saved []*torch.Tensor
	for _, d := range e.rngDevices() {
		st, err := torch.RNGState(d)
		if err != nil {
			return err
		}
		saved = append(saved, st)
	}
	defer func() {
		for i, d := range e.rngDevices() {
			torch.SetRNGState(d, saved[i])
			saved[i].Free()
		}
	}()
	// AdamW's state (two fp32 tensors per parameter) exists only after the
	// first step; a fresh run must leave room for it.
	var optState int64
	if fresh {
		for _, p := range e.params {
			optState += 2 * 4 * p.Numel()
		}
	}
	var report string
	rows, err := chooseRows(perStep, func(rows int) error {
		peak, usable, err := e.trialStep(rows)
		e.opt.ZeroGrad()
		if err != nil {
			if torch.IsOutOfMemory(err) {
				torch.CUDAEmptyCache()
				return fmt.Errorf("%d sequences: %w (%v)", rows, errTrialOOM, err)
			}
			return fmt.Errorf("micro-batch fitting, trial of %d sequences: %w", rows, err)
		}
		if float64(peak+optState) > memoryHeadroom*float64(usable) {
			torch.CUDAEmptyCache()
			return fmt.Errorf("%d sequences: %w: peak %.1f GB + optimizer state %.1f GB > %.0f%% of %.1f GB",
				rows, errTrialOOM, gb(peak), gb(optState), 100*memoryHeadroom, gb(usable))
		}
		report = fmt.Sprintf("peak %.1f GB + optimizer state %.1f GB of %.1f GB usable", gb(peak), gb(optState), gb(usable))
		return nil
	})
	if err != nil {
		return err
	}
	if rows, err = e.agreeRows(rows); err != nil {
		return err
	}
	e.fwdRows = rows
	fmt.Fprintf(e.log, "micro-batch fitting: %d sequences per forward, %d per step and rank (configured %d × %d; %s)\n",
		rows, perStep/rows, tr.Accumulation, tr.MicroBatch, report)
	return nil
}

func gb(b int64) float64 { return float64(b) / 1e9 }

// trialStep runs one forward and backward of rows random sequences and
// returns the allocator's peak and the memory this process can use (free
// plus what the allocator holds).
func (e *engine) trialStep(rows int) (peak, usable int64, err error) {
	if err := torch.ResetCUDAPeak(e.dev); err != nil {
		return 0, 0, err
	}
	T := e.m.Config().ContextLength
	r := rand.New(rand.NewPCG(uint64(rows), 1))
	batch := make([][]int32, rows)
	for i := range batch {
		batch[i] = make([]int32, T)
		for j := range batch[i] {
			batch[i][j] = int32(r.IntN(e.m.Config().VocabSize))
		}
	}
	err = torch.Try(func() {
		e.forwardBackwardIDs(func() *torch.Tensor { return e.ids(batch) }, nil).Free()
		torch.Synchronize(e.dev)
	})
	if err != nil {
		return 0, 0, err
	}
	_, peak, err = torch.CUDAMemory(e.dev)
	if err != nil {
		return 0, 0, err
	}
	free, _, reserved, err := torch.CUDAMemInfo(e.dev)
	if err != nil {
		return 0, 0, err
	}
	return peak, free + reserved, nil
}

// agreeRows returns the smallest rows any rank chose.
func (e *engine) agreeRows(rows int) (int, error) {
	v := make([]float64, e.peers.Size())
	v[e.peers.Rank()] = float64(rows)
	s := torch.NewScope()
	defer s.Close()
	var x *torch.Tensor
	var out []float64
	err := torch.Try(func() { x = torch.FromFloat64(v, int64(len(v))).ToDevice(e.dev) })
	if err == nil {
		err = e.peers.AllReduce([]*torch.Tensor{x}, torch.ReduceOpSum)
	}
	if err == nil {
		err = torch.Try(func() { out = x.Float64s() })
	}
	if err != nil {
		return 0, fmt.Errorf("data parallel, micro-batch fitting: %w", err)
	}
	m := rows
	for _, r := range out {
		m = min(m, int(r))
	}
	return m, nil
}
