package train

import (
	"strings"
	"testing"
	"time"

	"clm/torch"
)

func TestEstimateLine(t *testing.T) {
	cases := []struct {
		name          string
		perStep       time.Duration
		left, evals   int
		evalTime      time.Duration
		dev           torch.Device
		want, wantNot string
	}{
		{"the demo", 450 * time.Millisecond, 297, 6, 2 * time.Second, torch.CPU,
			"estimate: 450ms a step, about 2m25s for the 297 steps left (6 evaluations of 2.0s included)", "long for a CPU"},
		{"a paper run on a CPU", 85 * time.Second, 39997, 80, 7 * time.Second, torch.CPU,
			"about 945 h (39.4 days) for the 39997 steps left", ""},
		{"the paper run on a GPU", 900 * time.Millisecond, 40000, 80, 3 * time.Second, torch.CUDA(0),
			"about 10h04m for the 40000 steps left", "long for a CPU"},
		{"a long CPU run says how to shorten it", 3 * time.Second, 5000, 0, 0, torch.CPU,
			"that is long for a CPU: train on a GPU (train.device = \"cuda\"), or shrink the run: fewer steps (train.max_steps)", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := estimateLine(c.perStep, c.left, c.evals, c.evalTime, c.dev)
			if !strings.Contains(got, c.want) || (c.wantNot != "" && strings.Contains(got, c.wantNot)) {
				t.Errorf("estimateLine = %q\nwant it to contain %q (and not %q)", got, c.want, c.wantNot)
			}
		})
	}
}
