package model

import (
	"fmt"
	"strings"
	"testing"

	"clm/torch"
)

// hookRecorder is a Quantizer that records what it sees and changes
// nothing. The tensors it is shown live only as long as their block, so
// it checks weights during the call (onWeight).
type hookRecorder struct {
	names    []string
	layers   []int
	onWeight func(name string, w *torch.Tensor)
}

func (r *hookRecorder) Linear(name string, x, w *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
	r.names = append(r.names, name)
	if r.onWeight != nil {
		r.onWeight(name, w)
	}
	return x, w
}

func (r *hookRecorder) Residual(layer int, h *torch.Tensor) *torch.Tensor {
	r.layers = append(r.layers, layer)
	return h
}

// TestQuantHook checks, per block variant, which linear layers the hook
// sees, in forward order and by path; that an Eq. 6 layer shows its
// combined weight; that the residual stream is shown after every block;
// and that a hook that changes nothing leaves the logits bit-identical.
func TestQuantHook(t *testing.T) {
	cases := []struct {
		preset string
		set    map[string]any
		layer  []string // the names seen in each block
	}{
		{"default", nil, []string{"attn.qk_attn", "attn.v_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}},
		{"skipless", nil, []string{"attn.qk_attn", "mlp.c_fc", "mlp.c_proj"}}, // identity V and P after layer 0
		{"skipless", map[string]any{"val_init_type": "orth", "value_resid_gain": 0.5}, []string{"attn.qk_attn", "attn.v_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.preset, c.set), func(t *testing.T) {
			s := torch.NewScope()
			defer s.Close()
			m, err := New(smallConfig(t, c.preset, c.set), Options{Device: torch.CPU})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			torch.ManualSeed(1)
			if err := m.Init(); err != nil {
				t.Fatal(err)
			}
			ids, _ := parityBatch(2, 16, 512)
			x := torch.FromInt64(ids[:32], 2, 16)
			// The v_attn weight shown must be Eq. 6's combination.
			vName := "transformer.h.1.attn.v_attn"
			combinedDiff := -1.0
			rec := &hookRecorder{onWeight: func(name string, w *torch.Tensor) {
				if name != vName || m.Params().Lookup(vName+".resid_gain") == nil {
					return
				}
				p := func(n string) *torch.Tensor { return m.Params().Lookup(vName + "." + n).T }
				combined := p("resid_gain").Mul(p("weight")).Add(p("skip_gain").Mul(p("id")))
				combinedDiff = w.Sub(combined).Abs().Amax(false).Item()
			}}
			var plain, hooked Output
			torch.NoGrad(func() {
				plain = m.Forward(x, ForwardOptions{})
				hooked = m.Forward(x, ForwardOptions{Quant: rec})
			})
			var want []string
			for i := 0; i < 3; i++ {
				for _, n := range c.layer {
					if c.preset == "skipless" && c.set == nil && i == 0 && n == "mlp.c_fc" {
						want = append(want, fmt.Sprintf("transformer.h.%d.attn.v_attn", i)) // layer 0 keeps a trained V
					}
					want = append(want, fmt.Sprintf("transformer.h.%d.%s", i, n))
				}
			}
			if got := strings.Join(rec.names, " "); got != strings.Join(want, " ") {
				t.Errorf("linear layers seen:\n%s\nwant\n%s", got, strings.Join(want, " "))
			}
			if fmt.Sprint(rec.layers) != "[0 1 2]" {
				t.Errorf("residual layers seen %v, want [0 1 2]", rec.layers)
			}
			if d := hooked.Logits.Sub(plain.Logits).Abs().Amax(false).Item(); d != 0 {
				t.Errorf("a hook that changes nothing moved the logits by %g", d)
			}
			if combinedDiff > 0 {
				t.Errorf("v_attn weight shown differs from resid·W_train + skip·W_init by %g", combinedDiff)
			}
			if strings.Contains(fmt.Sprint(c.set), "orth") && combinedDiff < 0 {
				t.Error("the Eq. 6 v_attn weight was never shown")
			}
		})
	}
}
