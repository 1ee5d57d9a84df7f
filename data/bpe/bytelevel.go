package bpe

// GPT-2's byte-level alphabet: every byte is shown as one printable Unicode
// character, so that a byte string is a valid, whitespace-free Unicode string.
// Printable Latin-1 bytes stand for themselves; the other 68 bytes are mapped,
// in increasing order, to U+0100, U+0101, ...

// byteRune maps a byte to its byte-level character.
var byteRune [256]rune

// runeByte maps a byte-level character back to its byte (-1: not one).
var runeByte = map[rune]byte{}

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteRune[b] = rune(b)
		} else {
			byteRune[b] = rune(256 + n)
			n++
		}
		runeByte[byteRune[b]] = byte(b)
	}
}

// ByteLevelString returns the byte-level form of raw bytes, as stored in a
// byte-level BPE vocabulary.
func ByteLevelString(raw []byte) string {
	out := make([]rune, len(raw))
	for i, b := range raw {
		out[i] = byteRune[b]
	}
	return string(out)
}

// ByteLevelBytes inverts ByteLevelString. ok is false when s holds a character
// outside the byte-level alphabet.
func ByteLevelBytes(s string) (raw []byte, ok bool) {
	raw = make([]byte, 0, len(s))
	for _, r := range s {
		b, found := runeByte[r]
		if !found {
			return raw, false
		}
		raw = append(raw, b)
	}
	return raw, true
}

// Alphabet returns the 256 byte-level characters sorted by code point, the
// order in which Hugging Face's BpeTrainer assigns them ids.
func Alphabet() []rune {
	out := make([]rune, 0, 256)
	for cp := rune(0); cp < 512; cp++ {
		if _, ok := runeByte[cp]; ok {
			out = append(out, cp)
		}
	}
	return out
}
