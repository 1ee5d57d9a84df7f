package train

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"clm/model"
	"clm/torch"
)

// row makes a row of T tokens whose last pads are padID 0 (ids 1.. before).
func row(T, pads int) []int32 {
	r := make([]int32, T)
	for i := range T - pads {
		r[i] = int32(i + 1)
	}
	return r
}

// TestPlanForwards: regrouping a step's micro-batches keeps every row once,
// in order, and gives each micro-batch's parts weights n_part/n_j that sum to
// 1 (its mean), 0 for a part without targets, NaN for a micro-batch without
// any (as its mean would be); forwards that are exactly one micro-batch have
// no segments.
func TestPlanForwards(t *testing.T) {
	const T = 5 // 4 targets per full row
	step := [][][]int32{
		{row(T, 0), row(T, 2)}, // 4 + 2 targets
		{row(T, 1), row(T, 4)}, // 3 + 0 targets (row 2: only the first token)
	}
	noTargets := [][][]int32{{row(T, 4), row(T, 5)}, {row(T, 0), row(T, 0)}}
	type seg = model.LossSegment
	cases := []struct {
		name  string
		micro [][][]int32
		size  int
		want  [][]seg // per forward; nil: a whole micro-batch
	}{
		{"as configured", step, 2, [][]seg{nil, nil}},
		{"one forward", step, 4, [][]seg{{{Rows: 2, Weight: 1}, {Rows: 2, Weight: 1}}}},
		{"split rows", step, 1, [][]seg{{{Rows: 1, Weight: 4.0 / 6}}, {{Rows: 1, Weight: 2.0 / 6}}, {{Rows: 1, Weight: 1}}}},
		{"micro-batch without targets", noTargets, 4, [][]seg{{{Rows: 2, Weight: math.NaN()}, {Rows: 2, Weight: 1}}}},
		{"split, part without targets", noTargets, 1, [][]seg{{{Rows: 1, Weight: math.NaN()}}, {{Rows: 1, Weight: math.NaN()}}, {{Rows: 1, Weight: 0.5}}, {{Rows: 1, Weight: 0.5}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := planForwards(c.micro, c.size, model.PadToken(0))
			if len(got) != len(c.want) {
				t.Fatalf("%d forwards, want %d: %+v", len(got), len(c.want), got)
			}
			var rows [][]int32
			for i, f := range got {
				if !slices.EqualFunc(f.segs, c.want[i], func(a, b seg) bool {
					return a.Rows == b.Rows && (a.Weight == b.Weight || math.IsNaN(a.Weight) && math.IsNaN(b.Weight) || math.Abs(a.Weight-b.Weight) < 1e-15)
				}) {
					t.Errorf("forward %d: segments %v, want %v", i, f.segs, c.want[i])
				}
				rows = append(rows, f.rows...)
			}
			var want [][]int32
			for _, mb := range c.micro {
				want = append(want, mb...)
			}
			if c.name != "split rows" && !slices.EqualFunc(rows, want, slices.Equal) {
				t.Errorf("rows out of order or lost")
			}
		})
	}
	// A part without targets whose micro-batch has some: weight 0, and a
	// forward of such parts only is dropped (row 4 of "split rows").
	if got := planForwards(step, 1, model.PadToken(0)); len(got) != 3 {
		t.Errorf("split rows: %d forwards, want 3 (the row without targets dropped)", len(got))
	}
}

// TestChooseRows: the largest divisor of the per-step rows that fits; other
// errors stop the search; nothing fitting is an error that says so.
func TestChooseRows(t *testing.T) {
	boom := errors.New("driver error")
	cases := []struct {
		name    string
		perStep int
		fits    func(int) error
		want    int
		tried   []int
		wantErr string
	}{
		{"all fits", 128, func(int) error { return nil }, 128, []int{128}, ""},
		{"oom above 32", 128, func(r int) error {
			if r > 32 {
				return errTrialOOM
			}
			return nil
		}, 32, []int{128, 64, 32}, ""},
		{"odd share", 12, func(r int) error {
			if r > 5 {
				return errTrialOOM
			}
			return nil
		}, 4, []int{12, 6, 4}, ""},
		{"nothing fits", 4, func(int) error { return errTrialOOM }, 0, []int{4, 2, 1}, "not even one sequence"},
		{"other error", 8, func(r int) error {
			if r == 4 {
				return boom
			}
			return errTrialOOM
		}, 0, []int{8, 4}, "driver error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tried []int
			got, err := chooseRows(c.perStep, func(r int) error { tried = append(tried, r); return c.fits(r) })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
			} else if err != nil || got != c.want {
				t.Fatalf("chooseRows = %d, %v; want %d", got, err, c.want)
			}
			if !slices.Equal(tried, c.tried) {
				t.Errorf("tried %v, want %v", tried, c.tried)
			}
		})
	}
}

// TestFittedForwardsMatchConfigured: training with the step's sequences
// regrouped (all 8 in one forward, pairs of micro-batches, and each
// micro-batch split into single rows) gives the per-step losses and final
// weights of the configured 4 micro-batches of 2, with padding in the rows
// (so that micro-batch means weigh tokens differently from a plain mean),
// clipping and AdamW. Dropout is off: its masks depend on the forward's shape.
func TestFittedForwardsMatchConfigured(t *testing.T) {
	leak := torch.LiveTensors()
	batches := makeBatches(16, 2, 32, 512, 9)
	for i, mb := range batches { // pad (id 0) the tails of some rows
		for j, r := range mb {
			for k := 32 - (i*5+j*11)%29; k < 32; k++ {
				r[k] = 0
			}
		}
	}
	const extra = `resid_pdrop = 0
attn_pdrop = 0
embd_pdrop = 0
[train]
micro_batch = 2
accumulation = 4
max_steps = 6
lr = 3e-3
warmup_ratio = 0.2
max_grad_norm = 0.5
log_every = 1
eval_every = 100
[report]
every = 0
`
	type result struct {
		losses  []float64
		weights map[string][]float64
	}
	run := func(rows int) result {
		e := experiment(t, "skipless", extra)
		m := seededModel(t, e.Model, torch.CPU, 0)
		defer m.Close()
		r := result{losses: trainedLosses(t, e, m, batches, model.PadToken(0), nil, func(tr *Trainer) { tr.eng.fwdRows = rows })}
		r.weights = map[string][]float64{}
		s := torch.NewScope()
		defer s.Close()
		for _, n := range m.State() {
			r.weights[n.Name] = n.Tensor.ToDType(torch.Float64).Reshape(-1).Float64s()
		}
		return r
	}
	base := run(2)
	if len(base.losses) != 6 {
		t.Fatalf("%d logged steps, want 6", len(base.losses))
	}
	for _, rows := range []int{8, 4, 1} {
		t.Run(fmt.Sprintf("%d rows per forward", rows), func(t *testing.T) {
			got := run(rows)
			for i := range base.losses {
				if e := math.Abs(got.losses[i]-base.losses[i]) / math.Abs(base.losses[i]); e > 2e-6 {
					t.Errorf("step %d: loss %.9g, configured %.9g (relative error %.2g)", i+1, got.losses[i], base.losses[i], e)
				}
			}
			worst, scale := 0.0, 0.0
			for k, w := range base.weights {
				for i := range w {
					worst = max(worst, math.Abs(got.weights[k][i]-w[i]))
					scale = max(scale, math.Abs(w[i]))
				}
			}
			if worst > 1e-5*scale {
				t.Errorf("final weights: max difference %.3g (largest weight %.3g)", worst, scale)
			}
			t.Logf("losses %v vs %v; weights within %.2g", got.losses, base.losses, worst)
		})
	}
	if n := torch.LiveTensors(); n != leak {
		t.Errorf("live tensors %d → %d", leak, n)
	}
}
