package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"clm/torch"
)

// Sampler chooses the next token from the logits of the last position:
// greedy at temperature 0, else a draw from softmax(logits / temperature)
// restricted to the TopK most likely tokens (0: all).
type Sampler struct {
	Temperature float64
	TopK        int
	rng         *rand.Rand
}

// NewSampler returns a sampler whose draws are reproducible from seed.
func NewSampler(temperature float64, topK int, seed uint64) (*Sampler, error) {
	switch {
	case math.IsNaN(temperature) || math.IsInf(temperature, 0) || temperature < 0:
		return nil, fmt.Errorf("temperature %v must be a finite number ≥ 0 (0 is greedy)", temperature)
	case topK < 0:
		return nil, fmt.Errorf("top-k %d must not be negative (0: all tokens)", topK)
	}
	return &Sampler{Temperature: temperature, TopK: topK, rng: rand.New(rand.NewPCG(seed, 1))}, nil
}

// Next picks a token id from logits.
func (s *Sampler) Next(logits []float64) int32 {
	if s.Temperature == 0 || s.TopK == 1 {
		return int32(argmax(logits))
	}
	idx := topK(logits, s.TopK)
	best := logits[argmax(logits)]
	weights := make([]float64, len(idx))
	var sum float64
	for i, j := range idx {
		weights[i] = math.Exp((logits[j] - best) / s.Temperature) // ≤ 1; underflows to 0
		sum += weights[i]
	}
	r := s.rng.Float64() * sum
	last := 0
	for i, w := range weights {
		if w == 0 {
			continue
		}
		if r -= w; r < 0 {
			return int32(idx[i])
		}
		last = i
	}
	return int32(idx[last]) // r survived the sum's rounding
}

// argmax is the index of the largest value (the first of ties).
func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// topK returns the indices of the k largest logits, most likely first and
// ties by index; all indices in order when k is 0 or at least len(logits).
func topK(logits []float64, k int) []int {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	if k > 0 && k < len(idx) {
		sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
		idx = idx[:k]
	}
	return idx
}

// Generate continues prompt by up to n tokens on the model's device, feeding
// at most ContextLength tokens back each time (the latest ones). It stops
// early after a token equal to stop (stop < 0: never), which is not
// returned. emit, when not nil, sees each new token as it is chosen.
func (m *Model) Generate(prompt []int32, n int, s *Sampler, stop int32, emit func(int32)) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, errors.New("model: generation needs a prompt of at least one token")
	}
	ids := append([]int32(nil), prompt...)
	var out []int32
	err := torch.Try(func() {
		torch.NoGrad(func() {
			for len(out) < n {
				next := m.nextLogits(ids)
				tok := s.Next(next)
				if stop >= 0 && tok == stop {
					return
				}
				ids, out = append(ids, tok), append(out, tok)
				if emit != nil {
					emit(tok)
				}
			}
		})
	})
	return out, err
}

// nextLogits runs the model on the last ContextLength ids and returns the
// float64 logits of the last position.
func (m *Model) nextLogits(ids []int32) []float64 {
	s := torch.NewScope()
	defer s.Close()
	if len(ids) > m.cfg.ContextLength {
		ids = ids[len(ids)-m.cfg.ContextLength:]
	}
	x := make([]int64, len(ids))
	for j, v := range ids {
		x[j] = int64(v)
	}
	out := m.Forward(torch.FromInt64(x, 1, int64(len(x))).ToDevice(m.opts.Device), ForwardOptions{})
	last := out.Logits.Narrow(1, int64(len(x)-1), 1).Reshape(-1)
	return last.ToDType(torch.Float64).ToDevice(torch.CPU).Float64s()
}
