package bpe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Load reads a tokenizer from path: a tokenizer.json file, a GPT-2 style
// vocabulary file pair given as "VOCAB.json:MERGES.txt", or a directory that
// holds tokenizer.json, vocab.json+merges.txt or encoder.json+vocab.bpe.
func Load(path string) (*Tokenizer, error) {
	if v, m, ok := strings.Cut(path, ".json:"); ok {
		return LoadVocabMerges(v+".json", m)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if !st.IsDir() {
		return LoadFile(path)
	}
	if _, err := os.Stat(filepath.Join(path, "tokenizer.json")); err == nil {
		return LoadFile(filepath.Join(path, "tokenizer.json"))
	}
	for _, p := range [][2]string{{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}} {
		v, m := filepath.Join(path, p[0]), filepath.Join(path, p[1])
		if _, err := os.Stat(v); err == nil {
			return LoadVocabMerges(v, m)
		}
	}
	return nil, fmt.Errorf("tokenizer %s: directory holds neither tokenizer.json, vocab.json+merges.txt nor encoder.json+vocab.bpe", path)
}

// LoadFile reads a Hugging Face tokenizer.json file.
func LoadFile(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

type fileJSON struct {
	AddedTokens  []AddedToken    `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	PostProc     json.RawMessage `json:"post_processor"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        *modelJSON      `json:"model"`
}

// modelJSON is the "model" section of a tokenizer.json file.
type modelJSON struct {
	Type            string           `json:"type"`
	Dropout         *float64         `json:"dropout"`
	UnkToken        *string          `json:"unk_token"`
	ContinuingPfx   *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix *string          `json:"end_of_word_suffix"`
	ByteFallback    bool             `json:"byte_fallback"`
	IgnoreMerges    bool             `json:"ignore_merges"`
	Vocab           map[string]int32 `json:"vocab"`
	Merges          json.RawMessage  `json:"merges"`
}

type typed struct {
	Type           string            `json:"type"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Processors     []json.RawMessage `json:"processors"`
	Sep            []any             `json:"sep"`
	Cls            []any             `json:"cls"`
	Single         []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int32 `json:"ids"`
	} `json:"special_tokens"`
}

func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || string(m) == "null"
}

// Parse reads a tokenizer.json document.
func Parse(b []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %v", err)
	}
	if f.Model == nil {
		return nil, errors.New(`no "model" section`)
	}
	m := f.Model
	if err := m.check(); err != nil {
		return nil, err
	}
	if err := checkNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	t := &Tokenizer{vocab: map[string]int32{}, ignoreMerges: m.IgnoreMerges, modelVocab: map[int32]bool{}}
	var err error
	if t.addPrefix, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if err := checkDecoder(f.Decoder); err != nil {
		return nil, err
	}
	if err := t.fillVocab(m.Vocab, f.AddedTokens); err != nil {
		return nil, err
	}
	if t.mergeList, err = parseMerges(m.Merges, t.vocab); err != nil {
		return nil, err
	}
	if err := t.parsePost(f.PostProc); err != nil {
		return nil, err
	}
	if err := t.build(); err != nil {
		return nil, err
	}
	return t, nil
}

// check reports settings of the model that a byte-level BPE does not
// support.
func (m *modelJSON) check() error {
	if m.Type != "" && m.Type != "BPE" {
		return fmt.Errorf(`model.type %q is not supported (only "BPE")`, m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return fmt.Errorf("model.dropout %v is not supported (only null)", *m.Dropout)
	}
	if m.ContinuingPfx != nil && *m.ContinuingPfx != "" {
		return fmt.Errorf("model.continuing_subword_prefix %q is not supported by byte-level BPE", *m.ContinuingPfx)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return fmt.Errorf("model.end_of_word_suffix %q is not supported by byte-level BPE", *m.EndOfWordSuffix)
	}
	if m.ByteFallback {
		return errors.New("model.byte_fallback is not supported by byte-level BPE")
	}
	return nil
}

// checkNormalizer accepts only a missing or null normalizer.
func checkNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var n typed
	_ = json.Unmarshal(raw, &n)
	return fmt.Errorf("normalizer %q is not supported (only null)", n.Type)
}

// checkDecoder accepts only a missing, null or ByteLevel decoder.
func checkDecoder(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var d typed
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("decoder: %v", err)
	}
	if d.Type != "ByteLevel" {
		return fmt.Errorf("decoder %q is not supported (only ByteLevel)", d.Type)
	}
	return nil
}

// fillVocab sets the tokens of the model's vocabulary, then the added tokens,
// which may extend it. Ids no token has are left as empty tokens.
func (t *Tokenizer) fillVocab(vocab map[string]int32, added []AddedToken) error {
	maxID, err := maxTokenID(vocab, added)
	if err != nil {
		return err
	}
	t.tokens = make([]string, maxID+1)
	filled := make([]bool, maxID+1)
	for s, id := range vocab {
		if s == "" {
			// Every byte-level token is at least one byte; the token table
			// keeps "" for ids that no token has.
			return fmt.Errorf("model.vocab: id %d is the empty string, which is not a token", id)
		}
		if filled[id] {
			return fmt.Errorf("model.vocab: id %d is given to both %q and %q", id, t.tokens[id], s)
		}
		t.tokens[id], filled[id] = s, true
		t.vocab[s] = id
		t.modelVocab[id] = true
	}
	for _, a := range added {
		if a.Content == "" {
			return fmt.Errorf("added_tokens: id %d has empty content", a.ID)
		}
		if filled[a.ID] && t.tokens[a.ID] != a.Content {
			return fmt.Errorf("added_tokens: id %d is %q in the vocabulary but %q in added_tokens", a.ID, t.tokens[a.ID], a.Content)
		}
		t.tokens[a.ID], filled[a.ID] = a.Content, true
		t.vocab[a.Content] = a.ID
		t.added = append(t.added, a)
	}
	for id, ok := range filled {
		if !ok {
			t.tokens[id] = ""
		}
	}
	return nil
}

// maxTokenID returns the largest id of the vocabulary and the added tokens
// (-1 if there are none), checking that ids are not negative and leave the
// token table a sane size.
func maxTokenID(vocab map[string]int32, added []AddedToken) (int32, error) {
	maxID := int32(-1)
	for s, id := range vocab {
		if id < 0 {
			return 0, fmt.Errorf("model.vocab: token %q has negative id %d", s, id)
		}
		if id > maxID {
			maxID = id
		}
	}
	for _, a := range added {
		if a.ID < 0 {
			return 0, fmt.Errorf("added_tokens: token %q has negative id %d", a.Content, a.ID)
		}
		if a.ID > maxID {
			maxID = a.ID
		}
	}
	if maxID >= 1<<24 {
		return 0, fmt.Errorf("model.vocab: id %d is too large", maxID)
	}
	return maxID, nil
}

func parsePreTokenizer(raw json.RawMessage) (addPrefix bool, err error) {
	if isNull(raw) {
		return false, errors.New("pre_tokenizer is null: not a byte-level BPE (need ByteLevel)")
	}
	var p typed
	if err := json.Unmarshal(raw, &p); err != nil {
		return false, fmt.Errorf("pre_tokenizer: %v", err)
	}
	switch p.Type {
	case "ByteLevel":
		if p.UseRegex != nil && !*p.UseRegex {
			return false, errors.New("pre_tokenizer ByteLevel with use_regex=false is not supported")
		}
		return p.AddPrefixSpace, nil
	case "Sequence":
		if len(p.Pretokenizers) == 1 {
			return parsePreTokenizer(p.Pretokenizers[0])
		}
	}
	return false, fmt.Errorf("pre_tokenizer %q is not supported (only ByteLevel with GPT-2's pattern)", p.Type)
}

func parseMerges(raw json.RawMessage, vocab map[string]int32) ([][3]int32, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("model.merges: %v", err)
	}
	out := make([][3]int32, 0, len(items))
	for i, it := range items {
		var a, b string
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			var ok bool
			a, b, ok = strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("model.merges[%d]: %q is not two tokens separated by a space", i, s)
			}
		} else {
			var p []string
			if err := json.Unmarshal(it, &p); err != nil || len(p) != 2 {
				return nil, fmt.Errorf("model.merges[%d]: neither \"a b\" nor [a, b]", i)
			}
			a, b = p[0], p[1]
		}
		m, err := mergeIDs(vocab, a, b)
		if err != nil {
			return nil, fmt.Errorf("model.merges[%d]: %v", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func mergeIDs(vocab map[string]int32, a, b string) ([3]int32, error) {
	ia, ok := vocab[a]
	if !ok {
		return [3]int32{}, fmt.Errorf("token %q is not in the vocabulary", a)
	}
	ib, ok := vocab[b]
	if !ok {
		return [3]int32{}, fmt.Errorf("token %q is not in the vocabulary", b)
	}
	ic, ok := vocab[a+b]
	if !ok {
		return [3]int32{}, fmt.Errorf("merged token %q is not in the vocabulary", a+b)
	}
	return [3]int32{ia, ib, ic}, nil
}

func (t *Tokenizer) parsePost(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	t.post.raw = append([]byte(nil), raw...)
	var p typed
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("post_processor: %v", err)
	}
	t.post.kind = p.Type
	pairID := func(v []any, key string) (int32, error) {
		if len(v) != 2 {
			return 0, fmt.Errorf("post_processor.%s: want [token, id]", key)
		}
		f, ok := v[1].(float64)
		if !ok {
			return 0, fmt.Errorf("post_processor.%s: id is not a number", key)
		}
		return int32(f), nil
	}
	switch p.Type {
	case "ByteLevel":
	case "RobertaProcessing", "BertProcessing":
		cls, err := pairID(p.Cls, "cls")
		if err != nil {
			return err
		}
		sep, err := pairID(p.Sep, "sep")
		if err != nil {
			return err
		}
		t.post.prefix, t.post.suffix = []int32{cls}, []int32{sep}
	case "TemplateProcessing":
		seen := false
		for _, piece := range p.Single {
			switch {
			case piece.Sequence != nil:
				seen = true
			case piece.SpecialToken != nil:
				st, ok := p.SpecialTokens[piece.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("post_processor: special token %q of the template is not defined", piece.SpecialToken.ID)
				}
				if seen {
					t.post.suffix = append(t.post.suffix, st.IDs...)
				} else {
					t.post.prefix = append(t.post.prefix, st.IDs...)
				}
			}
		}
	case "Sequence":
		for _, q := range p.Processors {
			var s typed
			if json.Unmarshal(q, &s) == nil && s.Type != "ByteLevel" {
				return fmt.Errorf("post_processor Sequence with %q is not supported", s.Type)
			}
		}
	default:
		return fmt.Errorf("post_processor %q is not supported", p.Type)
	}
	return nil
}

// LoadVocabMerges reads GPT-2's original files: a JSON object token -> id
// (vocab.json, encoder.json) and a merges file with one "a b" pair a line
// (merges.txt, vocab.bpe; a first line starting with "#version" is skipped).
// The token "<|endoftext|>", when present, becomes a special added token, and
// the result encodes as Hugging Face's GPT-2 tokenizer.
func LoadVocabMerges(vocabPath, mergesPath string) (*Tokenizer, error) {
	vb, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer vocabulary %s: %w", vocabPath, err)
	}
	var vocab map[string]int32
	if err := json.Unmarshal(vb, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer vocabulary %s: %v", vocabPath, err)
	}
	f, err := os.Open(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer merges %s: %w", mergesPath, err)
	}
	defer f.Close()
	var merges [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if (line == 1 && strings.HasPrefix(s, "#version")) || s == "" {
			continue
		}
		a, b, ok := strings.Cut(s, " ")
		if !ok {
			return nil, fmt.Errorf("tokenizer merges %s:%d: %q is not two tokens separated by a space", mergesPath, line, s)
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer merges %s: %w", mergesPath, err)
	}
	var added []AddedToken
	if id, ok := vocab["<|endoftext|>"]; ok {
		added = append(added, AddedToken{ID: id, Content: "<|endoftext|>", Normalized: true, Special: true})
	}
	t, err := New(vocab, merges, added)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", vocabPath, err)
	}
	return t, nil
}

// New builds a byte-level BPE tokenizer (GPT-2 pre-tokenizer without prefix
// space) from a vocabulary, merges in rank order and added tokens.
func New(vocab map[string]int32, merges [][2]string, added []AddedToken) (*Tokenizer, error) {
	n := int32(0)
	for _, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("vocabulary: negative id %d", id)
		}
		if id+1 > n {
			n = id + 1
		}
	}
	for _, a := range added {
		if a.ID+1 > n {
			n = a.ID + 1
		}
	}
	t := &Tokenizer{vocab: make(map[string]int32, len(vocab)), tokens: make([]string, n)}
	for s, id := range vocab {
		if t.tokens[id] != "" {
			return nil, fmt.Errorf("vocabulary: id %d is given to both %q and %q", id, t.tokens[id], s)
		}
		t.tokens[id] = s
		t.vocab[s] = id
	}
	for _, a := range added {
		t.tokens[a.ID] = a.Content
		t.vocab[a.Content] = a.ID
	}
	t.added = append(t.added, added...)
	sort.SliceStable(t.added, func(i, j int) bool { return t.added[i].ID < t.added[j].ID })
	for i, m := range merges {
		ids, err := mergeIDs(t.vocab, m[0], m[1])
		if err != nil {
			return nil, fmt.Errorf("merge %d (%q %q): %v", i+1, m[0], m[1], err)
		}
		t.mergeList = append(t.mergeList, ids)
	}
	t.post.kind = "ByteLevel"
	if err := t.build(); err != nil {
		return nil, err
	}
	return t, nil
}
