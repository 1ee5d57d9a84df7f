package model

import (
	"fmt"

	"clm/torch"
)

// Checkpointing selects what a training forward keeps for its backward.
type Checkpointing int

const (
	// CheckpointNone keeps what autograd saves, as eager PyTorch does.
	CheckpointNone Checkpointing = iota
	// CheckpointBlock keeps only each block's input and recomputes the
	// block's activations in backward, as torch.utils.checkpoint around
	// every block does: the memory of one block's activations instead of
	// all of them, for about one more forward. Losses and gradients are
	// bit-identical to CheckpointNone.
	CheckpointBlock
)

// ParseCheckpointing parses "none" (or "") and "block".
func ParseCheckpointing(s string) (Checkpointing, error) {
	switch s {
	case "none", "":
		return CheckpointNone, nil
	case "block":
		return CheckpointBlock, nil
	}
	return CheckpointNone, fmt.Errorf("unknown activation checkpointing %q (want none or block)", s)
}

// MarshalText writes the name ParseCheckpointing reads (experiment files).
func (c Checkpointing) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses a name, as ParseCheckpointing.
func (c *Checkpointing) UnmarshalText(b []byte) error {
	v, err := ParseCheckpointing(string(b))
	if err == nil {
		*c = v
	}
	return err
}

func (c Checkpointing) String() string {
	if c == CheckpointBlock {
		return "block"
	}
	return "none"
}

// BackwardOptions says how ForwardBackward runs.
type BackwardOptions struct {
	// Checkpoint selects the activations kept for backward.
	Checkpoint Checkpointing
	// Under runs a piece of forward under the caller's precision (autocast);
	// nil runs it as it is. Backward passes run outside it.
	Under func(forward func())
	// Seed maps the loss to the tensor whose backward is taken (the loss
	// divided by the accumulation, times a loss scale); nil: the loss.
	Seed func(loss *torch.Tensor) *torch.Tensor
}

func (b BackwardOptions) under(f func()) {
	if b.Under == nil {
		f()
		return
	}
	b.Under(f)
}

func (b BackwardOptions) seed(loss *torch.Tensor) *torch.Tensor {
	if b.Seed == nil {
		return loss
	}
	return b.Seed(loss)
}

// ForwardBackward is a training forward of ids with o (which must have
// Labels, and neither Hidden, Attention nor Quant) followed by the backward
// of b.Seed(loss), which accumulates into the parameters' gradients. It
// returns the loss, detached, in the caller's scope. Whatever the forward
// created is released before the backward starts, so that only what
// autograd saved (or, with CheckpointBlock, the blocks' inputs) is alive.
func (m *Model) ForwardBackward(ids *torch.Tensor, o ForwardOptions, b BackwardOptions) *torch.Tensor {
	if o.Labels == nil || o.Hidden || o.Attention || o.Quant != nil {
		panic(&torch.Error{Op: "model.forward_backward", Msg: "needs labels, and no hidden states, attention probabilities or quantiser"})
	}
	s := torch.NewScope()
	defer s.Close()
	var loss *torch.Tensor
	if b.Checkpoint == CheckpointBlock {
		loss = m.checkpointed(ids, o, b)
	} else {
		b.under(func() {
			torch.WithScope(func(f *torch.Scope) { loss = f.Keep(m.Forward(ids, o).Loss) })
		})
		b.seed(loss).Backward()
	}
	return s.Keep(loss.Detach())
}

// checkpointed is ForwardBackward with CheckpointBlock. The forward runs
// without autograd and keeps each block's input x_i. The head's backward
// gives ∂loss/∂x_L; then, from the last block down, block i is recomputed
// from x_i with autograd and back-propagated from ∂loss/∂x_{i+1}, which
// yields its parameters' gradients and ∂loss/∂x_i; the embedding comes
// last. Dropout draws are replayed from the generator state saved before
// each piece, and the state after the forward is restored at the end.
//
// The tied wte is read by the head and the embedding. Autograd would add
// the two contributions before adding them to wte's gradient; both are
// computed on detached aliases here and added in that same order, so
// that gradient accumulation over micro-batches rounds exactly as without
// checkpointing.
func (m *Model) checkpointed(ids *torch.Tensor, o ForwardOptions, b BackwardOptions) *torch.Tensor {
	dropout := o.Train && (m.cfg.EmbdPdrop > 0 || m.cfg.ResidPdrop > 0 || m.cfg.AttnPdrop > 0)
	rng := func() *torch.Tensor {
		if !dropout {
			return nil
		}
		st, err := torch.RNGState(m.opts.Device)
		if err != nil {
			panic(&torch.Error{Op: "model.checkpoint", Msg: err.Error()})
		}
		return st
	}
	restore := func(st *torch.Tensor) {
		if st == nil {
			return
		}
		if err := torch.SetRNGState(m.opts.Device, st); err != nil {
			panic(&torch.Error{Op: "model.checkpoint", Msg: err.Error()})
		}
	}

	// Forward without autograd: the blocks' inputs and generator states.
	states := make([]*torch.Tensor, len(m.blocks)+1) // before the embedding, before block i
	inputs := make([]*torch.Tensor, len(m.blocks))
	var x *torch.Tensor
	p := m.pass(o)
	torch.NoGrad(func() {
		b.under(func() {
			states[0] = rng()
			x = m.embed(m.wte, ids, o.Train)
			for i := range m.blocks {
				inputs[i], states[i+1] = x, rng()
				x, _ = m.block(i, x, p)
			}
		})
	})
	after := rng()

	// The head, with wte's share of its gradient collected on an alias.
	h := x.Detach().SetRequiresGrad(true)
	x.Free()
	wteHead := m.wte.Detach().SetRequiresGrad(true)
	var loss *torch.Tensor
	b.under(func() {
		torch.WithScope(func(f *torch.Scope) {
			var out Output
			m.head(h, wteHead, o, &out)
			loss = f.Keep(out.Loss)
		})
	})
	b.seed(loss).Backward()
	g := h.Grad()
	h.Free()

	// The blocks, last first.
	for i := len(m.blocks) - 1; i >= 0; i-- {
		torch.WithScope(func(f *torch.Scope) {
			xi := inputs[i].Detach().SetRequiresGrad(true)
			inputs[i].Free()
			restore(states[i+1])
			var y *torch.Tensor
			b.under(func() { y, _ = m.block(i, xi, p) })
			y.BackwardWith(g)
			g.Free()
			g = f.Keep(xi.Grad())
		})
	}

	// The embedding, then wte's two shares in autograd's order.
	restore(states[0])
	wteEmb := m.wte.Detach().SetRequiresGrad(true)
	var e *torch.Tensor
	b.under(func() { e = m.embed(wteEmb, ids, o.Train) })
	e.BackwardWith(g)
	if m.wte.RequiresGrad() {
		m.wte.AccumulateGrad(wteHead.Grad().Add(wteEmb.Grad()))
	}
	restore(after)
	return loss
}
