package train

import (
	"fmt"
	"strings"

	"clm/model"
	"clm/optim"
	"clm/torch"
)

// train.cuda_graphs: on a GPU, the step's forwards, backwards, clipping and
// AdamW update are captured once in a CUDA graph, after graphWarmup eager
// steps, and replayed for every later step, so that a step costs one launch
// instead of the thousands its kernels take one by one. The host keeps
// what changes from step to step: the batch, copied into the graph's input
// tensors, and AdamW's learning rate and bias corrections, written to the
// device by its graph mode (torch.AdamWGraph) before each replay. The NaN
// checks stay deferred: each replay's loss and gradient norm join the
// device-side sums that the next synchronisation reads.

// graphWarmup is the number of eager steps before the capture: they create
// AdamW's state and let libtorch and cuBLAS make their lazy allocations
// outside the graph (PyTorch's documentation warms up 3 steps too).
const graphWarmup = 3

// replayer is a captured step: a torch.CUDAGraph, or, in the CPU tests, the
// captured function run again.
type replayer interface {
	Replay() error
	Close()
}

// captureFunc captures f on dev into a replayer without running it.
type captureFunc func(dev torch.Device, f func()) (replayer, error)

// captureCUDA is torch.CaptureCUDAGraph.
func captureCUDA(dev torch.Device, f func()) (replayer, error) {
	g, err := torch.CaptureCUDAGraph(dev, f)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// graphStep is train.cuda_graphs' state.
type graphStep struct {
	capture captureFunc
	opt     *optim.AdamW // in torch.AdamWGraph mode
	g       replayer
	// key is the captured step's forwards (rows and loss segments of
	// each): a step whose forwards differ runs eagerly.
	key string
	// ids are the graph's inputs, one per forward; loss and norm its
	// outputs (the step's mean loss and gradient norm), as the latest
	// replay left them; all are freed with the graph.
	ids        []*torch.Tensor
	loss, norm *torch.Tensor
	// prepared says that AdamW's host half of the step already ran (a
	// capture failed after it): the eager step then applies only the
	// device half.
	prepared bool
	failed   bool // a capture failed: the run goes on eagerly
	// Eager and Replayed count the steps taken each way.
	Eager, Replayed int
}

// graphNeeds returns why train.cuda_graphs cannot run with these settings
// and process count, or nil (the device aside: see checkGraphs).
func graphNeeds(tr *Options, p Precision, dev torch.Device, world int) error {
	var why []string
	if tr.Optimizer != AdamWHF && tr.Optimizer != AdamWTorch {
		why = append(why, fmt.Sprintf("an AdamW optimizer, not %s", tr.Optimizer))
	}
	if !newNaNGuard(tr, p.on(dev), dev).deferred() {
		why = append(why, "deferred NaN checks (nan_check_every > 1, on_nan = \"stop\", not fp16), not a check every step")
	}
	if world > 1 {
		why = append(why, fmt.Sprintf("one process, not %d", world))
	}
	if tr.CheckpointActivations != model.CheckpointNone {
		why = append(why, fmt.Sprintf("checkpoint_activations = \"none\", not %q", tr.CheckpointActivations))
	}
	if len(why) > 0 {
		return fmt.Errorf("train.cuda_graphs needs %s", strings.Join(why, "; "))
	}
	return nil
}

// checkGraphs refuses train.cuda_graphs where it cannot run: Setup asks
// before the data are prepared, NewTrainer again.
func checkGraphs(tr *Options, dev torch.Device, world int) error {
	if !tr.CUDAGraphs {
		return nil
	}
	if !dev.IsCUDA() {
		return fmt.Errorf("train.cuda_graphs needs a CUDA device; this run is on %v", dev)
	}
	return graphNeeds(tr, tr.Precision, dev, world)
}

// enableGraphs switches the trainer to captured steps. They need AdamW
// (whose graph mode keeps its per-step scalars on the device), deferred NaN
// checks (a checked step reads its loss back before its update), one
// process, and no block checkpointing (which saves and restores the RNG
// state on the host between pieces of the backward).
func (e *engine) enableGraphs(capture captureFunc) error {
	if err := graphNeeds(e.tr, e.precision, e.dev, e.peers.Size()); err != nil {
		return err
	}
	adam, ok := e.opt.(*optim.AdamW)
	if !ok {
		return fmt.Errorf("train.cuda_graphs needs an AdamW optimizer, not %T", e.opt)
	}
	if err := adam.SetForeach(torch.AdamWGraph); err != nil {
		return fmt.Errorf("train.cuda_graphs: %w", err)
	}
	e.graph = &graphStep{capture: capture, opt: adam}
	return nil
}

// close frees the graph, its inputs and outputs.
func (gs *graphStep) close() {
	if gs == nil {
		return
	}
	if gs.g != nil {
		gs.g.Close()
		gs.g = nil
	}
	for _, x := range append(gs.ids, gs.loss, gs.norm) {
		x.Free()
	}
	gs.ids, gs.loss, gs.norm = nil, nil, nil
}

// planKey names a step's forwards: the rows and loss segments of each.
func planKey(plan []forward) string {
	var b strings.Builder
	for _, f := range plan {
		fmt.Fprintf(&b, "%d%v;", len(f.rows), f.segs)
	}
	return b.String()
}

// update applies the optimizer step of an eager step: the whole step, or,
// after a capture that failed past AdamW's host half, its device half.
func (e *engine) update() {
	if gs := e.graph; gs != nil && gs.prepared {
		gs.prepared = false
		gs.opt.ApplyStep()
		return
	}
	e.opt.Step()
}

// stepGraphed takes step number step by replaying the captured graph,
// capturing it first once the warm-up is over. It returns false, leaving
// the step to the eager path, during the warm-up, after a failed capture,
// and for a step whose forwards differ from the captured ones.
func (e *engine) stepGraphed(s *torch.Scope, plan []forward, step int) (bool, outcome, error) {
	gs := e.graph
	key := planKey(plan)
	if gs.failed || (gs.g == nil && gs.Eager < graphWarmup) || (gs.g != nil && key != gs.key) {
		gs.Eager++
		return false, outcome{}, nil
	}
	if err := torch.Try(func() { e.loadGraph(s, plan) }); err != nil {
		return true, outcome{}, fmt.Errorf("step %d: %w", step, err)
	}
	if gs.g == nil {
		if err := e.captureStep(s, plan, key, step); err != nil {
			fmt.Fprintf(e.log, "train.cuda_graphs: the capture of step %d failed, training on without graphs: %v\n", step, err)
			gs.close()
			gs.failed, gs.prepared = true, true
			e.opt.ZeroGrad()
			gs.Eager++
			return false, outcome{}, nil
		}
		fmt.Fprintf(e.log, "train.cuda_graphs: step %d captured; replaying it from now on\n", step)
	}
	err := gs.g.Replay()
	e.opt.ZeroGrad() // a graph's gradients live in its pool; a rerun's are new
	if err != nil {
		return true, outcome{}, fmt.Errorf("step %d: CUDA graph replay: %w", step, err)
	}
	gs.Replayed++
	err = torch.Try(func() { e.pend.add(s, step, gs.loss.Clone(), gs.norm.Clone()) })
	return true, outcome{v: deferredStep}, err
}

// loadGraph copies the step's batch into the graph's inputs (creating them,
// outside the step's scope, before the capture) and runs AdamW's host half
// of the step.
func (e *engine) loadGraph(s *torch.Scope, plan []forward) {
	gs := e.graph
	for i, f := range plan {
		if gs.g == nil {
			gs.ids = append(gs.ids, s.Keep(e.ids(f.rows)))
		} else {
			gs.ids[i].CopyFrom(e.ids(f.rows))
		}
	}
	gs.opt.PrepareStep()
}

// captureStep captures the step's forwards and backwards on the graph's
// inputs, the clipping and AdamW's device half.
func (e *engine) captureStep(s *torch.Scope, plan []forward, key string, step int) error {
	gs := e.graph
	e.opt.ZeroGrad() // the captured backward creates the gradients
	var ferr error
	g, err := gs.capture(e.dev, func() {
		lossSum, err := e.forwardBackwardPlan(plan, step, func(i int) *torch.Tensor { return gs.ids[i] })
		if err == nil {
			gs.loss, gs.norm, err = e.clip(lossSum, step)
		}
		if err == nil {
			err = torch.Try(gs.opt.ApplyStep)
		}
		ferr = err
	})
	e.opt.ZeroGrad()
	if err == nil && ferr != nil {
		g.Close()
		err = ferr
	}
	if err != nil {
		return err
	}
	gs.g, gs.key = g, key
	s.Keep(gs.loss, gs.norm) // the graph's outputs outlive the step
	return nil
}
