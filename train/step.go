package train

import (
	"fmt"
	"math"

	"clm/model"
	"clm/torch"
)

// One optimizer step, in named parts: the rank's micro-batches, their
// forwards and backwards, the all-reduce of a data-parallel run, unscaling
// and clipping, and the update, which the NaN guard lets through, skips or
// stops, now (a host synchronisation) or deferred.

// step runs one optimizer step: the statistics when due, then the
// engine's step of this rank's micro-batches, whose outcome goes into the
// books (account).
func (t *Trainer) step() error {
	if !t.eng.dev.IsCUDA() {
		// Last, after the step's tensors are gone: what the step no longer
		// uses leaves the CPU cache.
		defer torch.TrimCPUCache()
	}
	s := torch.NewScope()
	defer s.Close()
	t.eng.opt.SetLR(t.exp.Train.LRAt(t.st.SchedStep, t.st.TotalSteps))
	mine := t.gather()
	if t.statsDue() { // on each rank's first micro-batch
		var recErr error
		if err := torch.Try(func() { recErr = t.recordStats(t.eng.ids(mine[0])) }); err != nil {
			return fmt.Errorf("step %d: statistics: %w", t.st.Step+1, err)
		}
		if recErr != nil {
			return recErr
		}
	}
	plan := planForwards(mine, t.eng.forwardRows(), t.eng.pad)
	out, err := t.eng.step(s, plan, t.st.Step+1)
	if aerr := t.account(out); err == nil {
		err = aerr
	}
	return err
}

// account books a step's outcome: the schedule advances with every update
// applied; a checked step's loss joins the log window; a skipped one is
// counted (and said, for on_nan = skip); a non-finite one stops the run.
func (t *Trainer) account(out outcome) error {
	if out.v != notTaken && out.v != deferredStep {
		t.lastNorm = out.norm
	}
	switch out.v {
	case notTaken:
	case deferredStep:
		t.st.SchedStep++
	case applyStep:
		t.st.SchedStep++
		t.st.LogLossSum += out.loss
		t.st.LogSteps++
		t.lastLoss = out.loss
	case skipOverflow:
		t.st.SkippedSteps++
	case skipStep:
		t.st.SkippedSteps++
		t.progress.Log(fmt.Sprintf("step %d: loss %v, grad norm %v: update skipped (on_nan = skip)", t.st.Step+1, out.loss, out.norm))
	default:
		return flushed(t.metrics, &NaNError{Step: t.st.Step + 1, Loss: out.loss, GradNorm: out.norm, LastCheckpoint: t.lastCheckpointName()})
	}
	return nil
}

// gather takes the step's micro-batches and keeps this rank's: every
// world-th one.
func (t *Trainer) gather() [][][]int32 {
	var mine [][][]int32
	for j := 0; j < t.exp.Train.Accumulation; j++ {
		rows := t.batches.Next()
		if j%t.eng.peers.Size() == t.eng.peers.Rank() {
			mine = append(mine, rows)
		}
	}
	return mine
}

// statsDue reports whether this step records the papers' statistics: every
// report.every steps, and at the first (the initial weights) and the last
// step, so that every run's figures have a start and an end.
func (t *Trainer) statsDue() bool {
	every, next := t.exp.Report.Every, t.st.Step+1
	return every > 0 && (next%every == 0 || next == 1 || next == t.st.TotalSteps)
}

// outcome is what the engine did with a step, for the Trainer's books.
type outcome struct {
	v          verdict
	loss, norm float64 // a checked step's (not for deferredStep)
}

// step takes optimizer step number step (1-based) over plan: the forwards
// and backwards, the all-reduce of a data-parallel run, unscale (fp16),
// clip, update. With per-step checks (nan_check_every 1, fp16, on_nan skip)
// it reads the loss and gradient norm back (one host synchronisation) and
// applies the update only if both are finite; otherwise it applies the
// update and leaves the check to the next sync. With train.cuda_graphs the
// forwards to the update are, after the warm-up, one replay (graph.go).
func (e *engine) step(s *torch.Scope, plan []forward, step int) (outcome, error) {
	if e.graph != nil {
		if done, out, err := e.stepGraphed(s, plan, step); done || err != nil {
			return out, err
		}
	}
	lossSum, err := e.forwardBackward(plan, step)
	if err != nil {
		return outcome{}, err
	}
	if err := e.allReduce(lossSum, step); err != nil {
		return outcome{}, err
	}
	defer e.opt.ZeroGrad()
	stepLoss, norm, err := e.clip(lossSum, step)
	if err != nil {
		return outcome{}, err
	}
	if e.guard.deferred() {
		return e.applyDeferred(s, stepLoss, norm, step)
	}
	return e.applyChecked(stepLoss, norm, step)
}

// forwardBackward runs the step's forwards (fwdRows sequences each, see
// fit.go) and their backwards, each loss divided by the accumulation (and
// scaled under fp16). It returns the sum of the micro-batch mean losses,
// float64, on the device.
func (e *engine) forwardBackward(plan []forward, step int) (*torch.Tensor, error) {
	return e.forwardBackwardPlan(plan, step, func(i int) *torch.Tensor { return e.ids(plan[i].rows) })
}

// forwardRows is the number of sequences per forward: fwdRows, or
// micro_batch when Run has not fitted it (benchmarks of the step alone).
func (e *engine) forwardRows() int {
	if e.fwdRows <= 0 {
		return e.tr.MicroBatch
	}
	return e.fwdRows
}

// forwardBackwardPlan runs the forwards of plan and their backwards; ids
// gives forward i's token ids.
func (e *engine) forwardBackwardPlan(plan []forward, step int, ids func(i int) *torch.Tensor) (*torch.Tensor, error) {
	var lossSum *torch.Tensor
	for i, f := range plan {
		if err := torch.Try(func() {
			d := e.forwardBackwardIDs(func() *torch.Tensor { return ids(i) }, f.segs).ToDType(torch.Float64)
			if lossSum == nil {
				lossSum = d
			} else {
				lossSum = lossSum.Add(d)
			}
		}); err != nil {
			return nil, fmt.Errorf("step %d: %w", step, err)
		}
	}
	return lossSum, nil
}

// forwardBackwardIDs is one forward of the token ids that ids returns (with
// the loss segments of a fitted forward) and its backward, in a scope of its
// own: a micro-batch's activations are released before the next one
// starts, so that the peak does not grow with the accumulation. It returns
// the loss, detached.
func (e *engine) forwardBackwardIDs(ids func() *torch.Tensor, segs []model.LossSegment) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()
	x := ids()
	accum := float64(e.tr.Accumulation)
	return s.Keep(e.m.ForwardBackward(x,
		model.ForwardOptions{Labels: x, Pad: e.pad, Train: true, LossOnly: true, LossSegments: segs},
		model.BackwardOptions{
			Checkpoint: e.ckpt,
			Under:      e.underPrecision,
			Seed:       func(loss *torch.Tensor) *torch.Tensor { return e.scaler.scale(loss.DivScalar(accum)) },
		}))
}

// allReduce sums the gradients and the loss over the ranks of a
// data-parallel run: each rank's gradients are its micro-batches' share of
// the step's sum.
func (e *engine) allReduce(lossSum *torch.Tensor, step int) error {
	if e.peers.Size() == 1 {
		return nil // nothing to sum, and no gradient handles to take
	}
	var grads []*torch.Tensor
	for _, p := range e.params {
		if g := p.Grad(); g != nil {
			grads = append(grads, g)
		}
	}
	if err := e.peers.AllReduce(append(grads, lossSum), torch.ReduceOpSum); err != nil {
		return fmt.Errorf("data parallel, step %d: %w", step, err)
	}
	return nil
}

// clip unscales the gradients (fp16) and clips their global norm to
// max_grad_norm (0: no clipping, the norm is still computed). It returns
// the step's mean loss and the norm before clipping, float64 on the device.
func (e *engine) clip(lossSum *torch.Tensor, step int) (stepLoss, norm *torch.Tensor, err error) {
	err = torch.Try(func() {
		e.scaler.unscale(e.params)
		maxNorm := e.tr.MaxGradNorm
		if maxNorm == 0 {
			maxNorm = math.Inf(1)
		}
		norm = torch.ClipGradNorm(e.params, maxNorm, 2).ToDType(torch.Float64)
		stepLoss = lossSum.DivScalar(float64(e.tr.Accumulation))
	})
	if err != nil {
		return nil, nil, fmt.Errorf("step %d: %w", step, err)
	}
	return stepLoss, norm, nil
}

// applyDeferred applies the update and keeps the check on the device until
// the next sync.
func (e *engine) applyDeferred(s *torch.Scope, stepLoss, norm *torch.Tensor, step int) (outcome, error) {
	if err := torch.Try(e.update); err != nil {
		return outcome{}, fmt.Errorf("step %d: %w", step, err)
	}
	return outcome{v: deferredStep}, torch.Try(func() { e.pend.add(s, step, stepLoss, norm) })
}

// applyChecked reads the step's loss and gradient norm back (the one host
// synchronisation) and applies or skips the update as the guard decides.
func (e *engine) applyChecked(stepLoss, norm *torch.Tensor, step int) (outcome, error) {
	var check []float64
	if err := torch.Try(func() {
		check = torch.Stack([]*torch.Tensor{stepLoss, norm}, 0).Float64s()
	}); err != nil {
		return outcome{}, fmt.Errorf("step %d: %w", step, err)
	}
	out := outcome{v: e.guard.judge(check[0], check[1], e.scaler.on), loss: check[0], norm: check[1]}
	switch out.v {
	case applyStep:
		if err := torch.Try(e.update); err != nil {
			return outcome{}, fmt.Errorf("step %d: %w", step, err)
		}
		e.scaler.finite()
	case skipOverflow:
		e.scaler.overflow()
	}
	return out, nil
}

// forward runs the model under the run's precision.
func (e *engine) forward(ids *torch.Tensor, o model.ForwardOptions) model.Output {
	var out model.Output
	e.underPrecision(func() { out = e.m.Forward(ids, o) })
	return out
}

// underPrecision runs f under the run's autocast, if any.
func (e *engine) underPrecision(f func()) {
	if dt, ok := e.precision.autocast(); ok {
		torch.Autocast(e.dev, dt, f)
		return
	}
	f()
}

// lossScaler is fp16's dynamic loss scaling, as torch.amp.GradScaler does
// it for HF Trainer: the loss is multiplied by the scale before backward
// and the gradients divided by it after; an overflow in the scaled
// gradients skips the step (and its schedule step) and halves the scale;
// 2000 applied steps in a row double it. Its state lives in the State, so
// that checkpoints carry it. Off, it does nothing.
type lossScaler struct {
	on bool
	st *State
}

// scale multiplies a loss by the scale.
func (l lossScaler) scale(loss *torch.Tensor) *torch.Tensor {
	if !l.on {
		return loss
	}
	return loss.MulScalar(l.st.LossScale)
}

// unscale divides the gradients by the scale.
func (l lossScaler) unscale(params []*torch.Tensor) {
	if !l.on {
		return
	}
	for _, p := range params {
		if g := p.Grad(); g != nil {
			g.ScaleInPlace(1 / l.st.LossScale)
		}
	}
}

// finite counts an applied step; the 2000th in a row doubles the scale.
func (l lossScaler) finite() {
	if !l.on {
		return
	}
	if l.st.GrowthTracker++; l.st.GrowthTracker == 2000 {
		l.st.LossScale *= 2
		l.st.GrowthTracker = 0
	}
}

// overflow halves the scale.
func (l lossScaler) overflow() {
	l.st.LossScale *= 0.5
	l.st.GrowthTracker = 0
}

// nanGuard is train.on_nan and train.nan_check_every: how often the loss
// and gradient norm are read back, and what a non-finite one does.
type nanGuard struct {
	policy NaNPolicy
	// every is the number of steps between host synchronisations: every
	// step on the CPU, every log_every steps on a GPU unless set; always 1
	// under fp16 and on_nan = skip, which decide each step's update.
	every int
}

// newNaNGuard resolves nan_check_every for precision p on dev.
func newNaNGuard(o *Options, p Precision, dev torch.Device) nanGuard {
	g := nanGuard{policy: o.OnNaN, every: o.NaNCheckEvery}
	if g.every == 0 {
		g.every = 1
		if dev.IsCUDA() {
			g.every = o.LogEvery
		}
	}
	if p == FP16 || o.OnNaN == SkipOnNaN {
		g.every = 1
	}
	return g
}

// deferred reports whether steps apply their update before their check.
func (g nanGuard) deferred() bool { return g.every > 1 }

// due reports whether step (1-based, just taken) ends a check interval.
func (g nanGuard) due(step int) bool { return step%g.every == 0 }

// verdict is what the guard makes of a checked step.
type verdict int

const (
	notTaken     verdict = iota // an error before the update
	applyStep                   // finite: apply the update
	deferredStep                // applied; checked at the next sync
	skipOverflow                // fp16 overflow in the gradients: skip, halve the scale
	skipStep                    // not finite, on_nan = skip
	stopRun                     // not finite, on_nan = stop
)

// judge decides a step from its loss and gradient norm; scaled says
// whether fp16 loss scaling is on (a finite loss with a non-finite norm is
// then an overflow of the scale, not a divergence).
func (g nanGuard) judge(loss, norm float64, scaled bool) verdict {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case finite(loss) && finite(norm):
		return applyStep
	case scaled && finite(loss):
		return skipOverflow
	case g.policy == SkipOnNaN:
		return skipStep
	}
	return stopRun
}

// pending holds what steps taken since the last host synchronisation left on
// the device: the sum of their losses, the count of non-finite losses or
// gradient norms, and the latest norm.
type pending struct {
	loss, bad, norm *torch.Tensor
	steps, first    int
}

// add accumulates step's loss and norm; the sums live outside the step's
// scope s.
func (p *pending) add(s *torch.Scope, step int, stepLoss, norm *torch.Tensor) {
	both := stepLoss.Add(norm)
	bad := both.Sub(both).NeScalar(0).ToDType(torch.Float64) // NaN or ±Inf
	if p.loss == nil {
		p.first = step
		p.loss, p.bad = s.Keep(stepLoss), s.Keep(bad)
	} else {
		l, b := p.loss.Add(stepLoss), p.bad.Add(bad)
		p.loss.Free()
		p.bad.Free()
		p.loss, p.bad = s.Keep(l), s.Keep(b)
	}
	p.norm.Free()
	p.norm = s.Keep(norm)
	p.steps++
}

func (p *pending) free() {
	p.loss.Free()
	p.bad.Free()
	p.norm.Free()
	*p = pending{}
}

// checkWindow is what the steps since the last synchronisation left on the
// device, read back.
type checkWindow struct {
	first, steps    int
	loss, bad, norm float64 // the sum of their losses, the count of non-finite values, the latest norm
}

// takePending reads and clears the deferred steps' sums (steps 0: none).
func (e *engine) takePending() (checkWindow, error) {
	if e.pend.loss == nil {
		return checkWindow{}, nil
	}
	var v []float64
	err := torch.Try(func() {
		s := torch.NewScope()
		defer s.Close()
		v = torch.Stack([]*torch.Tensor{e.pend.loss, e.pend.bad, e.pend.norm}, 0).Float64s()
	})
	w := checkWindow{first: e.pend.first, steps: e.pend.steps}
	e.pend.free()
	if err != nil {
		return checkWindow{}, err
	}
	w.loss, w.bad, w.norm = v[0], v[1], v[2]
	return w, nil
}

// sync reads what deferred steps left on the device: their losses join the
// log window, and a non-finite loss or norm among them stops the run.
func (t *Trainer) sync() error {
	w, err := t.eng.takePending()
	if err != nil || w.steps == 0 {
		return err
	}
	if w.bad > 0 {
		return flushed(t.metrics, &NaNError{Step: w.first, LastStep: t.st.Step, Loss: w.loss, GradNorm: w.norm, LastCheckpoint: t.lastCheckpointName()})
	}
	t.st.LogLossSum += w.loss
	t.st.LogSteps += w.steps
	t.lastLoss, t.lastNorm = w.loss/float64(w.steps), w.norm
	return nil
}

func (t *Trainer) lastCheckpointName() string {
	if t.lastCkpt == "" {
		return "none yet"
	}
	return t.lastCkpt
}

// NaNError reports a non-finite loss or gradient; the update of that step
// was not applied.
type NaNError struct {
	// Step is the step of the non-finite value; with deferred checks, the
	// first step of the window [Step, LastStep] that contained it.
	Step, LastStep int
	Loss, GradNorm float64
	LastCheckpoint string
}

func (e *NaNError) Error() string {
	if e.LastStep > e.Step {
		return fmt.Sprintf("steps %d–%d: a loss or gradient norm was not finite (checked every train.nan_check_every steps); last checkpoint: %s",
			e.Step, e.LastStep, e.LastCheckpoint)
	}
	return fmt.Sprintf("step %d: loss %v, gradient norm %v: stopped before applying the update; last checkpoint: %s (set train.on_nan = \"skip\" to skip such steps)",
		e.Step, e.Loss, e.GradNorm, e.LastCheckpoint)
}
