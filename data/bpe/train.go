package bpe

import (
	"errors"
	"fmt"

	"sort"
)

// WordCounts counts pre-tokenized pieces (raw bytes as a string) of a corpus,
// the input of training. Build one per goroutine and Merge them.
type WordCounts map[string]int64

// Add pre-tokenizes text with GPT-2's pattern and counts its pieces. Like
// Hugging Face's trainer, it does not split out added tokens.
func (w WordCounts) Add(text string) {
	splitGPT2(text, func(start, end int) { w[text[start:end]]++ })
}

// Merge adds the counts of o to w.
func (w WordCounts) Merge(o WordCounts) {
	for k, v := range o {
		w[k] += v
	}
}

// TrainOptions are the settings of Train, named as Hugging Face's BpeTrainer.
type TrainOptions struct {
	// VocabSize is the target vocabulary size, special tokens and the 256
	// byte-level characters included (default 52000).
	VocabSize int
	// MinFrequency: a pair seen fewer times is never merged (default 0, as
	// BpeTrainer's default).
	MinFrequency int64
	// SpecialTokens come first in the vocabulary (default ["<|endoftext|>"],
	// GPT-2's, as train_new_from_iterator passes them).
	SpecialTokens []string
	// MaxTokenLength limits the length of merged tokens in characters (0: none).
	MaxTokenLength int
	// Progress, when set, is called after merges with the vocabulary size
	// reached and the target.
	Progress func(vocab, target int)
}

// Train learns a byte-level BPE from word counts with the semantics of Hugging
// Face's BpeTrainer as transformers' train_new_from_iterator configures it for
// GPT-2: special tokens first, then the full byte-level alphabet sorted by code
// point, then merges of the most frequent pair, ties going to the smallest
// pair of ids (the order of BpeTrainer's heap), until VocabSize.
func Train(words WordCounts, opts TrainOptions) (*Tokenizer, error) {
	if opts.VocabSize == 0 {
		opts.VocabSize = 52000
	}
	if opts.SpecialTokens == nil {
		opts.SpecialTokens = []string{"<|endoftext|>"}
	}
	if opts.VocabSize < 0 {
		return nil, fmt.Errorf("vocabulary size %d is negative", opts.VocabSize)
	}
	maxLen := opts.MaxTokenLength
	if maxLen <= 0 {
		maxLen = int(^uint(0) >> 1)
	}
	// 1. special tokens, 2. alphabet.
	var tokens []string
	vocab := map[string]int32{}
	add := func(s string) int32 {
		if id, ok := vocab[s]; ok {
			return id
		}
		id := int32(len(tokens))
		tokens = append(tokens, s)
		vocab[s] = id
		return id
	}
	var added []AddedToken
	for _, s := range opts.SpecialTokens {
		if s == "" {
			return nil, errors.New("empty special token")
		}
		if _, dup := vocab[s]; dup {
			continue
		}
		added = append(added, AddedToken{ID: add(s), Content: s, Normalized: true, Special: true})
	}
	var byteID [256]int32
	for _, r := range Alphabet() {
		byteID[runeByte[r]] = add(string(r))
	}
	charLen := make([]int, 0, opts.VocabSize) // token length in characters
	for _, s := range tokens {
		charLen = append(charLen, len([]rune(s)))
	}
	// 3. words, in a fixed order.
	keys := make([]string, 0, len(words))
	for k, c := range words {
		if c > 0 && len(k) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	ws := make([][]int32, len(keys))
	counts := make([]int64, len(keys))
	for i, k := range keys {
		w := make([]int32, len(k))
		for j := 0; j < len(k); j++ {
			w[j] = byteID[k[j]]
		}
		ws[i], counts[i] = w, words[k]
	}
	// 4. pair counts and where they occur.
	pairCounts := map[uint64]int64{}
	where := map[uint64][]int32{}
	for i, w := range ws {
		for j := 0; j+1 < len(w); j++ {
			k := pairKey(w[j], w[j+1])
			pairCounts[k] += counts[i]
			if p := where[k]; len(p) == 0 || p[len(p)-1] != int32(i) {
				where[k] = append(p, int32(i))
			}
		}
	}
	q := &pairQueue{}
	for k, pos := range where {
		if c := pairCounts[k]; c > 0 {
			q.push(pairEntry{pair: k, count: c, pos: pos})
		}
	}
	where = map[uint64][]int32{}
	// 5. merges.
	var merges [][3]int32
	type change struct {
		pair  uint64
		delta int64
		word  int32
	}
	var changes []change
	for len(tokens) < opts.VocabSize && q.len() > 0 {
		top := q.pop()
		if cur := pairCounts[top.pair]; top.count != cur {
			top.count = cur
			q.push(top)
			continue
		}
		if top.count < 1 || opts.MinFrequency > top.count {
			break
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		newTok := tokens[a] + tokens[b]
		id, exists := vocab[newTok]
		if !exists {
			id = add(newTok)
			charLen = append(charLen, charLen[a]+charLen[b])
		}
		merges = append(merges, [3]int32{a, b, id})
		changes = changes[:0]
		for _, wi := range top.pos {
			w := ws[wi]
			for i := 0; i < len(w); i++ {
				if w[i] != a || i+1 >= len(w) || w[i+1] != b {
					continue
				}
				if i > 0 {
					changes = append(changes, change{pairKey(w[i-1], a), -1, wi})
					if charLen[w[i-1]]+charLen[id] < maxLen {
						changes = append(changes, change{pairKey(w[i-1], id), 1, wi})
					}
				}
				w[i] = id
				w = append(w[:i+1], w[i+2:]...)
				if i < len(w)-1 {
					changes = append(changes, change{pairKey(b, w[i+1]), -1, wi})
					if charLen[w[i+1]]+charLen[id] < maxLen {
						changes = append(changes, change{pairKey(id, w[i+1]), 1, wi})
					}
				}
			}
			ws[wi] = w
		}
		for _, c := range changes {
			pairCounts[c.pair] += c.delta * counts[c.word]
			if c.delta > 0 {
				if p := where[c.pair]; len(p) == 0 || p[len(p)-1] != c.word {
					where[c.pair] = append(p, c.word)
				}
			}
		}
		for k, pos := range where {
			if c := pairCounts[k]; c > 0 {
				q.push(pairEntry{pair: k, count: c, pos: pos})
			}
		}
		clear(where)
		if opts.Progress != nil && len(merges)%100 == 0 {
			opts.Progress(len(tokens), opts.VocabSize)
		}
	}
	if opts.Progress != nil {
		opts.Progress(len(tokens), opts.VocabSize)
	}
	// A pair merged twice keeps its last rank only, as Hugging Face's model
	// stores merges in a map before writing them in rank order.
	last := map[uint64]int{}
	for i, m := range merges {
		last[pairKey(m[0], m[1])] = i
	}
	t := &Tokenizer{tokens: tokens, vocab: vocab, added: added}
	for i, m := range merges {
		if last[pairKey(m[0], m[1])] == i {
			t.mergeList = append(t.mergeList, m)
		}
	}
	t.post.kind = "ByteLevel"
	if err := t.build(); err != nil {
		return nil, err
	}
	return t, nil
}

// pairEntry is a candidate merge: a pair, its count when queued and the words
// that may hold it.
type pairEntry struct {
	pair  uint64
	count int64
	pos   []int32
}

// pairQueue is a max-heap by count, then by smallest pair (BpeTrainer's order).
type pairQueue struct{ s []pairEntry }

func (q *pairQueue) len() int { return len(q.s) }

func (e pairEntry) before(o pairEntry) bool {
	return e.count > o.count || (e.count == o.count && e.pair < o.pair)
}

func (q *pairQueue) push(e pairEntry) {
	q.s = append(q.s, e)
	s := q.s
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

func (q *pairQueue) pop() pairEntry {
	s := q.s
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = pairEntry{}
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
	q.s = s
	return top
}
