package bpe

import "unicode/utf8"

// heapItem is an element of a minHeap: before says whether it comes out
// first.
type heapItem[T any] interface{ before(T) bool }

// minHeap is a binary min-heap in a slice, ordered by T's before: the
// encoder's candidate merges and the trainer's pair queue.
type minHeap[T heapItem[T]] []T

// push adds x.
func (h *minHeap[T]) push(x T) {
	*h = append(*h, x)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

// pop removes and returns the first element; the vacated slot is zeroed so
// that it holds on to nothing.
func (h *minHeap[T]) pop() T {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	var zero T
	s[n] = zero
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].before(s[l]) {
			m = r
		}
		if !s[m].before(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// mergeCand is a candidate merge of the encoder, ordered by (rank,
// position).
type mergeCand struct {
	rank uint32
	pos  int32
	id   int32
}

func (h mergeCand) before(o mergeCand) bool {
	return h.rank < o.rank || (h.rank == o.rank && h.pos < o.pos)
}

// mergeLong is mergeShort for long pieces: a linked list of symbols and a heap
// of candidate merges, entries checked for staleness when popped.
func (e *Encoder) mergeLong(syms []int32) []int32 {
	t := e.t
	n := len(syms)
	next, prev := e.next[:0], e.prev[:0]
	for i := 0; i < n; i++ {
		next = append(next, int32(i+1))
		prev = append(prev, int32(i-1))
	}
	next[n-1] = -1
	h := e.heap[:0]
	for i := 0; i+1 < n; i++ {
		if m, ok := t.merges[pairKey(syms[i], syms[i+1])]; ok {
			h.push(mergeCand{rank: uint32(m >> 32), pos: int32(i), id: int32(uint32(m))})
		}
	}
	alive := n
	for len(h) > 0 {
		c := h.pop()
		p := c.pos
		if syms[p] < 0 || next[p] < 0 {
			continue
		}
		q := next[p]
		m, ok := t.merges[pairKey(syms[p], syms[q])]
		if !ok || int32(uint32(m)) != c.id {
			continue
		}
		syms[p] = c.id
		syms[q] = -1
		alive--
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if pp := prev[p]; pp >= 0 {
			if m, ok := t.merges[pairKey(syms[pp], syms[p])]; ok {
				h.push(mergeCand{rank: uint32(m >> 32), pos: pp, id: int32(uint32(m))})
			}
		}
		if nn := next[p]; nn >= 0 {
			if m, ok := t.merges[pairKey(syms[p], syms[nn])]; ok {
				h.push(mergeCand{rank: uint32(m >> 32), pos: p, id: int32(uint32(m))})
			}
		}
	}
	e.heap, e.next, e.prev = h[:0], next, prev
	out := syms[:0]
	for _, s := range syms {
		if s >= 0 {
			out = append(out, s)
		}
	}
	_ = alive
	return out
}

func lastRune(s string) (rune, int) { return utf8.DecodeLastRuneInString(s) }
