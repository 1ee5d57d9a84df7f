package train

import (
	"fmt"

	"clm/model"
	"clm/optim"
)

// newOptimizer builds train.optimizer over the model's trainable
// parameters, in the original's decay groups (ParamGroups), and says how it
// grouped them.
func newOptimizer(o *Options, ps *model.Params) (optim.Optimizer, string, error) {
	groups, summary := ParamGroups(ps, o.WeightDecay, o.LR)
	flavour, err := o.Optimizer.flavour()
	if err != nil {
		return nil, "", err
	}
	opt, err := optim.NewAdamW(flavour, o.Beta1, o.Beta2, o.Eps, groups)
	if err != nil {
		return nil, "", fmt.Errorf("train.optimizer %s: %w", o.Optimizer, err)
	}
	return opt, summary, nil
}
