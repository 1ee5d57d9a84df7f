package model

import (
	"fmt"
	"math"

	"clm/torch"
)

// Every tensor of the model is declared once, by the module that uses it,
// through a path in the module tree (in the spirit of tch-rs's nn::Path:
// vs / "attn" / "c_proj"). A declaration gives the name, shape,
// trainability and init rule; the parameter list (Config.Params), the
// counts, the allocation (New) and the initialisation (Model.Init) are all
// derived from those declarations. Building the modules against a dry store
// yields the specs without allocating anything.

// initRule initialises one tensor in place; it draws from the default
// generator when it is random.
type initRule struct {
	desc string // e.g. "normal(0, 0.02)"; "" for the zero tensor
	fill func(t *torch.Tensor)
}

// zeros is the rule of tensors that start at zero (New allocates zeros).
var zeros = initRule{}

// constant fills with v.
func constant(v float64) initRule {
	return initRule{fmt.Sprintf("constant(%g)", v), func(t *torch.Tensor) { t.Fill(v) }}
}

// normal draws from normal(0, std).
func normal(std float64) initRule {
	return initRule{fmt.Sprintf("normal(0, %g)", std), func(t *torch.Tensor) { t.FillNormal(0, std) }}
}

// orthogonal draws a random orthogonal matrix (torch.nn.init.orthogonal_).
var orthogonal = initRule{"orthogonal", func(t *torch.Tensor) { t.FillOrthogonal(1) }}

// identity sets a square matrix to the identity.
var identity = initRule{"identity", func(t *torch.Tensor) {
	n := t.Shape()[0]
	torch.WithScope(func(*torch.Scope) { t.CopyFrom(torch.Eye(n, n, t.DType(), t.Device())) })
}}

// columns applies r to columns [from, from+n) of a matrix only.
func columns(from, n int64, r initRule) initRule {
	return initRule{fmt.Sprintf("columns [%d, %d): %s", from, from+n, r.desc), func(t *torch.Tensor) {
		torch.WithScope(func(*torch.Scope) { r.fill(t.Narrow(1, from, n)) })
	}}
}

// matrixInit is the rule of a value or projection matrix: W of a plain
// layer (normal is normal(0, 0.02)) or W_init of Eq. 6 (normal is
// normal(0, 1/√d)).
func matrixInit(it InitType, normalStd float64) initRule {
	switch it {
	case InitOrth:
		return orthogonal
	case InitID:
		return identity
	}
	return normal(normalStd)
}

// initStep is one rule applied to one tensor by Model.Init.
type initStep struct {
	t    *torch.Tensor
	rule initRule
}

// store collects the declarations of one model. A dry store (alloc false)
// records specs only, and every declared tensor is nil.
type store struct {
	alloc   bool
	dtype   torch.DType
	dev     torch.Device
	params  []*Param // parameters, in declaration order (named_parameters)
	buffers []*Param // buffers, in declaration order
	inits   []initStep
}

// path is a place in the module tree; declarations under it are named
// prefix + name.
type path struct {
	s      *store
	prefix string
}

// root is the top of the module tree.
func (s *store) root() path { return path{s: s} }

// sub is the child module called name.
func (p path) sub(name string) path { return path{s: p.s, prefix: p.prefix + name + "."} }

// param declares a parameter of the given role: trainable ones require
// gradients, frozen ones (the original's zero biases, fixed gains) are
// saved and counted but never optimised.
func (p path) param(name string, role Role, trainable bool, rule initRule, shape ...int64) *torch.Tensor {
	return p.declare(ParamSpec{Name: p.prefix + name, Shape: shape, Trainable: trainable, Role: role}, rule, &p.s.params)
}

// buffer declares the fixed W_init of Eq. 6, saved with the weights.
// Buffers follow every parameter in the registry, as in a state dict.
func (p path) buffer(name string, rule initRule, shape ...int64) *torch.Tensor {
	return p.declare(ParamSpec{Name: p.prefix + name, Shape: shape, Buffer: true, Role: RoleInit}, rule, &p.s.buffers)
}

func (p path) declare(spec ParamSpec, rule initRule, list *[]*Param) *torch.Tensor {
	param := &Param{ParamSpec: spec, Init: rule.desc}
	*list = append(*list, param)
	if !p.s.alloc {
		return nil
	}
	param.T = torch.Zeros(spec.Shape, p.s.dtype, p.s.dev)
	if rule.fill != nil {
		p.s.inits = append(p.s.inits, initStep{param.T, rule})
	}
	return param.T
}

// reinit adds a rule applied to t after every rule declared so far (the
// original re-initialises some weights once their module is built, e.g.
// query_init_std); a nil t (dry store, absent layer) is skipped.
func (p path) reinit(t *torch.Tensor, rule initRule) {
	if t != nil && p.s.alloc {
		p.s.inits = append(p.s.inits, initStep{t, rule})
	}
}

// registry is the declared tensors in state-dict order: parameters, then
// buffers.
func (s *store) registry() *Params {
	ps := &Params{byName: make(map[string]*Param, len(s.params)+len(s.buffers))}
	for _, p := range append(append([]*Param(nil), s.params...), s.buffers...) {
		ps.list = append(ps.list, p)
		ps.byName[p.Name] = p
	}
	return ps
}

// invSqrt is 1/√d, the std of a normal W_init.
func invSqrt(d int64) float64 { return 1 / math.Sqrt(float64(d)) }
