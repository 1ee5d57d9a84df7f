package optim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"clm/torch"
)

// State returns, for every parameter whose state has started, its tensors
// "<group>.<index>.exp_avg", ".exp_avg_sq", and per preconditioned factor d
// ".GG.<d>" and ".Q.<d>" (new handles sharing storage with the optimizer);
// and metadata: "flavour" soap, "steps" (each group's step count, JSON by
// group index) and "started" (the JSON list of "<group>.<index>" with
// state).
func (o *SOAP) State() ([]torch.Named, map[string]string, error) {
	var out []torch.Named
	steps := map[string]int64{}
	started := []string{}
	err := torch.Try(func() {
		for gi, g := range o.groups {
			steps[strconv.Itoa(gi)] = g.step
			for i, sp := range g.params {
				if !sp.started {
					continue
				}
				key := fmt.Sprintf("%d.%d", gi, i)
				started = append(started, key)
				for _, f := range sp.tensors() {
					out = append(out, torch.Named{Name: key + "." + f.Name, Tensor: f.Tensor.Detach()})
				}
			}
		}
	})
	if err != nil {
		for _, n := range out {
			n.Tensor.Free()
		}
		return nil, nil, fmt.Errorf("soap state: %w", err)
	}
	bs, err1 := json.Marshal(steps)
	bst, err2 := json.Marshal(started)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("soap state: %v %v", err1, err2)
	}
	return out, map[string]string{"flavour": o.Name(), "steps": string(bs), "started": string(bst)}, nil
}

// LoadState restores what State wrote into an optimizer built over the
// same parameters with the same MaxPreconditionDim and Precondition1D. It
// checks every tensor's shape and dtype before changing anything; the
// tensors get returns stay the caller's.
func (o *SOAP) LoadState(get func(string) (*torch.Tensor, error), meta map[string]string) error {
	var steps map[string]int64
	if err := json.Unmarshal([]byte(meta["steps"]), &steps); err != nil {
		return fmt.Errorf("corrupt soap steps: %v", err)
	}
	var started []string
	if err := json.Unmarshal([]byte(meta["started"]), &started); err != nil {
		return fmt.Errorf("corrupt soap started list: %v", err)
	}
	type copyJob struct{ dst, src *torch.Tensor }
	var jobs []copyJob
	for gi, g := range o.groups {
		if _, ok := steps[strconv.Itoa(gi)]; !ok {
			return fmt.Errorf("no soap step count for group %d", gi)
		}
		for i, sp := range g.params {
			key := fmt.Sprintf("%d.%d", gi, i)
			if !slices.Contains(started, key) {
				continue
			}
			for _, f := range sp.tensors() {
				src, err := get(key + "." + f.Name)
				if err != nil {
					return err
				}
				if err := sameLayout(key+"."+f.Name, src, f.Tensor); err != nil {
					return err
				}
				jobs = append(jobs, copyJob{f.Tensor, src})
			}
		}
	}
	return torch.Try(func() {
		for gi, g := range o.groups {
			g.step = steps[strconv.Itoa(gi)]
			for i, sp := range g.params {
				sp.started = slices.Contains(started, fmt.Sprintf("%d.%d", gi, i))
				for _, f := range sp.tensors() {
					f.Tensor.Fill(0)
				}
			}
		}
		for _, j := range jobs {
			j.dst.CopyFrom(j.src)
		}
	})
}

// sameLayout fails unless src has dst's shape and dtype.
func sameLayout(name string, src, dst *torch.Tensor) error {
	if !slices.Equal(src.Shape(), dst.Shape()) || src.DType() != dst.DType() {
		return fmt.Errorf("soap state %s: %v %v, the optimizer has %v %v", name, src.Shape(), src.DType(), dst.Shape(), dst.DType())
	}
	return nil
}
