// Package optim is the optimizers the trainer drives: AdamW (libtorch's, in
// the shim), SOAP and Muon (in Go over libtorch ops), behind one interface
// with checkpointable state. It knows nothing of GPT-2: callers say which
// parameters form which group.
package optim

import (
	"encoding/json"
	"errors"
	"fmt"

	"clm/torch"
)

// Optimizer updates parameters from their gradients.
type Optimizer interface {
	// Name is the optimizer as train.optimizer and checkpoints name it
	// ("adamw_hf", "adamw_torch", "soap", "muon").
	Name() string
	// SetLR sets the learning rate of every group (schedules call it each
	// step; Muon's matrices scale it by their shape).
	SetLR(lr float64)
	// Step applies one update from the current gradients. It raises
	// *torch.Error on failure (call it inside torch.Try).
	Step()
	// ZeroGrad clears the gradients.
	ZeroGrad()
	// State returns the optimizer's state for a checkpoint: named tensors
	// (new handles the caller frees; they may share storage with the
	// optimizer) and string metadata.
	State() ([]torch.Named, map[string]string, error)
	// LoadState restores what State returned; get returns a named tensor on
	// the parameters' device (an error when absent).
	LoadState(get func(name string) (*torch.Tensor, error), meta map[string]string) error
	// Close frees the optimizer's state.
	Close()
}

// AdamW adapts torch.AdamW to Optimizer. Its checkpoint format is the one
// clm has always written: per parameter "<group>.<index>.exp_avg" and
// ".exp_avg_sq", the step counts as JSON in metadata "steps", and the
// flavour in "flavour".
type AdamW struct{ *torch.AdamW }

// NewAdamW builds AdamW of the given flavour over groups.
func NewAdamW(flavour torch.AdamWFlavour, beta1, beta2, eps float64, groups []torch.ParamGroup) (*AdamW, error) {
	o, err := torch.NewAdamW(flavour, beta1, beta2, eps, groups)
	if err != nil {
		return nil, err
	}
	return &AdamW{o}, nil
}

// Name is the flavour: adamw_hf or adamw_torch.
func (o *AdamW) Name() string { return o.Flavour().String() }

// State returns exp_avg and exp_avg_sq of every parameter that has taken a
// step, and the step counts.
func (o *AdamW) State() ([]torch.Named, map[string]string, error) {
	var out []torch.Named
	steps := map[string]int64{}
	for g := 0; g < o.NumGroups(); g++ {
		for i := range o.Group(g) {
			ps := o.AdamW.State(g, i)
			key := fmt.Sprintf("%d.%d", g, i)
			steps[key] = ps.Steps
			if ps.ExpAvg != nil {
				out = append(out, torch.Named{Name: key + ".exp_avg", Tensor: ps.ExpAvg},
					torch.Named{Name: key + ".exp_avg_sq", Tensor: ps.ExpAvgSq})
			}
		}
	}
	b, err := json.Marshal(steps)
	if err != nil {
		return nil, nil, err
	}
	return out, map[string]string{"steps": string(b), "flavour": o.Name()}, nil
}

// LoadState restores the state State wrote.
func (o *AdamW) LoadState(get func(string) (*torch.Tensor, error), meta map[string]string) error {
	var steps map[string]int64
	if err := json.Unmarshal([]byte(meta["steps"]), &steps); err != nil {
		return fmt.Errorf("corrupt optimizer steps: %v", err)
	}
	for g := 0; g < o.NumGroups(); g++ {
		for i := range o.Group(g) {
			key := fmt.Sprintf("%d.%d", g, i)
			n, ok := steps[key]
			if !ok {
				return fmt.Errorf("no optimizer state for group %d parameter %d", g, i)
			}
			if n == 0 {
				continue
			}
			ea, err1 := get(key + ".exp_avg")
			eas, err2 := get(key + ".exp_avg_sq")
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			if err := o.SetState(g, i, torch.ParamState{ExpAvg: ea, ExpAvgSq: eas, Steps: n}); err != nil {
				return err
			}
		}
	}
	return nil
}
