package data

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"clm/data/bpe"
	"clm/data/corpus"
)

// CountWords counts the pre-tokenized pieces of a corpus on all cores: the
// input of bpe.Train.
func CountWords(ctx context.Context, s corpus.Source) (bpe.WordCounts, corpus.Stats, error) {
	n := runtime.GOMAXPROCS(0)
	texts := make(chan string, 4*n)
	parts := make([]bpe.WordCounts, n)
	var wg sync.WaitGroup
	for w := range parts {
		parts[w] = bpe.WordCounts{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range texts {
				parts[w].Add(t)
			}
		}()
	}
	st, err := s.Walk(ctx, func(d corpus.Document) error {
		texts <- d.Text
		return nil
	})
	close(texts)
	wg.Wait()
	if err != nil {
		return nil, st, err
	}
	for _, p := range parts[1:] {
		parts[0].Merge(p)
	}
	return parts[0], st, nil
}

// TrainTokenizer trains a byte-level BPE with HF's BpeTrainer semantics on
// corpus s with o's vocabulary size, minimum frequency and special tokens
// (nil: <|endoftext|>, as GPT-2; empty: none), reporting merges to
// progress (o.Progress is its own) and one-line messages to log.
func TrainTokenizer(ctx context.Context, s corpus.Source, o bpe.TrainOptions, progress Progress, log io.Writer) (*bpe.Tokenizer, error) {
	if progress == nil {
		progress = NopProgress{}
	}
	if log == nil {
		log = io.Discard
	}
	start := time.Now()
	wc, st, err := CountWords(ctx, s)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "tokenizer: %s: %s; %d distinct pieces (%.1fs)\n", s, st.String(), len(wc), time.Since(start).Seconds())
	if o.SpecialTokens == nil {
		o.SpecialTokens = []string{"<|endoftext|>"}
	}
	progress.Start("tokenizer merges", int64(o.VocabSize))
	last := 0
	o.Progress = func(v, _ int) { progress.Add(int64(v - last)); last = v }
	tok, err := bpe.Train(wc, o)
	progress.Finish()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "tokenizer: vocabulary %d trained in %.1fs\n", tok.VocabSize(), time.Since(start).Seconds())
	return tok, nil
}

// CachedTokenizer returns the path of a tokenizer trained on s with vocab
// entries, training and caching it under $CLM_CACHE/tokenizers first when
// it is missing.
func CachedTokenizer(ctx context.Context, s corpus.Source, vocab int, progress Progress, log io.Writer) (string, error) {
	s, err := s.Normalize()
	if err != nil {
		return "", err
	}
	root, err := CacheRoot()
	if err != nil {
		return "", err
	}
	key, _ := json.Marshal(struct {
		Source corpus.Source
		Vocab  int
	}{s, vocab})
	sum := sha256.Sum256(key)
	path := filepath.Join(root, "tokenizers", fmt.Sprintf("%s-%d-%s.json", s.Kind, vocab, hex.EncodeToString(sum[:6])))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if log != nil {
		fmt.Fprintf(log, "tokenizer: none given; training one with %d entries on %s (cached in %s)\n", vocab, s, path)
	}
	tok, err := TrainTokenizer(ctx, s, bpe.TrainOptions{VocabSize: vocab}, progress, log)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := tok.Save(path); err != nil {
		return "", err
	}
	return path, nil
}
