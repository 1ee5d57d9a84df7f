// Package bpe is a byte-level BPE tokenizer (the GPT-2 family: GPT-2,
// RoBERTa, huggingface-course/code-search-net-tokenizer) that encodes exactly
// as Hugging Face tokenizers does, and a trainer with the semantics of its
// BpeTrainer. It loads and writes Hugging Face tokenizer.json files and also
// loads GPT-2's original vocab.json/merges.txt (encoder.json/vocab.bpe) pair.
//
// Encoding follows Hugging Face's pipeline: added tokens are split out first
// (leftmost, longest), each remaining segment is split by GPT-2's
// pre-tokenizer pattern, each piece's bytes are mapped to the byte-level
// alphabet and merged by lowest merge rank, leftmost first.
package bpe

import (
	"fmt"
	"strings"
	"sync"
)

// AddedToken is a token matched in the raw text before pre-tokenization, as in
// the "added_tokens" section of a tokenizer.json.
type AddedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// Tokenizer is an immutable byte-level BPE tokenizer. It is safe for
// concurrent use; for the fastest bulk encoding give each goroutine its own
// Encoder (NewEncoder).
type Tokenizer struct {
	tokens []string         // id -> token (byte-level string, or added token content)
	vocab  map[string]int32 // token -> id
	raw    [][]byte         // id -> decoded bytes
	merges map[uint64]uint64
	// merge order as in the file: pairs of ids and the merged id
	mergeList [][3]int32

	byteID       [256]int32
	added        []AddedToken
	addPrefix    bool // ByteLevel add_prefix_space
	ignoreMerges bool
	post         postProcessor
	// modelVocab marks the ids of model.vocab when loaded from a
	// tokenizer.json (nil: all ids are in the model vocabulary).
	modelVocab map[int32]bool

	pool sync.Pool
}

type postProcessor struct {
	kind   string // "", "ByteLevel", "RobertaProcessing", "TemplateProcessing"
	prefix []int32
	suffix []int32
	raw    []byte // the original JSON, written back unchanged
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// VocabSize returns the number of ids (the largest id + 1).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// NumMerges returns the number of merge rules.
func (t *Tokenizer) NumMerges() int { return len(t.mergeList) }

// Merges returns the merge rules in rank order as pairs of token strings.
func (t *Tokenizer) Merges() [][2]string {
	out := make([][2]string, len(t.mergeList))
	for i, m := range t.mergeList {
		out[i] = [2]string{t.tokens[m[0]], t.tokens[m[1]]}
	}
	return out
}

// Token returns the vocabulary string of id ("" when out of range).
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// ID returns the id of a vocabulary string.
func (t *Tokenizer) ID(token string) (int32, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// AddedTokens returns the added (special) tokens.
func (t *Tokenizer) AddedTokens() []AddedToken { return append([]AddedToken(nil), t.added...) }

// build finishes a tokenizer from tokens/vocab and the merge list.
func (t *Tokenizer) build() error {
	for b := 0; b < 256; b++ {
		s := string(byteRune[b])
		id, ok := t.vocab[s]
		if !ok {
			return fmt.Errorf("vocabulary lacks the byte-level character %q (byte 0x%02x): not a byte-level BPE", s, b)
		}
		t.byteID[b] = id
	}
	t.raw = make([][]byte, len(t.tokens))
	isAdded := map[int32]bool{}
	for _, a := range t.added {
		isAdded[a.ID] = true
	}
	for id, s := range t.tokens {
		if isAdded[int32(id)] {
			t.raw[id] = []byte(s)
			continue
		}
		if b, ok := ByteLevelBytes(s); ok {
			t.raw[id] = b
		} else {
			t.raw[id] = []byte(s)
		}
	}
	t.merges = make(map[uint64]uint64, len(t.mergeList))
	for rank, m := range t.mergeList {
		k := pairKey(m[0], m[1])
		// A repeated pair keeps its last rank, as in Hugging Face's HashMap.
		t.merges[k] = uint64(rank)<<32 | uint64(uint32(m[2]))
	}
	// Sort added tokens longest first for leftmost-longest matching.
	return nil
}

// Encoder encodes text with a Tokenizer and keeps a cache of encoded pieces.
// An Encoder is not safe for concurrent use.
type Encoder struct {
	t     *Tokenizer
	cache map[string][]int32
	syms  []int32
	heap  minHeap[mergeCand]
	next  []int32
	prev  []int32
}

const maxCache = 1 << 17

// NewEncoder returns an Encoder for t.
func (t *Tokenizer) NewEncoder() *Encoder {
	return &Encoder{t: t, cache: make(map[string][]int32, 1024)}
}

// Encode returns the ids of text as Hugging Face's Tokenizer.encode(text)
// does (added tokens recognised, post-processor applied).
func (t *Tokenizer) Encode(text string) []int32 {
	e, _ := t.pool.Get().(*Encoder)
	if e == nil {
		e = t.NewEncoder()
	}
	ids := e.Encode(text)
	t.pool.Put(e)
	return ids
}

// Encode is Tokenizer.Encode with e's cache.
func (e *Encoder) Encode(text string) []int32 {
	return e.AppendEncode(nil, text)
}

// AppendEncode appends the ids of text to dst.
func (e *Encoder) AppendEncode(dst []int32, text string) []int32 {
	t := e.t
	dst = append(dst, t.post.prefix...)
	if len(t.added) == 0 {
		dst = e.appendSegment(dst, text)
	} else {
		pos := 0
		for pos <= len(text) {
			start, end, tok := t.findAdded(text, pos)
			if tok < 0 {
				dst = e.appendSegment(dst, text[pos:])
				break
			}
			dst = e.appendSegment(dst, text[pos:start])
			dst = append(dst, tok)
			pos = end
			if pos == len(text) {
				break
			}
		}
	}
	return append(dst, t.post.suffix...)
}

// appendSegment encodes text that holds no added token.
func (e *Encoder) appendSegment(dst []int32, text string) []int32 {
	if text == "" {
		return dst
	}
	if e.t.addPrefix && text[0] != ' ' {
		text = " " + text
	}
	splitGPT2(text, func(start, end int) {
		dst = e.appendPiece(dst, text[start:end])
	})
	return dst
}

// appendPiece encodes one pre-token.
func (e *Encoder) appendPiece(dst []int32, piece string) []int32 {
	if ids, ok := e.cache[piece]; ok {
		return append(dst, ids...)
	}
	t := e.t
	var ids []int32
	if t.ignoreMerges {
		if id, ok := t.vocab[ByteLevelString([]byte(piece))]; ok {
			ids = []int32{id}
		}
	}
	if ids == nil {
		syms := e.syms[:0]
		for i := 0; i < len(piece); i++ {
			syms = append(syms, t.byteID[piece[i]])
		}
		if len(syms) > 48 {
			syms = e.mergeLong(syms)
		} else {
			syms = t.mergeShort(syms)
		}
		e.syms = syms
		ids = append([]int32(nil), syms...)
	}
	if len(e.cache) >= maxCache {
		clear(e.cache)
	}
	e.cache[piece] = ids
	return append(dst, ids...)
}

const noRank = ^uint64(0)

// mergeShort applies merges to syms by repeatedly merging the pair of lowest
// rank, leftmost first. Quadratic, for short pieces.
func (t *Tokenizer) mergeShort(syms []int32) []int32 {
	for len(syms) > 1 {
		best, at := noRank, -1
		for k := 0; k+1 < len(syms); k++ {
			if m, ok := t.merges[pairKey(syms[k], syms[k+1])]; ok && m < best {
				best, at = m, k
			}
		}
		if at < 0 {
			break
		}
		syms[at] = int32(uint32(best))
		syms = append(syms[:at+1], syms[at+2:]...)
	}
	return syms
}

// findAdded returns the leftmost-longest added token match at or after pos.
func (t *Tokenizer) findAdded(text string, pos int) (start, end int, id int32) {
	start, end, id = -1, -1, -1
	for i := range t.added {
		a := &t.added[i]
		from := pos
		for from <= len(text) {
			k := strings.Index(text[from:], a.Content)
			if k < 0 || a.Content == "" {
				break
			}
			s, e := from+k, from+k+len(a.Content)
			if a.SingleWord && !singleWordOK(text, s, e) {
				from = s + 1
				continue
			}
			if a.LStrip {
				for s > pos && isSpaceByte(text[s-1]) {
					s--
				}
			}
			if a.RStrip {
				for e < len(text) && isSpaceByte(text[e]) {
					e++
				}
			}
			if start < 0 || s < start || (s == start && e > end) {
				start, end, id = s, e, a.ID
			}
			break
		}
	}
	return start, end, id
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func singleWordOK(text string, s, e int) bool {
	isWord := func(r rune) bool { return classOf(r) == clsLetter || classOf(r) == clsNumber || r == '_' }
	if s > 0 {
		r, _ := lastRune(text[:s])
		if isWord(r) {
			return false
		}
	}
	if e < len(text) {
		r, _ := decodeAt(text, e)
		if isWord(r) {
			return false
		}
	}
	return true
}

// Decode returns the text of ids (added tokens as their content).
func (t *Tokenizer) Decode(ids []int32) string {
	return string(t.AppendDecode(nil, ids, false))
}

// AppendDecode appends the bytes of ids to dst; skipSpecial drops special
// added tokens. Ids out of range are skipped.
func (t *Tokenizer) AppendDecode(dst []byte, ids []int32, skipSpecial bool) []byte {
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.raw) {
			continue
		}
		if skipSpecial && t.isSpecial(id) {
			continue
		}
		dst = append(dst, t.raw[id]...)
	}
	return dst
}

func (t *Tokenizer) isSpecial(id int32) bool {
	for _, a := range t.added {
		if a.ID == id && a.Special {
			return true
		}
	}
	return false
}
