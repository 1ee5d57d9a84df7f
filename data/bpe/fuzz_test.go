package bpe

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

var fuzzTok struct {
	once sync.Once
	tok  *Tokenizer
	json []byte
}

// smallTokenizer is a tokenizer trained on a fixed snippet of code, so that
// the fuzz targets need nothing outside the repository.
func smallTokenizer(tb testing.TB) (*Tokenizer, []byte) {
	fuzzTok.once.Do(func() {
		wc := WordCounts{}
		wc.Add(strings.Repeat("def f(x):\n    return x + 1  # ok\n\tif a == b: pass\nclass C: 'doc' \"s\" 123 4.5 üñí 日本\n", 3))
		t, err := Train(wc, TrainOptions{VocabSize: 330})
		if err != nil {
			panic(err)
		}
		j, err := t.MarshalJSON()
		if err != nil {
			panic(err)
		}
		fuzzTok.tok, fuzzTok.json = t, j
	})
	return fuzzTok.tok, fuzzTok.json
}

// FuzzLoad: the tokenizer.json loader never panics; what it accepts encodes
// and decodes without panicking, and round-trips through MarshalJSON.
func FuzzLoad(f *testing.F) {
	_, j := smallTokenizer(f)
	f.Add(j)
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}`))
	f.Add([]byte(`{"added_tokens":[{"id":0,"content":"<s>"}],"model":{"vocab":{"a":1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		ids := tok.Encode("def f(x): return x <|endoftext|> é")
		_ = tok.Decode(ids)
		out, err := tok.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("our own output does not load: %v", err)
		}
		if !slices.Equal(back.Encode("def f(x): return x é"), tok.Encode("def f(x): return x é")) {
			t.Fatal("reloaded tokenizer encodes differently")
		}
	})
}

// FuzzRoundTrip: decode(encode(s)) == s for every UTF-8 string, and the
// heap and scan merge paths agree on every piece.
func FuzzRoundTrip(f *testing.F) {
	tok, _ := smallTokenizer(f)
	for _, s := range []string{"", "def f(x):\n    return x", "  \n\t\t x", "'s 're 'x", "<|endoftext|>", "ü日本 123abc", strings.Repeat("ab", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Fatalf("decode(encode(%q)) = %q", s, got)
		}
		e := tok.NewEncoder()
		splitGPT2(s, func(a, b int) {
			p := s[a:b]
			long := append([]int32(nil), e.mergeLong(e.bytesOf(p))...)
			if short := tok.mergeShort(e.bytesOf(p)); !slices.Equal(long, short) {
				t.Fatalf("piece %q: heap %v, scan %v", p, long, short)
			}
		})
	})
}
