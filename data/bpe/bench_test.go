package bpe

import (
	"os"
	"testing"
)

// BenchmarkEncodeGPT2 measures single-goroutine encode throughput on the Python
// standard library with GPT-2's vocabulary (fresh encoder cache per pass).
func BenchmarkEncodeGPT2(b *testing.B) {
	tok, err := Load(gpt2Dir(b))
	if err != nil {
		b.Fatal(err)
	}
	files, _, size := corpusFiles(b, "stdlib")
	texts := make([]string, len(files))
	for i, f := range files {
		bs, _ := os.ReadFile(f)
		texts[i] = string(bs)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc := tok.NewEncoder()
		for _, s := range texts {
			enc.Encode(s)
		}
	}
}
