package optim

import (
	"errors"
	"fmt"
	"math"

	"clm/torch"
)

// The learning-rate adjustments of torch.optim.Muon's adjust_lr_fn, for a
// matrix of shape [A, B] = [fan-out, fan-in] (MuonOptions.InOut).
const (
	// MuonAdjustOriginal scales lr by √max(1, A/B) (Keller Jordan's Muon;
	// torch's default).
	MuonAdjustOriginal = "original"
	// MuonAdjustMatchRMSAdamW scales lr by 0.2·√max(A, B) (Moonshot's, so
	// that AdamW's lr and weight decay carry over).
	MuonAdjustMatchRMSAdamW = "match_rms_adamw"
	// MuonAdjustSpectralUnclamped scales lr by √(A/B) (Bernstein's).
	MuonAdjustSpectralUnclamped = "spectral_unclamped"
)

// MuonOptions are Muon's settings besides each group's learning rate and
// weight decay (torch.ParamGroup), and the betas and eps of the AdamW that
// updates the non-matrix parameters. DefaultMuonOptions returns the
// defaults of torch.optim.Muon and torch.optim.AdamW.
type MuonOptions struct {
	// Momentum is the decay of the momentum buffer, in [0, 1).
	Momentum float64
	// Nesterov orthogonalises grad + Momentum·(buf − grad) instead of buf.
	Nesterov bool
	// NSCoefficients are (a, b, c) of the quintic Newton–Schulz iteration
	// X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ.
	NSCoefficients [3]float64
	// NSSteps is the number of Newton–Schulz iterations, in [0, 100).
	NSSteps int
	// Eps bounds the Frobenius norm the momentum is divided by from below
	// (≥ 0).
	Eps float64
	// AdjustLR is one of the MuonAdjust* names; "" means MuonAdjustOriginal.
	AdjustLR string
	// InOut says the matrices are stored [in, out] (y = x·W, as GPT-2's
	// Conv1D and clm's model), not [out, in] as torch.nn.Linear's, which
	// torch.optim.Muon assumes: AdjustLR then reads the shape [A, B] =
	// [fan-out, fan-in] from the transpose, so that the adjustment follows
	// its rule (√max(1, fan-out/fan-in) for "original") and a matrix is
	// updated as torch's Muon updates its transpose.
	InOut bool
	// AdamWBeta1, AdamWBeta2 and AdamWEps configure torch's AdamW for the
	// parameters that are not hidden matrices.
	AdamWBeta1, AdamWBeta2, AdamWEps float64
}

// DefaultMuonOptions returns torch.optim.Muon's defaults (momentum 0.95,
// Nesterov, coefficients (3.4445, −4.7750, 2.0315), 5 steps, eps 1e-7, the
// "original" adjustment) and torch.optim.AdamW's (betas (0.9, 0.999), eps
// 1e-8).
func DefaultMuonOptions() MuonOptions {
	return MuonOptions{
		Momentum: 0.95, Nesterov: true, NSCoefficients: [3]float64{3.4445, -4.7750, 2.0315},
		NSSteps: 5, Eps: 1e-7, AdjustLR: MuonAdjustOriginal,
		AdamWBeta1: 0.9, AdamWBeta2: 0.999, AdamWEps: 1e-8,
	}
}

// validate refuses what torch.optim.Muon refuses (negative momentum or
// eps, an unknown adjustment, 100 or more steps), NaNs, infinite
// coefficients, momentum ≥ 1 and negative steps. AdamW's settings are
// checked by torch.NewAdamW.
func (o MuonOptions) validate() error {
	switch {
	case !(o.Momentum >= 0 && o.Momentum < 1):
		return fmt.Errorf("muon: momentum %g must lie in [0, 1)", o.Momentum)
	case o.NSSteps < 0 || o.NSSteps >= 100:
		return fmt.Errorf("muon: ns_steps %d must lie in [0, 100)", o.NSSteps)
	case !(o.Eps >= 0) || math.IsInf(o.Eps, 1):
		return fmt.Errorf("muon: eps %g must be finite and not negative", o.Eps)
	}
	for _, c := range o.NSCoefficients {
		if math.IsNaN(c) || math.IsInf(c, 0) {
			return fmt.Errorf("muon: ns_coefficients %v must be finite", o.NSCoefficients)
		}
	}
	switch o.AdjustLR {
	case "", MuonAdjustOriginal, MuonAdjustMatchRMSAdamW, MuonAdjustSpectralUnclamped:
		return nil
	}
	return fmt.Errorf("muon: adjust_lr_fn %q is not one of %s, %s, %s", o.AdjustLR,
		MuonAdjustOriginal, MuonAdjustMatchRMSAdamW, MuonAdjustSpectralUnclamped)
}

// adjustLR returns the learning rate Muon applies to a matrix of shape
// [a, b] = [fan-out, fan-in] for the group's lr, as torch's _adjust_lr.
func adjustLR(lr float64, fn string, a, b int64) float64 {
	var ratio float64
	switch fn {
	case MuonAdjustMatchRMSAdamW:
		ratio = 0.2 * math.Sqrt(float64(max(a, b)))
	case MuonAdjustSpectralUnclamped:
		ratio = math.Sqrt(float64(a) / float64(b))
	default:
		ratio = math.Sqrt(math.Max(1, float64(a)/float64(b)))
	}
	return lr * ratio
}

// Muon is MomentUm Orthogonalized by Newton–Schulz (Jordan et al. 2024) for
// the hidden 2-D matrices, step for step torch.optim.Muon, with
// torch.optim.AdamW for every other parameter (embeddings, head, gains,
// biases). Per matrix p with gradient g and momentum buffer m:
//
//	m ← m + (1−μ)(g − m)
//	u ← g + μ(m − g) with Nesterov, else m
//	O ← NS(u): in bfloat16, X = u (transposed when tall) / max(‖u‖_F, eps),
//	    NSSteps times X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ
//	p ← p·(1 − lr·wd) − adjust(lr, shape)·O
//
// The Newton–Schulz iteration runs in bfloat16 as torch's does. Its
// momentum buffers are allocated by NewMuon, outside any torch.Scope when
// NewMuon is called outside one (as parameters are), and freed by Close.
type Muon struct {
	opts   MuonOptions
	groups []*muonGroup
	adamw  *AdamW
}

// muonGroup is one group of matrices and their momentum buffers.
type muonGroup struct {
	lr, wd float64
	params []*torch.Tensor
	bufs   []*torch.Tensor
}

var _ Optimizer = (*Muon)(nil)

// NewMuon builds Muon over the 2-D matrices of matrices and torch's AdamW
// (with o's AdamW betas and eps) over rest. It refuses a tensor in matrices
// that is not 2-D. The parameters stay owned by the caller. Call it outside
// any torch.Scope.
func NewMuon(matrices, rest []torch.ParamGroup, o MuonOptions) (*Muon, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.AdjustLR == "" {
		o.AdjustLR = MuonAdjustOriginal
	}
	if err := checkMatrixGroups(matrices); err != nil {
		return nil, err
	}
	m := &Muon{opts: o}
	err := torch.Try(func() {
		for _, g := range matrices {
			mg := &muonGroup{lr: g.LR, wd: g.WeightDecay, params: append([]*torch.Tensor(nil), g.Params...)}
			m.groups = append(m.groups, mg)
			for _, p := range g.Params {
				mg.bufs = append(mg.bufs, torch.Zeros(p.Shape(), p.DType(), p.Device()))
			}
		}
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("muon: %w", err)
	}
	adamw, err := NewAdamW(torch.AdamWTorch, o.AdamWBeta1, o.AdamWBeta2, o.AdamWEps, rest)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("muon: the AdamW part: %w", err)
	}
	m.adamw = adamw
	return m, nil
}

// checkMatrixGroups refuses negative or NaN learning rates and weight
// decays, and parameters that are freed, not floating point or not 2-D.
func checkMatrixGroups(groups []torch.ParamGroup) error {
	for gi, g := range groups {
		if !(g.LR >= 0) {
			return fmt.Errorf("muon: group %d: learning rate %g must not be negative", gi, g.LR)
		}
		if !(g.WeightDecay >= 0) {
			return fmt.Errorf("muon: group %d: weight decay %g must not be negative", gi, g.WeightDecay)
		}
		for i, p := range g.Params {
			if p.Freed() {
				return fmt.Errorf("muon: group %d parameter %d is nil or freed", gi, i)
			}
			if !p.DType().IsFloat() {
				return fmt.Errorf("muon: group %d parameter %d is %v, not floating point", gi, i, p.DType())
			}
			if p.Dim() != 2 {
				return fmt.Errorf("muon: group %d parameter %d has shape %v: Muon takes 2-D matrices only (give it to the AdamW groups)",
					gi, i, p.Shape())
			}
		}
	}
	return nil
}

// Name is "muon".
func (o *Muon) Name() string { return "muon" }

// SetLR sets the base learning rate of every group, Muon's and AdamW's;
// Muon's matrices scale it by their shape at each step (AdjustLR).
func (o *Muon) SetLR(lr float64) {
	for _, g := range o.groups {
		g.lr = lr
	}
	o.adamw.SetLR(lr)
}

// ZeroGrad drops the gradients of every parameter (set to none).
func (o *Muon) ZeroGrad() {
	for _, g := range o.groups {
		for _, p := range g.params {
			p.ZeroGrad()
		}
	}
	o.adamw.ZeroGrad()
}

// Close frees the optimizer's state; it is safe to call more than once.
func (o *Muon) Close() {
	for _, g := range o.groups {
		for _, b := range g.bufs {
			b.Free()
		}
	}
	o.groups = nil
	if o.adamw != nil {
		o.adamw.Close()
		o.adamw = nil
	}
}

// Step applies one update to every parameter that has a gradient: Muon's
// to the matrices, then AdamW's to the rest, with gradient recording off.
// Its temporaries live in a scope of its own. It raises *torch.Error on
// failure (call it inside torch.Try).
func (o *Muon) Step() {
	torch.NoGrad(func() {
		torch.WithScope(func(*torch.Scope) {
			for _, g := range o.groups {
				for i, p := range g.params {
					if grad := p.Grad(); grad != nil {
						o.update(g, i, grad)
					}
				}
			}
		})
		o.adamw.Step()
	})
}

// update is torch's _single_tensor_muon for parameter i of g.
func (o *Muon) update(g *muonGroup, i int, grad *torch.Tensor) {
	p, buf := g.params[i], g.bufs[i]
	buf.LerpInPlace(grad, 1-o.opts.Momentum)
	u := buf
	if o.opts.Nesterov {
		u = grad.Lerp(buf, o.opts.Momentum)
	}
	ortho := newtonSchulz(u, o.opts.NSCoefficients, o.opts.NSSteps, o.opts.Eps)
	p.ScaleInPlace(1 - g.lr*g.wd)
	fanOut, fanIn := p.Size(0), p.Size(1)
	if o.opts.InOut {
		fanOut, fanIn = fanIn, fanOut
	}
	p.AddInPlace(ortho, -adjustLR(g.lr, o.opts.AdjustLR, fanOut, fanIn))
}

// newtonSchulz returns the approximate orthogonalisation U·S'·Vᵀ of the
// matrix g = U·S·Vᵀ (S' near the identity), in bfloat16, by torch's
// _zeropower_via_newtonschulz: the wide orientation, scaled to Frobenius
// norm at most 1, then steps quintic iterations with coefficients c.
func newtonSchulz(g *torch.Tensor, c [3]float64, steps int, eps float64) *torch.Tensor {
	x := g.ToDType(torch.BFloat16)
	tall := g.Size(0) > g.Size(1)
	if tall {
		x = x.T()
	}
	x = x.Div(x.Norm(2, false).ClampMin(eps))
	for range steps {
		gram := x.Matmul(x.T())
		poly := torch.AddmmScaled(gram, gram, gram, c[1], c[2])
		x = torch.AddmmScaled(x, poly, x, c[0], 1)
	}
	if tall {
		x = x.T()
	}
	return x
}

// errNoAdamW reports a Muon already closed.
var errNoAdamW = errors.New("muon: the optimizer is closed")
