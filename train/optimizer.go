package train

import (
	"fmt"

	"clm/model"
	"clm/optim"
	"clm/torch"
)

// newOptimizer builds train.optimizer over the model's trainable
// parameters, in the original's decay groups (ParamGroups), and says how it
// grouped them. Muon takes the 2-D hidden matrices (muonMatrix); the rest
// goes to its AdamW.
func newOptimizer(o *Options, ps *model.Params) (optim.Optimizer, string, error) {
	var opt optim.Optimizer
	var summary string
	var err error
	switch o.Optimizer {
	case SOAP:
		var groups []torch.ParamGroup
		groups, summary = ParamGroups(ps, o.WeightDecay, o.LR)
		opt, err = optim.NewSOAP(groups, soapOptions(o))
	case Muon:
		matrices, rest, s := muonGroups(ps, o.WeightDecay, o.LR)
		summary = s
		opt, err = optim.NewMuon(matrices, rest, muonOptions(o))
	default:
		var groups []torch.ParamGroup
		groups, summary = ParamGroups(ps, o.WeightDecay, o.LR)
		var flavour torch.AdamWFlavour
		if flavour, err = o.Optimizer.flavour(); err == nil {
			opt, err = optim.NewAdamW(flavour, o.Beta1, o.Beta2, o.Eps, groups)
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("train.optimizer %s: %w", o.Optimizer, err)
	}
	return opt, summary, nil
}

// soapOptions are SOAP's settings from [train] and [train.optim].
func soapOptions(o *Options) optim.SOAPOptions {
	s := optim.DefaultSOAPOptions()
	s.Beta1, s.Beta2, s.Eps = o.Beta1, o.Beta2, o.Eps
	s.PreconditionFrequency = o.Optim.PreconditionFrequency
	s.MaxPreconditionDim = o.Optim.MaxPreconditionDim
	if o.Optim.ShampooBeta >= 0 {
		b := o.Optim.ShampooBeta
		s.ShampooBeta = &b
	}
	s.Precondition1D = o.Optim.Precondition1D
	s.NormalizeGradient = o.Optim.NormalizeGradient
	return s
}

// muonOptions are Muon's settings from [train] and [train.optim].
func muonOptions(o *Options) optim.MuonOptions {
	m := optim.DefaultMuonOptions()
	m.Momentum, m.Nesterov, m.NSSteps, m.AdjustLR = o.Optim.Momentum, o.Optim.Nesterov, o.Optim.NSSteps, o.Optim.AdjustLR
	m.InOut = true // the model's matrices are [in, out] (model.ParamSpec)
	m.AdamWBeta1, m.AdamWBeta2, m.AdamWEps = o.Beta1, o.Beta2, o.Eps
	return m
}

// muonMatrix reports whether Muon updates a parameter: a hidden layer's
// matrix, not an embedding (the head is tied to wte).
func muonMatrix(p *model.Param) bool { return p.Role == model.RoleMatrix }

// muonGroups splits ParamGroups' decay groups into Muon's matrices and
// AdamW's rest, keeping each parameter's weight decay.
func muonGroups(ps *model.Params, weightDecay, lr float64) (matrices, rest []torch.ParamGroup, summary string) {
	m := map[*torch.Tensor]bool{}
	nm := 0
	for _, p := range ps.Trainable() {
		if muonMatrix(p) {
			m[p.T], nm = true, nm+1
		}
	}
	groups, s := ParamGroups(ps, weightDecay, lr)
	for _, g := range groups {
		mg, rg := g, g
		mg.Params, rg.Params = nil, nil
		for _, t := range g.Params {
			if m[t] {
				mg.Params = append(mg.Params, t)
			} else {
				rg.Params = append(rg.Params, t)
			}
		}
		if len(mg.Params) > 0 {
			matrices = append(matrices, mg)
		}
		if len(rg.Params) > 0 {
			rest = append(rest, rg)
		}
	}
	return matrices, rest, fmt.Sprintf("%s; Muon: %d hidden matrices, AdamW: the rest", s, nm)
}
