package torch

/*
#include "clm_torch.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
)

// AdamWFlavour selects one of the two AdamW update rules.
type AdamWFlavour int

const (
	// AdamWTorch is torch.optim.AdamW: decay p·(1−lr·wd) before the update,
	// ε added to the bias-corrected √v.
	AdamWTorch AdamWFlavour = 0
	// AdamWHF is transformers' AdamW ("adamw_hf"), the original's optimizer:
	// ε added to √v before bias correction, decay p −= lr·wd·p after the
	// update.
	AdamWHF AdamWFlavour = 1
)

// ParseAdamWFlavour parses "adamw_torch" or "adamw_hf".
func ParseAdamWFlavour(s string) (AdamWFlavour, error) {
	switch s {
	case "adamw_torch":
		return AdamWTorch, nil
	case "adamw_hf":
		return AdamWHF, nil
	}
	return AdamWTorch, fmt.Errorf("unknown optimizer %q (want adamw_hf or adamw_torch)", s)
}

func (f AdamWFlavour) String() string {
	if f == AdamWHF {
		return "adamw_hf"
	}
	return "adamw_torch"
}

// AdamW is an AdamW optimizer over parameter groups. Its state lives in
// libtorch, outside any scope; Close releases it.
type AdamW struct {
	h       C.clm_adamw
	flavour AdamWFlavour
	groups  [][]*Tensor
}

// Flavour returns the update rule.
func (o *AdamW) Flavour() AdamWFlavour { return o.flavour }

// ParamGroup is a set of parameters sharing a learning rate and weight decay.
type ParamGroup struct {
	Params      []*Tensor
	LR          float64
	WeightDecay float64
}

// NewAdamW creates an optimizer over groups. The parameters stay owned by
// the caller; the optimizer holds its own references to them.
func NewAdamW(flavour AdamWFlavour, beta1, beta2, eps float64, groups []ParamGroup) (*AdamW, error) {
	if beta1 < 0 || beta1 >= 1 || beta2 < 0 || beta2 >= 1 {
		return nil, fmt.Errorf("adamw: betas (%g, %g) must lie in [0, 1)", beta1, beta2)
	}
	if eps < 0 {
		return nil, fmt.Errorf("adamw: eps %g must not be negative", eps)
	}
	o := &AdamW{h: C.clm_adamw_new(C.int(flavour), C.double(beta1), C.double(beta2), C.double(eps)), flavour: flavour}
	for _, g := range groups {
		p, n := handles(g.Params)
		r := C.clm_adamw_add_group(o.h, p, n, C.double(g.LR), C.double(g.WeightDecay))
		if e := takeErr("adamw", r.err); e != nil {
			o.Close()
			return nil, e
		}
		o.groups = append(o.groups, g.Params)
	}
	return o, nil
}

// Close frees the optimizer state.
func (o *AdamW) Close() {
	if o.h != nil {
		C.clm_adamw_free(o.h)
		o.h = nil
	}
}

// NumGroups returns the number of parameter groups.
func (o *AdamW) NumGroups() int { return len(o.groups) }

// Group returns the parameters of group g.
func (o *AdamW) Group(g int) []*Tensor { return o.groups[g] }

// SetLR sets the learning rate of every group (schedules call it each step).
func (o *AdamW) SetLR(lr float64) {
	for g := range o.groups {
		check("adamw", C.clm_adamw_set_lr(o.h, C.int(g), C.double(lr)))
	}
}

// SetGroupLR sets the learning rate of group g only.
func (o *AdamW) SetGroupLR(g int, lr float64) {
	check("adamw", C.clm_adamw_set_lr(o.h, C.int(g), C.double(lr)))
}

// Step updates every parameter that has a gradient.
func (o *AdamW) Step() {
	check("adamw_step", C.clm_adamw_step(o.h))
	runtime.KeepAlive(o)
}

// PrepareStep is the host half of a step in AdamWGraph mode: it advances
// the step counts and writes the step's learning rate and bias corrections
// to the device. Call it outside a CUDA graph capture, before each replay.
func (o *AdamW) PrepareStep() {
	check("adamw_prepare", C.clm_adamw_prepare(o.h))
	runtime.KeepAlive(o)
}

// ApplyStep is the device half of a step in AdamWGraph mode: the update,
// from what PrepareStep wrote, reading nothing back to the host (so a CUDA
// graph can capture it).
func (o *AdamW) ApplyStep() {
	check("adamw_apply", C.clm_adamw_apply(o.h))
	runtime.KeepAlive(o)
}

// ZeroGrad drops the gradients of every parameter (set to none).
func (o *AdamW) ZeroGrad() {
	for _, g := range o.groups {
		for _, p := range g {
			p.ZeroGrad()
		}
	}
}

// ParamState is the optimizer state of one parameter.
type ParamState struct {
	ExpAvg, ExpAvgSq *Tensor // nil before the parameter's first step
	Steps            int64
}

// State returns new handles to the state of parameter i of group g (the
// caller frees them; they share storage with the optimizer).
func (o *AdamW) State(g, i int) ParamState {
	var s ParamState
	for which, dst := range []**Tensor{&s.ExpAvg, &s.ExpAvgSq} {
		r := C.clm_adamw_state(o.h, C.int(g), C.int(i), C.int(which))
		check("adamw_state", r.err)
		if r.t != nil {
			*dst = newTensor(r.t)
		}
	}
	r := C.clm_adamw_steps(o.h, C.int(g), C.int(i))
	check("adamw_state", r.err)
	s.Steps = int64(r.v)
	return s
}

// SetState replaces the state of parameter i of group g with copies of s.
func (o *AdamW) SetState(g, i int, s ParamState) error {
	if s.ExpAvg == nil || s.ExpAvgSq == nil {
		return errors.New("adamw: state needs both exp_avg and exp_avg_sq")
	}
	if e := takeErr("adamw_set_state", C.clm_adamw_set_state(o.h, C.int(g), C.int(i), s.ExpAvg.handle(), s.ExpAvgSq.handle(), C.int64_t(s.Steps))); e != nil {
		return e
	}
	return nil
}

// AdamWMode selects how Step runs the update.
type AdamWMode int

const (
	// AdamWLoop updates one parameter at a time with 6–8 in-place ops each:
	// the reference op sequence.
	AdamWLoop AdamWMode = 0
	// AdamWForeach runs the loop's op sequence over lists of tensors with
	// libtorch's multi-tensor _foreach_ ops (a few kernel launches per group
	// on a GPU). On the CPU the result is bitwise the loop's.
	AdamWForeach AdamWMode = 1
	// AdamWAuto takes AdamWForeach for parameters on CUDA and AdamWLoop for
	// the rest. It is the default.
	AdamWAuto AdamWMode = 2
	// AdamWFused runs libtorch's fused AdamW kernel (_fused_adamw_): fastest
	// on a GPU, available for AdamWTorch only (see HasFusedAdamW). It
	// evaluates the update in its own order, so results differ from the
	// loop's in the last bits (within 1e-6).
	AdamWFused AdamWMode = 3
	// AdamWGraph runs the foreach op sequence with every value that changes
	// from step to step (learning rate, bias corrections) in small tensors
	// on the parameters' device, so that a CUDA graph can capture the
	// update: Step is PrepareStep then ApplyStep. It updates the parameters
	// that had a gradient at its first step, and those every step (a
	// gradient appearing or missing later is an error), with one step count
	// among a group's parameters of one device and dtype.
	// On the CPU the result is bitwise the loop's.
	AdamWGraph AdamWMode = 4
)

// String returns the mode's name: loop, foreach, auto or fused.
func (m AdamWMode) String() string {
	switch m {
	case AdamWLoop:
		return "loop"
	case AdamWForeach:
		return "foreach"
	case AdamWAuto:
		return "auto"
	case AdamWFused:
		return "fused"
	case AdamWGraph:
		return "graph"
	}
	return fmt.Sprintf("AdamWMode(%d)", int(m))
}

// HasFusedAdamW reports whether this libtorch provides the fused AdamW
// kernel for parameters on dev: always on CUDA, on the CPU since libtorch
// 2.4.
func HasFusedAdamW(dev Device) bool { return C.clm_adamw_has_fused(dev.c()) != 0 }

// SetForeach selects how Step runs the update. It fails for an unknown mode
// and for AdamWFused with the AdamWHF flavour; AdamWFused on CPU parameters
// needs libtorch 2.4 (see HasFusedAdamW), else Step fails.
func (o *AdamW) SetForeach(mode AdamWMode) error {
	if e := takeErr("adamw_set_foreach", C.clm_adamw_set_foreach(o.h, C.int(mode))); e != nil {
		return e
	}
	return nil
}

// Foreach returns the mode Step runs in.
func (o *AdamW) Foreach() AdamWMode { return AdamWMode(C.clm_adamw_foreach(o.h)) }
