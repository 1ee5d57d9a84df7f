package model

import (
	"fmt"
	"strings"

	"clm/torch"
)

// Param is one tensor of the model's state with its spec. Parameters and
// buffers live outside any torch.Scope; Model.Close frees them.
type Param struct {
	ParamSpec
	T *torch.Tensor
}

// IsNorm reports whether the parameter belongs to a LayerNorm or RMSNorm
// module (ln_1, ln_2, ln_f, q_norm, k_norm): the original excludes those
// from weight decay.
func (p *Param) IsNorm() bool {
	parts := strings.Split(p.Name, ".")
	for _, s := range parts[:len(parts)-1] {
		switch s {
		case "ln_1", "ln_2", "ln_f", "q_norm", "k_norm":
			return true
		}
	}
	return false
}

// Params is the ordered registry of a model's state: the original's
// named_parameters order, then the buffers. The order decides optimizer
// state and checkpoint layout, so it is a slice, never a map iteration.
type Params struct {
	list   []*Param
	byName map[string]*Param
}

func newParams(specs []ParamSpec, dt torch.DType, dev torch.Device) *Params {
	ps := &Params{byName: make(map[string]*Param, len(specs))}
	for _, s := range specs {
		p := &Param{ParamSpec: s, T: torch.Zeros(s.Shape, dt, dev)}
		ps.list = append(ps.list, p)
		ps.byName[s.Name] = p
	}
	return ps
}

// All returns every parameter and buffer in order.
func (ps *Params) All() []*Param { return ps.list }

// Trainable returns the parameters that require gradients, in order.
func (ps *Params) Trainable() []*Param {
	var out []*Param
	for _, p := range ps.list {
		if p.Trainable {
			out = append(out, p)
		}
	}
	return out
}

// Lookup returns the named parameter, or nil.
func (ps *Params) Lookup(name string) *Param { return ps.byName[name] }

// get returns the named tensor; a missing name is a bug in this package.
func (ps *Params) get(name string) *torch.Tensor {
	p, ok := ps.byName[name]
	if !ok {
		panic(fmt.Sprintf("model: no parameter %q", name))
	}
	return p.T
}

// opt returns the named tensor or nil when the layer has no such parameter.
func (ps *Params) opt(name string) *torch.Tensor {
	if p, ok := ps.byName[name]; ok {
		return p.T
	}
	return nil
}

func (ps *Params) free() {
	for _, p := range ps.list {
		p.T.Free()
	}
}
