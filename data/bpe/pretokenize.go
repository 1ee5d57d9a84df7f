package bpe

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of GPT-2's pre-tokenizer pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// as Hugging Face tokenizers evaluates it (Oniguruma, Unicode classes; \s is
// the Unicode White_Space property).
const (
	clsOther = iota
	clsLetter
	clsNumber
	clsSpace
)

var asciiClass [128]uint8

func init() {
	for c := 0; c < 128; c++ {
		r := rune(c)
		switch {
		case unicode.IsSpace(r):
			asciiClass[c] = clsSpace
		case unicode.IsLetter(r):
			asciiClass[c] = clsLetter
		case unicode.IsNumber(r):
			asciiClass[c] = clsNumber
		default:
			asciiClass[c] = clsOther
		}
	}
}

func classOf(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	// Code points classified differently by Hugging Face's (newer) Unicode tables.
	if lo, hi := 0, len(classOverrides); r >= classOverrides[0].lo {
		for lo < hi {
			m := (lo + hi) / 2
			switch c := classOverrides[m]; {
			case r < c.lo:
				hi = m
			case r > c.hi:
				lo = m + 1
			default:
				return c.class
			}
		}
	}
	return baseClass(r)
}

type classRange struct {
	lo, hi rune
	class  uint8
}

// baseClass is the class by Go's unicode package.
func baseClass(r rune) uint8 {
	switch {
	case unicode.IsSpace(r):
		return clsSpace
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	}
	return clsOther
}

// decodeAt returns the rune at s[i] and its length; invalid UTF-8 bytes are
// treated as one-byte "other" characters.
func decodeAt(s string, i int) (rune, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// runEnd returns the end of the run of characters of class cls starting at i.
func runEnd(s string, i int, cls uint8) int {
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if asciiClass[c] != cls {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if classOf(r) != cls {
			return i
		}
		i += n
	}
	return i
}

// splitGPT2 calls emit with the end of each piece of s, in order, as GPT-2's
// pre-tokenizer pattern splits it. Pieces are contiguous and cover s.
func splitGPT2(s string, emit func(start, end int)) {
	i := 0
	for i < len(s) {
		r, n := decodeAt(s, i)
		if r == '\'' && i+1 < len(s) {
			if l := contraction(s[i+1:]); l > 0 {
				emit(i, i+1+l)
				i += 1 + l
				continue
			}
		}
		j, cls := i, classOf(r)
		if r == ' ' && i+1 < len(s) {
			r2, _ := decodeAt(s, i+1)
			if c2 := classOf(r2); c2 != clsSpace {
				j, cls = i+1, c2
			}
		}
		if cls != clsSpace {
			end := runEnd(s, j+sizeAt(s, j, r, n, i), cls)
			emit(i, end)
			i = end
			continue
		}
		end := runEnd(s, i+n, clsSpace)
		if end < len(s) && end-i > n {
			// \s+(?!\S): leave the last whitespace character for the next piece.
			_, last := utf8.DecodeLastRuneInString(s[i:end])
			if end-last > i {
				end -= last
			}
		}
		emit(i, end)
		i = end
	}
}

// sizeAt returns the length of the character at j, reusing the one already
// decoded at i.
func sizeAt(s string, j int, r rune, n, i int) int {
	if j == i {
		return n
	}
	_, m := decodeAt(s, j)
	return m
}

// contraction returns the length of the contraction suffix ('s 't 're 've 'm
// 'll 'd) that starts s, or 0.
func contraction(s string) int {
	switch s[0] {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) > 1 && s[1] == 'e' {
			return 2
		}
	case 'l':
		if len(s) > 1 && s[1] == 'l' {
			return 2
		}
	}
	return 0
}
