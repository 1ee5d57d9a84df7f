package bpe

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"clm/internal/testkit/pyref"
)

// BenchmarkEncodeGPT2 measures single-goroutine encode throughput on the Python
// standard library with GPT-2's vocabulary (fresh encoder cache per pass).
func BenchmarkEncodeGPT2(b *testing.B) {
	tok, err := Load(gpt2Dir(b))
	if err != nil {
		b.Fatal(err)
	}
	files, _, size := corpusFiles(b, "stdlib")
	texts := readTexts(b, files)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc := tok.NewEncoder()
		for _, s := range texts {
			enc.Encode(s)
		}
	}
}

func readTexts(tb testing.TB, files []string) []string {
	texts := make([]string, len(files))
	for i, f := range files {
		bs, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		texts[i] = string(bs)
	}
	return texts
}

// goEncodeMBps encodes texts with workers goroutines (fresh caches), best of 3.
func goEncodeMBps(tok *Tokenizer, texts []string, size int64, workers int) float64 {
	best := 0.0
	for r := 0; r < 3; r++ {
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				enc := tok.NewEncoder()
				for i := w; i < len(texts); i += workers {
					enc.Encode(texts[i])
				}
			}()
		}
		wg.Wait()
		best = max(best, float64(size)/time.Since(start).Seconds()/1e6)
	}
	return best
}

// BenchmarkVsHF is the benchmark report of the tokenizer (run once:
// go test ./data/bpe -run '^$' -bench VsHF -benchtime 1x): encode throughput
// per core and on all cores, ours vs Hugging Face tokenizers (Python,
// encode_batch) on the Python standard library with GPT-2's vocabulary, and
// the time to train 52000 merges on the default corpus (the standard
// library), ours vs transformers' train_new_from_iterator, with the merges
// compared.
func BenchmarkVsHF(b *testing.B) {
	dir := gpt2Dir(b)
	tok, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	files, _, size := corpusFiles(b, "stdlib")
	texts := readTexts(b, files)
	n := runtime.GOMAXPROCS(0)
	go1, goN := goEncodeMBps(tok, texts, size, 1), goEncodeMBps(tok, texts, size, n)
	list := writeList(b, files)
	hf := func(env ...string) pyTiming {
		out := filepath.Join(b.TempDir(), "ids.bin")
		stdout := pyref.RunEnv(b, env, "tokenizer_encode.py", "gpt2:"+dir, list, out, "--repeat", "3")
		var tm pyTiming
		if err := json.Unmarshal(lastLine(stdout), &tm); err != nil {
			b.Fatal(err)
		}
		return tm
	}
	hf1, hfN := hf("RAYON_NUM_THREADS=1"), hf()
	report := fmt.Sprintf("encode, GPT-2 vocabulary, Python stdlib (%d files, %.1f MB), %d cores:\n"+
		"  ours: %.1f MB/s per core, %.1f MB/s on all cores\n  HF tokenizers %s: %.1f MB/s per core, %.1f MB/s on all cores\n",
		len(files), float64(size)/1e6, n, go1, goN, hfVersion(b), hf1.MBPerS, hfN.MBPerS)

	// Training: 52000 on the whole default corpus.
	start := time.Now()
	wc := countWords(b, files)
	ours, err := Train(wc, TrainOptions{VocabSize: 52000})
	if err != nil {
		b.Fatal(err)
	}
	goSec := time.Since(start).Seconds()
	out := filepath.Join(b.TempDir(), "hf.json")
	stdout := pyref.Run(b, "tokenizer_train.py", dir, list, out, "52000")
	var tm hfTrainTiming
	if err := json.Unmarshal(lastLine(stdout), &tm); err != nil {
		b.Fatal(err)
	}
	theirs, err := LoadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	same := 0
	hm, om := theirs.Merges(), ours.Merges()
	for i := range min(len(hm), len(om)) {
		if hm[i] != om[i] {
			break
		}
		same++
	}
	report += fmt.Sprintf("train 52000 (%d merges) on the same files: ours %.1fs (counting included), HF %.1fs; merges identical %d/%d, vocabulary equal %v\n",
		len(om), goSec, tm.Seconds, same, len(hm), slices.Equal(hm, om) && ours.VocabSize() == theirs.VocabSize())
	fmt.Print(report)
	b.ReportMetric(go1, "MB/s/core")
	b.ReportMetric(hf1.MBPerS, "HF-MB/s/core")
}

func hfVersion(testing.TB) string {
	return "(Python, encode_batch_fast)"
}
