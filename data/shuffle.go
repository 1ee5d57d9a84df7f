package data

import (
	"math/bits"
	"math/rand/v2"
)

// rng is a PCG generator with a bounded draw of our own, so that shuffles do
// not depend on the Go version's math/rand algorithms.
type rng struct{ p *rand.PCG }

func newRNG(seed int64, stream uint64) rng {
	return rng{rand.NewPCG(uint64(seed), stream^0x9e3779b97f4a7c15)}
}

// below returns a uniform integer in [0, n) (Lemire's method with rejection).
func (r rng) below(n uint64) uint64 {
	for {
		v := r.p.Uint64()
		hi, lo := bits.Mul64(v, n)
		if lo >= n || lo >= (-n)%n {
			return hi
		}
	}
}

// permutation returns a Fisher-Yates shuffle of 0..n-1.
func permutation(n int, seed int64, stream uint64) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	r := newRNG(seed, stream)
	for i := n - 1; i > 0; i-- {
		j := r.below(uint64(i + 1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
