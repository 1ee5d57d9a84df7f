package bpe

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"clm/internal/testkit/pyref"
)

// TestPreTokenizeUnicode compares our split with Hugging Face's on every
// Unicode code point in letter, number, punctuation and whitespace contexts.
func TestPreTokenizeUnicode(t *testing.T) {
	pyref.Require(t)
	var b strings.Builder
	for cp := rune(0); cp <= 0x10FFFF; cp++ {
		if (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x40000 && cp%61 != 0) {
			continue
		}
		c := string(cp)
		if cp == 0 {
			c = "\x01"
		}
		fmt.Fprintf(&b, "a%s1%s!%s %s%s'%s\n", c, c, c, c, c, c)
	}
	b.WriteString("it's   they're  \t\n x  'll 'LL ''s 12ab  \n\n  end  ")
	text := b.String()
	path := filepath.Join(t.TempDir(), "text.txt")
	os.WriteFile(path, []byte(text), 0o644)
	var want []string
	if err := json.Unmarshal(pyref.Run(t, "tokenizer_pretok.py", path), &want); err != nil {
		t.Fatal(err)
	}
	var got []string
	splitGPT2(text, func(s, e int) { got = append(got, ByteLevelString([]byte(text[s:e]))) })
	diffs := 0
	i := 0
	for ; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			diffs++
			if diffs <= 5 {
				t.Errorf("piece %d: ours %q, HF %q", i, got[i], want[i])
			}
			break
		}
	}
	t.Logf("%d code points in context, %d pieces: ours %d, identical prefix %d", utf8.RuneCountInString(text), len(want), len(got), i)
	if len(got) != len(want) || diffs > 0 {
		t.Fatalf("split differs from Hugging Face's")
	}
}

// TestEncodeBasics checks a few hand-made cases with a tiny vocabulary:
// leftmost-first merging of repeated pairs, added tokens, round trips.
func TestEncodeBasics(t *testing.T) {
	wc := WordCounts{}
	wc.Add("aaaa aaa ab abab hello hello world  \n\n  x")
	tok, err := Train(wc, TrainOptions{VocabSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "aaaaa", "x<|endoftext|>y", "<|endoftext|><|endoftext|>", "héllo\r\n\t wörld 🙂", strings.Repeat("ab", 500), strings.Repeat(" ", 300) + "x"} {
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Errorf("round trip %q -> %v -> %q", s, ids, got)
		}
	}
	ids := tok.Encode("x<|endoftext|>y")
	if len(ids) != 3 || ids[1] != 0 {
		t.Errorf("added token not split out: %v", ids)
	}
	// Long pieces (heap path) and short pieces (scan path) agree.
	e := tok.NewEncoder()
	for _, s := range []string{strings.Repeat("a", 200), strings.Repeat("ab", 99) + "a", strings.Repeat("hello", 30)} {
		long := append([]int32(nil), e.mergeLong(e.bytesOf(s))...)
		short := tok.mergeShort(e.bytesOf(s))
		if fmt.Sprint(long) != fmt.Sprint(short) {
			t.Errorf("%q: heap %v, scan %v", s[:10], long, short)
		}
	}
}

func (e *Encoder) bytesOf(s string) []int32 {
	out := make([]int32, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = e.t.byteID[s[i]]
	}
	return out
}

// TestLoadErrors: malformed tokenizer files give one clear error.
func TestLoadErrors(t *testing.T) {
	cases := map[string]string{
		`{`:                              "not a tokenizer.json",
		`{}`:                             `no "model" section`,
		`{"model":{"type":"WordPiece"}}`: `model.type "WordPiece"`,
		`{"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"ByteLevel"}}`:                        "lacks the byte-level character",
		`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a"]},"pre_tokenizer":{"type":"ByteLevel"}}`:         `model.merges[0]`,
		`{"model":{"type":"BPE","vocab":{}},"pre_tokenizer":{"type":"Whitespace"}}`:                            `pre_tokenizer "Whitespace"`,
		`{"model":{"type":"BPE","vocab":{}},"normalizer":{"type":"NFC"},"pre_tokenizer":{"type":"ByteLevel"}}`: `normalizer "NFC"`,
		`{"model":{"type":"BPE","vocab":{"a":0,"b":0}},"pre_tokenizer":{"type":"ByteLevel"}}`:                  "is given to both",
		`{"model":{"type":"BPE","vocab":{"a":-1}},"pre_tokenizer":{"type":"ByteLevel"}}`:                       "negative id",
		`{"model":{"type":"BPE","vocab":{"":0,"a":1}},"pre_tokenizer":{"type":"ByteLevel"}}`:                   "the empty string, which is not a token",
		`{"model":{"type":"BPE","vocab":{}},"pre_tokenizer":null}`:                                             "pre_tokenizer is null",
		`{"model":{"type":"BPE","vocab":{"a":99999999}},"pre_tokenizer":{"type":"ByteLevel"}}`:                 "too large",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want error containing %q", in, err, want)
		}
	}
}
