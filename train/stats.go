package train

import (
	"fmt"
	"math"

	"clm/model"
	"clm/runlog"
	"clm/torch"
)

// Gains returns every gain of ps (model.RoleGain), in
// registry order, with one host transfer. (The original logs the MLP
// block resid gain as its norm, i.e. |g|; Values keep the sign.)
func Gains(ps *model.Params) ([]runlog.Gain, error) {
	if ps == nil {
		return nil, fmt.Errorf("train: gains: no parameters")
	}
	var gains []runlog.Gain
	var ts []*torch.Tensor
	for _, p := range ps.All() {
		if p.Role != model.RoleGain {
			continue
		}
		if p.T == nil || p.T.Freed() {
			return nil, fmt.Errorf("train: gains: %s is freed", p.Name)
		}
		gains = append(gains, runlog.Gain{Name: p.Name, Trainable: p.Trainable})
		ts = append(ts, p.T)
	}
	if len(gains) == 0 {
		return nil, nil
	}
	var vals []float64
	err := torch.Try(func() {
		torch.WithScope(func(*torch.Scope) {
			flat := make([]*torch.Tensor, len(ts))
			for i, t := range ts {
				flat[i] = t.Detach().Reshape(-1).To(torch.Float64, torch.CPU)
			}
			vals = torch.Cat(flat, 0).Float64s()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("train: gains: %w", err)
	}
	o := 0
	for i, t := range ts {
		n := int(t.Numel())
		g := &gains[i]
		g.Values = vals[o : o+n : o+n]
		o += n
		g.Mean, g.Std = meanStd(g.Values)
	}
	return gains, nil
}

// meanStd returns the mean and the Bessel-corrected standard deviation (0
// for fewer than two values).
func meanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return math.NaN(), 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1))
}
