// Package nprand reproduces, bit for bit, the part of NumPy's random module
// that the original's data selection uses: `numpy.random.default_rng(seed)`
// (a PCG64 generator seeded through SeedSequence) and its
// `Generator.permutation(n)`, which is what `datasets.Dataset.shuffle(seed)`
// draws. With it clm picks the same CodeParrot documents as the original for
// any seed and size.
//
// The algorithms follow NumPy's documented reference (numpy/random:
// bit_generator.pyx SeedSequence, pcg64.h, distributions.c random_interval,
// _generator.pyx shuffle); the package's tests compare against NumPy itself.
package nprand

import (
	"errors"
	"math/big"
	"math/bits"
)

// SeedSequence constants (NumPy's bit_generator.pyx, after M. E. O'Neill's
// seed_seq design).
const (
	poolSize  = 4
	initA     = 0x43b0d7e5
	multA     = 0x931e8875
	initB     = 0x8b51f9dd
	multB     = 0x58f38ded
	mixMultL  = 0xca01f9dd
	mixMultR  = 0x4973f715
	xShift    = 16 // 4 bytes * 8 / 2
	mask32    = 0xffffffff
	pcgMultHi = 0x2360ed051fc65da4 // PCG_DEFAULT_MULTIPLIER_128
	pcgMultLo = 0x4385df649fccf645
)

// entropyWords splits a non-negative integer into little-endian 32-bit words,
// as NumPy's _int_to_uint32_array does (0 is one word, 0).
func entropyWords(seed *big.Int) []uint32 {
	if seed.Sign() == 0 {
		return []uint32{0}
	}
	n := new(big.Int).Set(seed)
	var out []uint32
	m := big.NewInt(mask32)
	for n.Sign() > 0 {
		out = append(out, uint32(new(big.Int).And(n, m).Uint64()))
		n.Rsh(n, 32)
	}
	return out
}

// hasher is SeedSequence's running hash constant.
type hasher struct{ c uint32 }

func (h *hasher) hashmix(v uint32) uint32 {
	v ^= h.c
	h.c *= multA
	v *= h.c
	return v ^ v>>xShift
}

func mix(x, y uint32) uint32 {
	r := mixMultL*x - mixMultR*y
	return r ^ r>>xShift
}

// seedPool mixes the entropy words into SeedSequence's pool of 4 words.
func seedPool(entropy []uint32) [poolSize]uint32 {
	var pool [poolSize]uint32
	h := hasher{initA}
	for i := range pool {
		if i < len(entropy) {
			pool[i] = h.hashmix(entropy[i])
		} else {
			pool[i] = h.hashmix(0)
		}
	}
	for src := range pool {
		for dst := range pool {
			if src != dst {
				pool[dst] = mix(pool[dst], h.hashmix(pool[src]))
			}
		}
	}
	for src := poolSize; src < len(entropy); src++ {
		for dst := range pool {
			pool[dst] = mix(pool[dst], h.hashmix(entropy[src]))
		}
	}
	return pool
}

// generateState is SeedSequence.generate_state(n, np.uint64): 2n 32-bit
// words drawn from the pool, read as little-endian 64-bit words.
func generateState(pool [poolSize]uint32, n int) []uint64 {
	words := make([]uint32, 2*n)
	c := uint32(initB)
	for i := range words {
		v := pool[i%poolSize]
		v ^= c
		c *= multB
		v *= c
		words[i] = v ^ v>>xShift
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(words[2*i]) | uint64(words[2*i+1])<<32
	}
	return out
}

// PCG64 is NumPy's PCG64 bit generator (128-bit LCG state, XSL-RR output),
// including its buffered 32-bit draws.
type PCG64 struct {
	stateHi, stateLo uint64
	incHi, incLo     uint64
	hasUint32        bool
	uinteger         uint32
}

// NewPCG64 seeds a generator as `numpy.random.PCG64(seed)` does; seed must be
// a non-negative integer of any size.
func NewPCG64(seed *big.Int) (*PCG64, error) {
	if seed == nil || seed.Sign() < 0 {
		return nil, errors.New("nprand: seed must be a non-negative integer")
	}
	v := generateState(seedPool(entropyWords(seed)), 4)
	g := &PCG64{}
	// pcg64_set_seed: state from (v[0] high, v[1] low), increment from
	// (v[2], v[3]); then pcg_setseq_128_srandom_r.
	initHi, initLo := v[0], v[1]
	seqHi, seqLo := v[2], v[3]
	g.incHi = seqHi<<1 | seqLo>>63
	g.incLo = seqLo<<1 | 1
	g.step()
	var c uint64
	g.stateLo, c = bits.Add64(g.stateLo, initLo, 0)
	g.stateHi, _ = bits.Add64(g.stateHi, initHi, c)
	g.step()
	return g, nil
}

// NewPCG64Int is NewPCG64 for a machine-sized seed.
func NewPCG64Int(seed uint64) *PCG64 {
	g, _ := NewPCG64(new(big.Int).SetUint64(seed))
	return g
}

// step advances the LCG: state = state·mult + inc (mod 2^128).
func (g *PCG64) step() {
	hi, lo := bits.Mul64(g.stateLo, pcgMultLo)
	hi += g.stateHi*pcgMultLo + g.stateLo*pcgMultHi
	var c uint64
	g.stateLo, c = bits.Add64(lo, g.incLo, 0)
	g.stateHi, _ = bits.Add64(hi, g.incHi, c)
}

// Uint64 returns the next 64-bit output (pcg64_next64).
func (g *PCG64) Uint64() uint64 {
	g.step()
	rot := uint(g.stateHi >> 58)
	return bits.RotateLeft64(g.stateHi^g.stateLo, -int(rot))
}

// Uint32 returns the next 32-bit output (pcg64_next32): the low half of a
// 64-bit draw, then its high half.
func (g *PCG64) Uint32() uint32 {
	if g.hasUint32 {
		g.hasUint32 = false
		return g.uinteger
	}
	v := g.Uint64()
	g.hasUint32 = true
	g.uinteger = uint32(v >> 32)
	return uint32(v)
}

// interval returns a uniform integer in [0, max] by masked rejection
// (NumPy's random_interval: 32-bit draws when max fits in 32 bits).
func (g *PCG64) interval(max uint64) uint64 {
	if max == 0 {
		return 0
	}
	mask := max
	mask |= mask >> 1
	mask |= mask >> 2
	mask |= mask >> 4
	mask |= mask >> 8
	mask |= mask >> 16
	mask |= mask >> 32
	if max <= mask32 {
		for {
			if v := uint64(g.Uint32()) & mask; v <= max {
				return v
			}
		}
	}
	for {
		if v := g.Uint64() & mask; v <= max {
			return v
		}
	}
}

// Permutation returns `default_rng(seed).permutation(n)` for a generator in
// its initial state: the Fisher–Yates shuffle of 0..n-1 that NumPy's
// Generator.shuffle performs, from the last element down.
func (g *PCG64) Permutation(n int) []int64 {
	p := make([]int64, n)
	for i := range p {
		p[i] = int64(i)
	}
	for i := n - 1; i > 0; i-- {
		j := g.interval(uint64(i))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// Permutation is `numpy.random.default_rng(seed).permutation(n)`.
func Permutation(seed uint64, n int) []int64 {
	return NewPCG64Int(seed).Permutation(n)
}
