// Package train is clm's training loop: the original's HF Trainer run
// (AdamW groups, warmup and decay schedule, gradient accumulation, clipping,
// mixed precision with dynamic loss scaling), evaluation, the outlier
// statistics of the papers, metrics, checkpoints and exact resume.
package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"

	"clm/internal/fault"
	"clm/internal/jsondiff"
	"clm/model"
	"clm/optim"
	"clm/runlog"
	"clm/stats"
	"clm/torch"
)

// Batches supplies training micro-batches (rows of token ids) and a cursor
// that a checkpoint saves and restores exactly. Rows stay valid after later
// calls of Next (a step gathers all its micro-batches before the forwards).
type Batches interface {
	Next() [][]int32
	MarshalState() ([]byte, error)
	UnmarshalState([]byte) error
}

// EvalSet is the validation chunks.
type EvalSet interface {
	Len() int
	Chunk(i int, dst []int32) []int32
}

// ErrInterrupted is returned by Run when its context was cancelled (Ctrl-C,
// SIGTERM) after the checkpoint was written.
var ErrInterrupted = errors.New("interrupted")

// Trainer runs one experiment in a run folder.
type Trainer struct {
	exp      *Experiment
	dir      string
	eng      *engine // the step: model, optimizer, precision, checks, graphs
	batches  Batches
	valid    EvalSet
	metrics  *runlog.Writer
	progress Progress
	cost     costMeter
	log      io.Writer
	st       State
	lastCkpt string
	resumed  bool // Resume loaded a checkpoint: its step-0 evaluation is logged already
	// meter measures each log window's peak memory.
	meter    peakMeter
	lastLoss float64 // last synchronised step loss, for the progress bar
	lastNorm float64
}

// engine is what takes a step: the model and its optimizer over the
// trainable parameters, the precision with fp16's loss scaler, activation
// checkpointing, the forwards' size (micro-batch fitting), the
// data-parallel world, the NaN guard with the sums deferred checks keep on
// the device, and the CUDA graph of the whole step. The Trainer around it
// keeps the schedule of logs, evaluations and checkpoints, and the state.
type engine struct {
	tr     *Options // the run's [train] settings, fixed for the run
	dev    torch.Device
	m      *model.Model
	opt    optim.Optimizer
	params []*torch.Tensor // trainable, in registry order
	pad    model.Pad
	rowBuf []int64
	// precision is train.precision resolved for the device.
	precision Precision
	// ckpt is train.checkpoint_activations.
	ckpt   model.Checkpointing
	scaler lossScaler
	guard  nanGuard
	// Deferred checks (train.nan_check_every > 1): device-side sums since
	// the last host synchronisation.
	pend pending
	// peers is the data-parallel world (solo for one process).
	peers replicas
	// fwdRows is the number of sequences per forward: micro_batch, or what
	// micro-batch fitting chose (fit.go).
	fwdRows int
	// graph is train.cuda_graphs (graph.go); nil when off.
	graph *graphStep
	log   io.Writer // the capture's messages
	// profile, when not nil, profiles some steps (rank 0).
	profile *stepProfile
}

// Config of NewTrainer.
type Config struct {
	Experiment *Experiment
	Dir        string // run folder
	Model      *model.Model
	Batches    Batches
	Valid      EvalSet // may be nil: no evaluation
	// TotalSteps of the schedule (see TotalSteps).
	TotalSteps int
	// Pad is the token whose labels are ignored (the original's pad =
	// eos); the zero value is none.
	Pad model.Pad
	// Log receives one-line messages; Progress the step counter.
	Log      io.Writer
	Progress Progress
	// Group, when not nil, trains data-parallel: every rank holds a replica
	// and takes every world-th micro-batch of each step (accumulation must
	// be a multiple of the world size, so that the effective batch stays
	// micro_batch × accumulation); gradients are summed across ranks before
	// clipping; rank 0 alone writes metrics and checkpoints.
	Group *torch.ProcessGroup
	// Profile names the steps to profile with libtorch's profiler (rank 0
	// only; see ProfileDir); the zero value profiles none.
	Profile ProfileSteps
}

// TotalSteps is the schedule length of e with trainChunks training chunks:
// max_steps, or epochs × ⌊⌊chunks / micro_batch⌋ / accumulation⌋ rounded up
// (HF's num_update_steps_per_epoch; incomplete micro-batches are dropped).
func TotalSteps(e *Experiment, trainChunks int) int {
	if e.Train.MaxSteps > 0 {
		return e.Train.MaxSteps
	}
	perEpoch := trainChunks / e.Train.MicroBatch / e.Train.Accumulation
	return int(math.Ceil(e.Train.Epochs * float64(perEpoch)))
}

// ParamGroups splits the trainable parameters by the original's rule, which
// the declared roles carry (model.Role.Decays): weight decay for matrices
// and embeddings, none for norms, biases and gains; frozen parameters are
// left out.
func ParamGroups(ps *model.Params, weightDecay, lr float64) (groups []torch.ParamGroup, summary string) {
	var decay, none []*torch.Tensor
	var nd, nn int64
	for _, p := range ps.Trainable() {
		n := p.T.Numel()
		if p.Role.Decays() {
			decay, nd = append(decay, p.T), nd+n
		} else {
			none, nn = append(none, p.T), nn+n
		}
	}
	summary = fmt.Sprintf("param groups: decay %d tensors, %d parameters; no decay %d tensors, %d parameters",
		len(decay), nd, len(none), nn)
	return []torch.ParamGroup{
		{Params: decay, LR: lr, WeightDecay: weightDecay},
		{Params: none, LR: lr, WeightDecay: 0},
	}, summary
}

// NewTrainer builds the optimizer for c.Model. It validates the experiment
// first and never changes it; Run applies train.threads. Call Resume to
// continue from a checkpoint before Run.
func NewTrainer(c Config) (*Trainer, error) {
	e := c.Experiment
	if err := e.Validate(); err != nil {
		return nil, err
	}
	peers := replicasOf(c.Group)
	if world := peers.Size(); e.Train.Accumulation%world != 0 {
		return nil, fmt.Errorf("train.accumulation %d must be a multiple of the world size %d (each rank takes every %d-th micro-batch; the effective batch stays micro_batch × accumulation)",
			e.Train.Accumulation, world, world)
	}
	opt, summary, err := newOptimizer(&e.Train, c.Model.Params())
	if err != nil {
		return nil, err
	}
	t := &Trainer{exp: e, dir: c.Dir, batches: c.Batches, valid: c.Valid, progress: c.Progress, log: c.Log,
		eng: &engine{tr: &e.Train, dev: c.Model.Options().Device, m: c.Model, opt: opt, pad: c.Pad, peers: peers}}
	if t.log == nil {
		t.log = io.Discard
	}
	t.eng.log = t.log
	if c.Profile.From > 0 && peers.Rank() == 0 {
		if c.Profile.To > c.TotalSteps {
			return nil, fmt.Errorf("profile: steps %d-%d, but the run has %d steps", c.Profile.From, c.Profile.To, c.TotalSteps)
		}
		t.eng.profile = &stepProfile{ProfileSteps: c.Profile, dir: ProfileDir(c.Dir), dev: t.eng.dev, log: t.log}
	}
	if t.progress == nil {
		t.progress = nopProgress{}
	}
	fmt.Fprintln(t.log, summary)
	for _, p := range c.Model.Params().Trainable() {
		t.eng.params = append(t.eng.params, p.T)
	}
	t.eng.precision = e.Train.Precision.on(t.eng.dev)
	t.meter = peakMeter{dev: t.eng.dev}
	t.eng.ckpt = e.Train.CheckpointActivations
	t.st = State{TotalSteps: c.TotalSteps, LossScale: 65536, LibTorch: torch.Version()}
	t.eng.scaler = lossScaler{on: t.eng.precision == FP16, st: &t.st}
	t.eng.guard = newNaNGuard(&e.Train, t.eng.precision, t.eng.dev)
	if b, err := e.TOML(); err == nil {
		t.st.Experiment = string(b)
	}
	if e.Train.CUDAGraphs {
		err := checkGraphs(&e.Train, t.eng.dev, t.eng.peers.Size())
		if err == nil {
			err = t.eng.enableGraphs(captureCUDA)
		}
		if err != nil {
			opt.Close()
			return nil, err
		}
	}
	return t, nil
}

// Close releases the optimizer and the metrics files (not the model).
func (t *Trainer) Close() error {
	t.eng.graph.close()
	t.eng.pend.free()
	t.eng.opt.Close()
	if t.metrics != nil {
		return t.metrics.Close()
	}
	return nil
}

// State returns the loop's current state.
func (t *Trainer) State() State { return t.st }

// Optimizer returns the optimizer.
func (t *Trainer) Optimizer() optim.Optimizer { return t.eng.opt }

// rngDevices are the generators a checkpoint saves.
func (t *Trainer) rngDevices() []torch.Device { return t.eng.rngDevices() }

// rngDevices are the generators the step draws from: the CPU's, and the
// GPU's when it runs on one.
func (e *engine) rngDevices() []torch.Device {
	if e.dev.IsCUDA() {
		return []torch.Device{torch.CPU, e.dev}
	}
	return []torch.Device{torch.CPU}
}

// Resume restores the newest checkpoint of the run folder. It returns false
// when there is none.
func (t *Trainer) Resume() (bool, error) {
	ckpt, err := LatestCheckpoint(t.dir)
	if err != nil || ckpt == "" {
		return false, err
	}
	cfg, err := ReadModelConfig(ckpt)
	if err != nil {
		return false, damaged(t.dir, ckpt, err)
	}
	if diff := configDiff(cfg, t.eng.m.Config()); diff != "" {
		return false, fmt.Errorf("resume %s: the checkpoint's model differs from the experiment's: %s", ckpt, diff)
	}
	st, err := LoadCheckpoint(ckpt, t.eng.m, t.eng.opt, t.rngDevices())
	if err != nil {
		return false, damaged(t.dir, ckpt, err)
	}
	if err := t.batches.UnmarshalState(st.Data); err != nil {
		return false, fmt.Errorf("resume %s: data cursor: %w", ckpt, err)
	}
	total := t.st.TotalSteps
	t.st = st
	if total != st.TotalSteps {
		return false, fmt.Errorf("resume %s: the run's schedule has %d steps, the experiment now gives %d (max_steps, epochs, batch sizes and data must stay as they were)", ckpt, st.TotalSteps, total)
	}
	t.lastCkpt, t.resumed = ckpt, true
	fmt.Fprintf(t.log, "resumed from %s (step %d of %d)\n", ckpt, st.Step, st.TotalSteps)
	return true, nil
}

// configDiff names the first keys, in key order, in which two model
// configs differ.
func configDiff(a, b model.Config) string {
	fields, err := jsondiff.Fields(a, b)
	if err != nil {
		return err.Error()
	}
	var diffs []string
	for _, f := range fields {
		diffs = append(diffs, fmt.Sprintf("model.%s %s (checkpoint) vs %s", f.Key, f.A, f.B))
	}
	if len(diffs) > 3 {
		diffs = append(diffs[:3], fmt.Sprintf("and %d more", len(diffs)-3))
	}
	return strings.Join(diffs, ", ")
}

// Run trains until the schedule ends or ctx is cancelled; either way it
// writes a final checkpoint. On cancellation it returns ErrInterrupted.
func (t *Trainer) Run(ctx context.Context) error {
	runtime.LockOSThread() // grad mode, autocast and the thread count are per OS thread
	defer runtime.UnlockOSThread()
	// libtorch's count holds for the OS thread that sets it (and for
	// threads that have not run an op yet): set it on the one that trains,
	// the default too, or a run and its resumption may differ in the last
	// bit.
	if err := torch.SetNumThreads(threadCount(&t.exp.Train)); err != nil {
		return err
	}
	if err := t.start(); err != nil {
		return err
	}
	t.progress.Start(t.st.TotalSteps, t.st.Step)
	defer t.progress.Finish()
	t.progress.Log(t.plan())
	var err error
	switch {
	case t.st.PendingEval:
		err = t.finishPendingEval(ctx)
	case t.st.Step == 0 && !t.resumed && t.valid != nil:
		err = t.evaluate(ctx)
	}
	if errors.Is(err, errEvalInterrupted) {
		return flushed(t.metrics, ErrInterrupted) // the checkpoint, if any, stands with its pending evaluation
	} else if err != nil {
		return err
	}
	tr := &t.exp.Train
	tokensPerStep := int64(tr.MicroBatch * tr.Accumulation * t.eng.m.Config().ContextLength)
	w := window{start: time.Now()}
	t.meter.reset()
	t.cost.begin(t.st.Step)
	for t.st.Step < t.st.TotalSteps {
		if ctx.Err() != nil {
			if _, err := t.checkpoint(); err != nil {
				return err
			}
			return flushed(t.metrics, ErrInterrupted)
		}
		if err := t.eng.profile.begin(t.st.Step + 1); err != nil {
			return err
		}
		if err := t.step(); err != nil {
			return err
		}
		if err := t.eng.profile.end(t.st.Step + 1); err != nil {
			return err
		}
		t.st.Step++
		fault.Point("train.step") // the crash tests: after an update, before its records
		t.st.Tokens += tokensPerStep
		w.tokens += tokensPerStep
		if err := t.afterStep(ctx, &w); err != nil {
			return err
		}
		if t.cost.due(t.st.Step, t.st.TotalSteps) {
			if err := t.sync(); err != nil {
				return err
			}
			t.progress.Log(t.estimate())
		}
	}
	if _, err := t.checkpoint(); err != nil {
		return err
	}
	return t.metrics.Flush()
}

// threadCount is train.threads, or libtorch's default for 0.
func threadCount(o *Options) int {
	if o.Threads > 0 {
		return o.Threads
	}
	return torch.DefaultNumThreads()
}

// start opens the run log (rank 0), gives every replica rank 0's
// parameters (data parallelism) and fits the forwards to the device.
func (t *Trainer) start() error {
	if t.eng.peers.Rank() == 0 {
		keep := -1 // a run that starts over drops what an earlier attempt logged
		if t.resumed {
			keep = t.st.Step
		}
		var err error
		if t.metrics, err = runlog.Open(t.dir, int64(keep)); err != nil {
			return err
		}
	}
	// Every replica starts from rank 0's weights.
	state := make([]*torch.Tensor, 0, len(t.eng.m.State()))
	for _, n := range t.eng.m.State() {
		state = append(state, n.Tensor)
	}
	var err error
	torch.NoGrad(func() { err = t.eng.peers.Broadcast(state, 0) })
	if err != nil {
		return fmt.Errorf("data parallel: %w", err)
	}
	if t.eng.fwdRows == 0 {
		return t.eng.fitForwardRows(t.st.SchedStep == 0)
	}
	return nil
}

// window is the log window: tokens trained since its start.
type window struct {
	start  time.Time
	tokens int64
}

// tokensPerSec is the window's throughput.
func (w *window) tokensPerSec() float64 { return float64(w.tokens) / time.Since(w.start).Seconds() }

// afterStep does what the step just taken calls for: the host
// synchronisation of deferred checks, the progress display, and at their
// intervals the log record, the evaluation and the checkpoint.
func (t *Trainer) afterStep(ctx context.Context, w *window) error {
	tr := &t.exp.Train
	last := t.st.Step == t.st.TotalSteps
	logStep := t.st.Step%tr.LogEvery == 0 || last
	evalStep := t.valid != nil && (t.st.Step%tr.EvalEvery == 0 || last)
	saveStep := t.st.Step%tr.SaveEvery == 0 && !last // the last checkpoint follows the loop
	if t.eng.guard.due(t.st.Step) || logStep || evalStep || saveStep || ctx.Err() != nil {
		if err := t.sync(); err != nil {
			return err
		}
	}
	t.progress.Update(t.st.Step, t.lastLoss, t.lastLR(), w.tokensPerSec())
	if logStep {
		if err := t.logTrain(w); err != nil {
			return err
		}
	}
	if evalStep {
		if err := t.evaluate(ctx); errors.Is(err, errEvalInterrupted) {
			t.st.PendingEval = true
			if _, err := t.checkpoint(); err != nil {
				return err
			}
			return flushed(t.metrics, ErrInterrupted)
		} else if err != nil {
			return err
		}
	}
	if saveStep {
		_, err := t.checkpoint()
		return err
	}
	return nil
}

// logTrain records the log window's mean loss and throughput, and starts a
// new window.
func (t *Trainer) logTrain(w *window) error {
	tps := w.tokensPerSec()
	avg := math.NaN()
	if t.st.LogSteps > 0 {
		avg = t.st.LogLossSum / float64(t.st.LogSteps)
	}
	peak := t.meter.peak()
	rec := runlog.Train{Step: int64(t.st.Step), Loss: avg, LR: t.lastLR(), GradNorm: t.lastNorm,
		TokensPerSec: tps, Tokens: t.st.Tokens, PeakMemory: peak}
	if t.eng.scaler.on {
		rec.LossScale = t.st.LossScale
	}
	if err := t.metrics.Record(rec); err != nil {
		return err
	}
	t.progress.Log(fmt.Sprintf("step %d/%d  loss %.4f  lr %.3g  grad_norm %.3g  %.0f tok/s  peak %s",
		t.st.Step, t.st.TotalSteps, avg, t.lastLR(), t.lastNorm, tps, human(float64(peak))))
	t.st.LogLossSum, t.st.LogSteps = 0, 0
	*w = window{start: time.Now()}
	t.meter.reset()
	return nil
}

// lastLR is the learning rate the latest step used.
func (t *Trainer) lastLR() float64 {
	return t.exp.Train.LRAt(max(t.st.SchedStep-1, 0), t.st.TotalSteps)
}

func (t *Trainer) checkpoint() (string, error) {
	if t.eng.peers.Rank() != 0 {
		t.lastCkpt = CheckpointPath(t.dir, t.st.Step)
		return t.lastCkpt, t.barrier()
	}
	data, err := t.batches.MarshalState()
	if err != nil {
		return "", err
	}
	t.st.Data = data
	if !t.eng.dev.IsCUDA() {
		// The copies written to disk would come on top of the blocks the
		// CPU cache keeps for the next step (as much as the step's peak):
		// give those back instead; the next step maps them again once.
		torch.EmptyCPUCache()
	}
	// The records up to this step become durable before the checkpoint that
	// claims them: a crash in between loses nothing for good.
	if err := t.metrics.Flush(); err != nil {
		return "", err
	}
	t.progress.Phase(fmt.Sprintf("saving the checkpoint of step %d", t.st.Step), 0, 0)
	path, err := SaveCheckpoint(t.dir, t.eng.m, t.eng.opt, t.st, t.rngDevices())
	if err != nil {
		return "", err
	}
	t.lastCkpt = path
	t.progress.Log("checkpoint " + path)
	return path, t.barrier()
}

// barrier waits for every rank (data parallelism); a rank that died makes
// it fail within the group's timeout.
func (t *Trainer) barrier() error {
	if err := t.eng.peers.Barrier(); err != nil {
		return fmt.Errorf("data parallel, step %d: %w", t.st.Step, err)
	}
	return nil
}

// ids turns rows of token ids into an int64 [B, T] tensor on the device.
func (e *engine) ids(rows [][]int32) *torch.Tensor {
	B, T := len(rows), len(rows[0])
	if cap(e.rowBuf) < B*T {
		e.rowBuf = make([]int64, B*T)
	}
	buf := e.rowBuf[:B*T]
	for i, r := range rows {
		for j, v := range r {
			buf[i*T+j] = int64(v)
		}
	}
	x := torch.FromInt64(buf, int64(B), int64(T))
	if e.dev.IsCUDA() {
		x = x.Upload(e.dev) // the step loop never waits for the GPU here
	}
	return x
}

// finishPendingEval does the evaluation that an interrupted run left pending
// at the checkpoint it resumed from (unless the log already holds it: a
// stop after it was recorded), makes its record durable, and then clears
// the pending mark in the checkpoint's state.json alone: the weights and
// optimizer state are those of the step, unchanged.
func (t *Trainer) finishPendingEval(ctx context.Context) error {
	done, err := t.metrics.Has(runlog.KindEval, int64(t.st.Step))
	if err != nil {
		return err
	}
	if !done {
		if err := t.evaluate(ctx); err != nil {
			return err
		}
	}
	if err := t.metrics.Flush(); err != nil {
		return err
	}
	fault.Point("train.pending eval recorded") // the crash tests: recorded, still pending
	t.st.PendingEval = false
	return clearPendingEval(t.lastCkpt)
}

// evaluate writes the mean loss per sequence over the validation chunks;
// cancelled, it stops between batches with errEvalInterrupted.
func (t *Trainer) evaluate(ctx context.Context) error {
	tr := &t.exp.Train
	n := evalSize(t.valid, tr.EvalBatch, tr.EvalBatches)
	if n == 0 {
		return nil
	}
	start := time.Now()
	total, err := t.evalLossSum(ctx, n)
	if errors.Is(err, errEvalInterrupted) {
		t.progress.Log(fmt.Sprintf("step %d/%d  evaluation interrupted: it runs first when the run is resumed", t.st.Step, t.st.TotalSteps))
		return err
	}
	if err != nil {
		return fmt.Errorf("evaluation at step %d: %w", t.st.Step, err)
	}
	if total, err = t.sumOverRanks(total); err != nil {
		return fmt.Errorf("data parallel, evaluation at step %d: %w", t.st.Step, err)
	}
	t.cost.evaluated(time.Since(start))
	loss := total / float64(n)
	if err := t.metrics.Record(runlog.Eval{Step: int64(t.st.Step), EvalLoss: loss, EvalSequences: n}); err != nil {
		return err
	}
	t.progress.Log(fmt.Sprintf("step %d/%d  eval_loss %.4f  (%d sequences, %.1fs)", t.st.Step, t.st.TotalSteps, loss, n, time.Since(start).Seconds()))
	return nil
}

// evalLossSum is Σ loss·rows over the first n validation chunks (see
// evalLoop), with this trainer's batches, precision and ranks.
func (t *Trainer) evalLossSum(ctx context.Context, n int) (float64, error) {
	l := evalLoop{valid: t.valid, n: n, batch: t.exp.Train.EvalBatch, rank: t.eng.peers.Rank(), size: t.eng.peers.Size(),
		ids: t.eng.ids, pad: t.eng.pad, forward: t.eng.forward,
		phase: func(done, total int) { t.progress.Phase(fmt.Sprintf("eval at step %d", t.st.Step), done, total) }}
	return l.sum(ctx)
}

// recordStats logs the papers' statistics on a training micro-batch. A
// statistic that cannot be computed is reported and left out; a record
// that cannot be written stops the run.
func (t *Trainer) recordStats(x *torch.Tensor) error {
	r := &t.exp.Report
	rec := runlog.Stats{Step: int64(t.st.Step + 1)}
	problem := func(err error) { t.progress.Log(fmt.Sprintf("statistics at step %d: %v", t.st.Step+1, err)) }
	torch.NoGrad(func() {
		out := t.eng.forward(x, model.ForwardOptions{Hidden: r.Outliers, Attention: r.Entropy, Pad: t.eng.pad})
		if r.Outliers {
			if ls, err := stats.OutlierStats(out.Hidden); err == nil {
				rec.Layers = ls
			} else {
				problem(err)
			}
		}
		if r.Entropy {
			if ent, err := stats.AttentionEntropy(out.Attention); err != nil {
				problem(err)
			} else if rec.AttnEntropy = ent; ent == nil {
				rec.AttnEntropy = []float64{} // computed: logged even for no layers
			}
		}
	})
	t.averageStats(&rec)
	if r.Gains {
		if gs, err := Gains(t.eng.m.Params()); err == nil {
			rec.Gains = runlog.GainValues(gs) // identical on every replica
		} else {
			problem(err)
		}
	}
	if rec.Layers == nil && rec.AttnEntropy == nil && rec.Gains == nil {
		return nil
	}
	return t.metrics.Record(rec)
}

// averageStats replaces the per-layer statistics of this rank's micro-batch
// with their mean over the ranks (data parallelism).
func (t *Trainer) averageStats(rec *runlog.Stats) {
	ls, ent := rec.Layers, rec.AttnEntropy
	var flat []float64
	for _, l := range ls {
		flat = append(flat, l.Values()...)
	}
	flat = append(flat, ent...)
	if len(flat) == 0 {
		return
	}
	v := torch.FromFloat64(flat)
	defer v.Free()
	if err := t.eng.peers.AllReduce([]*torch.Tensor{v}, torch.ReduceOpAvg); err != nil {
		t.progress.Log(fmt.Sprintf("statistics at step %d: %v", t.st.Step+1, err))
		return
	}
	avg := v.Float64s()
	const k = runlog.StatsPerLayer
	for i := range ls {
		ls[i] = runlog.LayerStatsOf(ls[i].Layer, avg[i*k:(i+1)*k])
	}
	copy(ent, avg[k*len(ls):])
}
