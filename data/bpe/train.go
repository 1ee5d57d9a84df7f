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
	tr := &trainer{opts: opts, maxLen: opts.MaxTokenLength, vocab: map[string]int32{}}
	if tr.maxLen <= 0 {
		tr.maxLen = int(^uint(0) >> 1)
	}
	// 1. special tokens, 2. alphabet, 3. words, 4. pairs, 5. merges.
	added, err := tr.addSpecialTokens()
	if err != nil {
		return nil, err
	}
	byteID := tr.addAlphabet()
	tr.splitWords(words, byteID)
	tr.countPairs()
	tr.mergePairs()
	return tr.tokenizer(added)
}

// trainer holds the state of one Train: the vocabulary grown so far, the
// words as sequences of token ids, and the counts of adjacent pairs.
type trainer struct {
	opts   TrainOptions
	maxLen int // longest merged token, in characters

	tokens  []string // by id
	vocab   map[string]int32
	charLen []int // token length in characters, by id

	words  [][]int32 // the distinct words, split into tokens
	counts []int64   // how often each word occurs

	pairCounts map[uint64]int64
	// where lists, for the pairs whose count rose since they were last
	// queued, the words that may hold them.
	where   map[uint64][]int32
	queue   minHeap[pairEntry]
	merges  [][3]int32 // a, b, merged id, in the order merged
	changes []pairChange
}

// pairChange is a change of the count of pair by delta occurrences in word.
type pairChange struct {
	pair  uint64
	delta int64
	word  int32
}

// add returns the id of token s, adding it to the vocabulary if it is new.
func (tr *trainer) add(s string) int32 {
	if id, ok := tr.vocab[s]; ok {
		return id
	}
	id := int32(len(tr.tokens))
	tr.tokens = append(tr.tokens, s)
	tr.vocab[s] = id
	return id
}

// addSpecialTokens puts the special tokens first in the vocabulary, once
// each, and returns them as added tokens.
func (tr *trainer) addSpecialTokens() ([]AddedToken, error) {
	var added []AddedToken
	for _, s := range tr.opts.SpecialTokens {
		if s == "" {
			return nil, errors.New("empty special token")
		}
		if _, dup := tr.vocab[s]; dup {
			continue
		}
		added = append(added, AddedToken{ID: tr.add(s), Content: s, Normalized: true, Special: true})
	}
	return added, nil
}

// addAlphabet adds the byte-level alphabet in code point order and returns
// the token id of each byte. It also records the length in characters of
// every token added so far.
func (tr *trainer) addAlphabet() (byteID [256]int32) {
	for _, r := range Alphabet() {
		byteID[runeByte[r]] = tr.add(string(r))
	}
	tr.charLen = make([]int, 0, tr.opts.VocabSize)
	for _, s := range tr.tokens {
		tr.charLen = append(tr.charLen, len([]rune(s)))
	}
	return byteID
}

// splitWords sets the words to train on, in sorted order so that training
// is deterministic, each split into the tokens of its bytes. Words that are
// empty or not counted are left out.
func (tr *trainer) splitWords(words WordCounts, byteID [256]int32) {
	keys := make([]string, 0, len(words))
	for k, c := range words {
		if c > 0 && len(k) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	tr.words = make([][]int32, len(keys))
	tr.counts = make([]int64, len(keys))
	for i, k := range keys {
		w := make([]int32, len(k))
		for j := 0; j < len(k); j++ {
			w[j] = byteID[k[j]]
		}
		tr.words[i], tr.counts[i] = w, words[k]
	}
}

// countPairs counts the adjacent pairs of tokens in all words and queues
// every pair seen, with the words that hold it.
func (tr *trainer) countPairs() {
	tr.pairCounts = map[uint64]int64{}
	where := map[uint64][]int32{}
	for i, w := range tr.words {
		for j := 0; j+1 < len(w); j++ {
			k := pairKey(w[j], w[j+1])
			tr.pairCounts[k] += tr.counts[i]
			if p := where[k]; len(p) == 0 || p[len(p)-1] != int32(i) {
				where[k] = append(p, int32(i))
			}
		}
	}
	tr.queuePairs(where)
	// A new map rather than clear: this one is as large as the corpus's
	// pairs, those of a merge are few.
	tr.where = map[uint64][]int32{}
}

// queuePairs queues the pairs of where that still occur, with their current
// counts.
func (tr *trainer) queuePairs(where map[uint64][]int32) {
	for k, pos := range where {
		if c := tr.pairCounts[k]; c > 0 {
			tr.queue.push(pairEntry{pair: k, count: c, pos: pos})
		}
	}
}

// mergePairs merges the most frequent pair until the vocabulary reaches its
// size, no pair is left, or the most frequent is rarer than MinFrequency.
// Queue entries whose count is stale are queued again with the current one.
func (tr *trainer) mergePairs() {
	progress := tr.opts.Progress
	for len(tr.tokens) < tr.opts.VocabSize && len(tr.queue) > 0 {
		top := tr.queue.pop()
		if cur := tr.pairCounts[top.pair]; top.count != cur {
			top.count = cur
			tr.queue.push(top)
			continue
		}
		if top.count < 1 || tr.opts.MinFrequency > top.count {
			break
		}
		tr.merge(top)
		if progress != nil && len(tr.merges)%100 == 0 {
			progress(len(tr.tokens), tr.opts.VocabSize)
		}
	}
	if progress != nil {
		progress(len(tr.tokens), tr.opts.VocabSize)
	}
}

// merge merges the pair of top into one token in every word that holds it,
// then updates the pair counts and queues the pairs that it made.
func (tr *trainer) merge(top pairEntry) {
	a, b := int32(top.pair>>32), int32(uint32(top.pair))
	newTok := tr.tokens[a] + tr.tokens[b]
	id, exists := tr.vocab[newTok]
	if !exists {
		id = tr.add(newTok)
		tr.charLen = append(tr.charLen, tr.charLen[a]+tr.charLen[b])
	}
	tr.merges = append(tr.merges, [3]int32{a, b, id})
	tr.changes = tr.changes[:0]
	for _, wi := range top.pos {
		tr.words[wi] = tr.mergeInWord(wi, a, b, id)
	}
	tr.applyChanges()
	tr.queuePairs(tr.where)
	clear(tr.where)
}

// mergeInWord replaces each occurrence of the pair a, b in word wi by id and
// returns the shortened word. It records the pairs that disappear around
// each occurrence and the new ones with id that are not too long to merge.
func (tr *trainer) mergeInWord(wi, a, b, id int32) []int32 {
	w := tr.words[wi]
	for i := 0; i < len(w); i++ {
		if w[i] != a || i+1 >= len(w) || w[i+1] != b {
			continue
		}
		if i > 0 {
			tr.changes = append(tr.changes, pairChange{pairKey(w[i-1], a), -1, wi})
			if tr.charLen[w[i-1]]+tr.charLen[id] < tr.maxLen {
				tr.changes = append(tr.changes, pairChange{pairKey(w[i-1], id), 1, wi})
			}
		}
		w[i] = id
		w = append(w[:i+1], w[i+2:]...)
		if i < len(w)-1 {
			tr.changes = append(tr.changes, pairChange{pairKey(b, w[i+1]), -1, wi})
			if tr.charLen[w[i+1]]+tr.charLen[id] < tr.maxLen {
				tr.changes = append(tr.changes, pairChange{pairKey(id, w[i+1]), 1, wi})
			}
		}
	}
	return w
}

// applyChanges applies the recorded changes to the pair counts, noting in
// where the words that gained a pair.
func (tr *trainer) applyChanges() {
	for _, c := range tr.changes {
		tr.pairCounts[c.pair] += c.delta * tr.counts[c.word]
		if c.delta > 0 {
			if p := tr.where[c.pair]; len(p) == 0 || p[len(p)-1] != c.word {
				tr.where[c.pair] = append(p, c.word)
			}
		}
	}
}

// tokenizer returns the trained tokenizer. A pair merged twice keeps its
// last rank only, as Hugging Face's model stores merges in a map before
// writing them in rank order.
func (tr *trainer) tokenizer(added []AddedToken) (*Tokenizer, error) {
	last := map[uint64]int{}
	for i, m := range tr.merges {
		last[pairKey(m[0], m[1])] = i
	}
	t := &Tokenizer{tokens: tr.tokens, vocab: tr.vocab, added: added}
	for i, m := range tr.merges {
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

// before orders the trainer's queue: a max-heap by count, then by
// smallest pair (BpeTrainer's order).
func (e pairEntry) before(o pairEntry) bool {
	return e.count > o.count || (e.count == o.count && e.pair < o.pair)
}
