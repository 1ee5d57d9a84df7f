package model

import (
	"math"
	"slices"
	"testing"

	"clm/torch"
	"clm/torch/torchtest"
)

// TestSamplerGreedy: temperature 0 (or top-k 1) picks the first largest
// logit, whatever the seed.
func TestSamplerGreedy(t *testing.T) {
	cases := []struct {
		name   string
		temp   float64
		topK   int
		logits []float64
		want   int32
	}{
		{"greedy", 0, 0, []float64{0.1, 3, -2, 2.9}, 1},
		{"greedy, tie goes to the first", 0, 0, []float64{1, 5, 5, 0}, 1},
		{"greedy, all negative", 0, 0, []float64{-9, -3, -4}, 1},
		{"greedy, -Inf elsewhere", 0, 0, []float64{math.Inf(-1), -100, math.Inf(-1)}, 1},
		{"top-1 at temperature 1", 1, 1, []float64{0, 0.5, 0.4}, 1},
		{"greedy ignores top-k", 0, 2, []float64{2, 0, 1}, 0},
	}
	for _, c := range cases {
		for seed := uint64(0); seed < 5; seed++ {
			s, err := NewSampler(c.temp, c.topK, seed)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(c.logits); got != c.want {
				t.Errorf("%s (seed %d): got %d, want %d", c.name, seed, got, c.want)
			}
		}
	}
}

// TestSamplerDistribution: draws follow softmax(logits / temperature) over
// the top k, within 5 standard errors on 100,000 draws; tokens outside the
// top k or of probability 0 never come up.
func TestSamplerDistribution(t *testing.T) {
	ln := math.Log
	cases := []struct {
		name   string
		temp   float64
		topK   int
		logits []float64
		want   []float64
	}{
		{"temperature 1", 1, 0, []float64{0, ln(2), ln(4)}, []float64{1.0 / 7, 2.0 / 7, 4.0 / 7}},
		{"temperature 2 flattens", 2, 0, []float64{0, ln(4), ln(16)}, []float64{1.0 / 7, 2.0 / 7, 4.0 / 7}},
		{"temperature 0.5 sharpens", 0.5, 0, []float64{0, ln(2)}, []float64{1.0 / 5, 4.0 / 5}},
		{"top-2 of 4", 1, 2, []float64{ln(3), 0, ln(1), 5}, []float64{0, 0, 0, 0}},
		{"-Inf never drawn", 1, 0, []float64{math.Inf(-1), 0, 0}, []float64{0, 0.5, 0.5}},
		{"top-k beyond the vocabulary", 1, 10, []float64{0, 0}, []float64{0.5, 0.5}},
	}
	// top-2 of 4: logits 5 and ln 3 remain.
	e5 := math.Exp(5)
	cases[3].want = []float64{3 / (3 + e5), 0, 0, e5 / (3 + e5)}
	const draws = 100000
	for _, c := range cases {
		s, err := NewSampler(c.temp, c.topK, 42)
		if err != nil {
			t.Fatal(err)
		}
		counts := make([]float64, len(c.logits))
		for i := 0; i < draws; i++ {
			counts[s.Next(c.logits)]++
		}
		for i, p := range c.want {
			got := counts[i] / draws
			se := math.Sqrt(p * (1 - p) / draws)
			if p == 0 && got != 0 || math.Abs(got-p) > 5*se+1e-12 {
				t.Errorf("%s: token %d drawn with frequency %.4f, want %.4f (±%.4f)", c.name, i, got, p, 5*se)
			}
		}
	}
}

// TestSamplerSeed: a seed reproduces its draws; another seed gives others.
func TestSamplerSeed(t *testing.T) {
	logits := make([]float64, 50)
	draw := func(seed uint64) []int32 {
		s, err := NewSampler(1, 0, seed)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int32, 40)
		for i := range out {
			out[i] = s.Next(logits)
		}
		return out
	}
	if a, b := draw(7), draw(7); !slices.Equal(a, b) {
		t.Errorf("seed 7 drew %v, then %v", a, b)
	}
	if a, b := draw(7), draw(8); slices.Equal(a, b) {
		t.Errorf("seeds 7 and 8 drew the same %v", a)
	}
}

// TestNewSamplerRejects bad settings.
func TestNewSamplerRejects(t *testing.T) {
	cases := []struct {
		temp float64
		topK int
	}{{math.NaN(), 0}, {math.Inf(1), 0}, {-0.1, 0}, {1, -1}}
	for _, c := range cases {
		if _, err := NewSampler(c.temp, c.topK, 0); err == nil {
			t.Errorf("temperature %v, top-k %d: accepted", c.temp, c.topK)
		}
	}
}

// greedyByHand is what Generate must do at temperature 0: the argmax of a
// full forward over the latest context, one token at a time.
func greedyByHand(t *testing.T, m *Model, prompt []int32, n int) []int32 {
	t.Helper()
	ids := slices.Clone(prompt)
	var out []int32
	for len(out) < n {
		s := torch.NewScope()
		ctx := ids[max(0, len(ids)-m.cfg.ContextLength):]
		x := make([]int64, len(ctx))
		for i, v := range ctx {
			x[i] = int64(v)
		}
		var logits []float64
		torch.NoGrad(func() {
			o := m.Forward(torch.FromInt64(x, 1, int64(len(x))), ForwardOptions{})
			logits = o.Logits.Narrow(1, int64(len(x)-1), 1).Reshape(-1).Float64s()
		})
		s.Close()
		tok := int32(argmax(logits))
		ids, out = append(ids, tok), append(out, tok)
	}
	return out
}

// TestGenerate: greedy generation equals the argmax of full forwards; it
// emits each token once, produces exactly n tokens without a stop token,
// slides the window past context_length, stops before a stop token, and
// frees every temporary.
func TestGenerate(t *testing.T) {
	torchtest.Guard(t)
	cfg := smallConfig(t, "default", map[string]any{"context_length": int64(8), "n_positions": int64(8)})
	m, err := New(cfg, Options{DType: torch.Float64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	torch.ManualSeed(3)
	if err := m.Init(); err != nil {
		t.Fatal(err)
	}
	greedy, _ := NewSampler(0, 0, 0)
	cases := []struct {
		name   string
		prompt []int32
		n      int
	}{
		{"short prompt", []int32{5, 9, 2}, 12}, // 15 > context 8: the window slides
		{"prompt longer than the context", []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 4},
		{"one-token prompt", []int32{400}, 3},
		{"no tokens asked", []int32{7}, 0},
	}
	for _, c := range cases {
		want := greedyByHand(t, m, c.prompt, c.n)
		var emitted []int32
		got, err := m.Generate(c.prompt, c.n, greedy, -1, func(tok int32) { emitted = append(emitted, tok) })
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(got) != c.n || !slices.Equal(got, want) || !slices.Equal(emitted, got) {
			t.Errorf("%s: generated %v (emitted %v), want %d tokens %v", c.name, got, emitted, c.n, want)
		}
		if c.n > 1 {
			// A stop token ends before its first occurrence.
			stop := want[1]
			stopped, err := m.Generate(c.prompt, c.n, greedy, stop, nil)
			if k := slices.Index(want, stop); err != nil || !slices.Equal(stopped, want[:k]) {
				t.Errorf("%s: stop at %d gave %v (%v), want %v", c.name, stop, stopped, err, want[:k])
			}
		}
	}
	if _, err := m.Generate(nil, 3, greedy, -1, nil); err == nil {
		t.Error("an empty prompt was accepted")
	}
}
