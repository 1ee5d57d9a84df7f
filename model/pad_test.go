package model

import (
	"math"
	"testing"

	"clm/torch"
	"clm/torch/torchtest"
)

// TestPadZeroValue: the zero ForwardOptions ignores no token (token 0 is
// <|endoftext|> in the original's tokenizer, and counts); PadToken(id)
// ignores exactly the targets equal to id. The loss is checked against the
// cross-entropy computed by hand from the logits.
func TestPadZeroValue(t *testing.T) {
	torchtest.Guard(t)
	cfg := smallConfig(t, "default", nil)
	m, err := New(cfg, Options{DType: torch.Float64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	torch.ManualSeed(1)
	if err := m.Init(); err != nil {
		t.Fatal(err)
	}
	const B, T = 2, 6
	ids := []int64{5, 0, 9, 0, 0, 3, 0, 7, 7, 2, 0, 1}
	cases := []struct {
		name string
		pad  Pad
		skip int64 // the ignored target, or -1
	}{
		{"zero value", Pad{}, -1},
		{"pad 0", PadToken(0), 0},
		{"pad 7", PadToken(7), 7},
	}
	s := torch.NewScope()
	defer s.Close()
	x := torch.FromInt64(ids, B, T)
	var logits []float64
	torch.NoGrad(func() { logits = m.Forward(x, ForwardOptions{}).Logits.Float64s() })
	V := int64(cfg.VocabSize)
	for _, c := range cases {
		var want float64
		n := 0
		for b := int64(0); b < B; b++ {
			for i := int64(0); i < T-1; i++ {
				target := ids[b*T+i+1]
				if target == c.skip {
					continue
				}
				row := logits[(b*T+i)*V : (b*T+i+1)*V]
				want += logSumExp(row) - row[target]
				n++
			}
		}
		want /= float64(n)
		var got float64
		torch.NoGrad(func() { got = m.Forward(x, ForwardOptions{Labels: x, Pad: c.pad}).Loss.Item() })
		if math.Abs(got-want) > 1e-12*want {
			t.Errorf("%s: loss %v, want %v over %d targets", c.name, got, want, n)
		}
	}
}

// logSumExp is log Σ exp(v), computed stably.
func logSumExp(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	var s float64
	for _, x := range v {
		s += math.Exp(x - m)
	}
	return m + math.Log(s)
}
