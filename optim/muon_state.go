package optim

import (
	"fmt"
	"slices"
	"strings"

	"clm/torch"
)

// adamwPrefix prefixes the AdamW part's tensor names and metadata keys in
// Muon's state.
const adamwPrefix = "adamw."

// layoutKey is the metadata key of the matrices' layout, "in_out" or
// "out_in" (MuonOptions.InOut): it decides each matrix's learning rate, so
// a state of one layout does not continue under the other. A state
// without it is "out_in", what clm's Muon did before it had the option.
const layoutKey = "layout"

func layoutName(inOut bool) string {
	if inOut {
		return "in_out"
	}
	return "out_in"
}

// bufName is the state name of the momentum buffer of parameter i of group g.
func bufName(g, i int) string { return fmt.Sprintf("muon.%d.%d.momentum_buffer", g, i) }

// State returns the momentum buffer of every matrix,
// "muon.<group>.<index>.momentum_buffer" (zero until its first step), and
// the AdamW part's state with its names and metadata keys prefixed
// "adamw."; the tensors are new handles sharing storage with the
// optimizer. Metadata "flavour" is "muon" and "layout" the matrices'
// layout.
func (o *Muon) State() ([]torch.Named, map[string]string, error) {
	if o.adamw == nil {
		return nil, nil, errNoAdamW
	}
	var out []torch.Named
	err := torch.Try(func() {
		for gi, g := range o.groups {
			for i, b := range g.bufs {
				out = append(out, torch.Named{Name: bufName(gi, i), Tensor: b.Detach()})
			}
		}
	})
	var ts []torch.Named
	var ameta map[string]string
	if err == nil {
		ts, ameta, err = o.adamw.State()
	}
	if err != nil {
		for _, n := range out {
			n.Tensor.Free()
		}
		return nil, nil, fmt.Errorf("muon state: %w", err)
	}
	for _, n := range ts {
		out = append(out, torch.Named{Name: adamwPrefix + n.Name, Tensor: n.Tensor})
	}
	meta := map[string]string{"flavour": o.Name(), layoutKey: layoutName(o.opts.InOut)}
	for k, v := range ameta {
		meta[adamwPrefix+k] = v
	}
	return out, meta, nil
}

// LoadState restores what State wrote into a Muon built over the same
// parameters. It checks every momentum buffer's shape and dtype before
// changing anything, and refuses a state of the other layout; the tensors
// get returns stay the caller's.
func (o *Muon) LoadState(get func(string) (*torch.Tensor, error), meta map[string]string) error {
	if o.adamw == nil {
		return errNoAdamW
	}
	saved, ok := meta[layoutKey]
	if !ok {
		saved = layoutName(false)
	}
	if want := layoutName(o.opts.InOut); saved != want {
		return fmt.Errorf("muon state: its matrices were stepped as %s, this Muon steps them as %s, which gives "+
			"them other learning rates (clm's Muon read [in, out] matrices as [out, in] until it had the layout): "+
			"finish that run with the clm that started it, or start it afresh", saved, want)
	}
	if fl := meta[adamwPrefix+"flavour"]; fl != torch.AdamWTorch.String() {
		return fmt.Errorf("muon state: the AdamW part is %q, want %s", fl, torch.AdamWTorch)
	}
	var srcs [][]*torch.Tensor
	for gi, g := range o.groups {
		srcs = append(srcs, make([]*torch.Tensor, len(g.bufs)))
		for i, b := range g.bufs {
			src, err := get(bufName(gi, i))
			if err != nil {
				return err
			}
			if !slices.Equal(src.Shape(), b.Shape()) || src.DType() != b.DType() {
				return fmt.Errorf("muon state %s: %v %v, the optimizer has %v %v",
					bufName(gi, i), src.Shape(), src.DType(), b.Shape(), b.DType())
			}
			srcs[gi][i] = src
		}
	}
	ameta := map[string]string{}
	for k, v := range meta {
		if rest, ok := strings.CutPrefix(k, adamwPrefix); ok {
			ameta[rest] = v
		}
	}
	aget := func(name string) (*torch.Tensor, error) { return get(adamwPrefix + name) }
	if err := o.adamw.LoadState(aget, ameta); err != nil {
		return fmt.Errorf("muon state: the AdamW part: %w", err)
	}
	return torch.Try(func() {
		for gi, g := range o.groups {
			for i, b := range g.bufs {
				b.CopyFrom(srcs[gi][i])
			}
		}
	})
}
