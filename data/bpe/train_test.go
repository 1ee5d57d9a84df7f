package bpe

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// countWords counts the pieces of files on all cores.
func countWords(tb testing.TB, files []string) WordCounts {
	tb.Helper()
	n := runtime.GOMAXPROCS(0)
	parts := make([]WordCounts, n)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		parts[w] = WordCounts{}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(files); i += n {
				b, err := os.ReadFile(files[i])
				if err != nil {
					panic(err)
				}
				parts[w].Add(string(b))
			}
		}(w)
	}
	wg.Wait()
	for _, p := range parts[1:] {
		parts[0].Merge(p)
	}
	return parts[0]
}

// TestTrainParity trains on the same corpus as Hugging Face
// (train_new_from_iterator on GPT-2, vocabulary trainVocab) and compares the
// vocabulary and every merge, then has Hugging Face load our tokenizer.json
// and encode the corpus.
func TestTrainParity(t *testing.T) {
	hfPath := hfTrainedTokenizer(t)
	hf, err := LoadFile(hfPath)
	if err != nil {
		t.Fatal(err)
	}
	files := trainCorpus(t)
	start := time.Now()
	wc := countWords(t, files)
	ours, err := Train(wc, TrainOptions{VocabSize: trainVocab})
	if err != nil {
		t.Fatal(err)
	}
	goSec := time.Since(start).Seconds()
	hm, om := hf.Merges(), ours.Merges()
	same := 0
	for i := 0; i < len(hm) && i < len(om); i++ {
		if hm[i] == om[i] {
			same++
		} else if i-same < 5 {
			t.Errorf("merge %d: ours %q, HF %q", i, om[i], hm[i])
		}
	}
	vocabSame := 0
	for id := int32(0); int(id) < hf.VocabSize(); id++ {
		if hf.Token(id) == ours.Token(id) {
			vocabSame++
		}
	}
	msg := fmt.Sprintf("%d files, %.1f MB, vocab %d: merges identical %d/%d (ours %d), vocabulary ids identical %d/%d; training %.1fs Go vs %.1fs HF",
		len(files), float64(hfTrained.timing.Bytes)/1e6, trainVocab, same, len(hm), len(om), vocabSame, hf.VocabSize(), goSec, hfTrained.timing.Seconds)
	t.Log(msg)
	fmt.Println("TRAIN PARITY", msg)
	if same != len(hm) || len(hm) != len(om) || vocabSame != hf.VocabSize() || ours.VocabSize() != hf.VocabSize() {
		t.Fatalf("trained tokenizer differs from Hugging Face's")
	}
	// HF loads our file and encodes as we do.
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := ours.Save(path); err != nil {
		t.Fatal(err)
	}
	want, _ := hfEncode(t, path, files)
	got := encodeAll(t, ours, files)
	ok := 0
	for i := range files {
		if slices.Equal(got[i], want[i]) {
			ok++
		}
	}
	t.Logf("HF loading our tokenizer.json: ids identical for %d/%d files", ok, len(files))
	if ok != len(files) {
		t.Fatalf("HF encodes %d files differently with our tokenizer.json", len(files)-ok)
	}
	// And we load it back identically.
	back, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Merges(), ours.Merges()) || back.VocabSize() != ours.VocabSize() {
		t.Fatal("tokenizer.json does not load back to the same tokenizer")
	}
}
