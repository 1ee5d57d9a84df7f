package model

import "clm/torch"

// Param is one tensor of the model's state with its spec. Parameters and
// buffers live outside any torch.Scope; Model.Close frees them.
type Param struct {
	ParamSpec
	// Init describes the tensor's declared initialisation, e.g.
	// "normal(0, 0.02)"; empty for zeros. Re-initialisations
	// (query_init_std and the like) and tie_valproj_init follow it (see
	// Model.Init).
	Init string
	T    *torch.Tensor
}

// Params is the ordered registry of a model's state: the original's
// named_parameters order, then the buffers. The order decides optimizer
// state and checkpoint layout, so it is a slice, never a map iteration.
type Params struct {
	list   []*Param
	byName map[string]*Param
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

// free releases every tensor.
func (ps *Params) free() {
	for _, p := range ps.list {
		p.T.Free()
	}
}
