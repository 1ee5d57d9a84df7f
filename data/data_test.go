package data

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"clm/data/bpe"
	"clm/data/corpus"
	"clm/internal/testkit/pyref"
)

// TestChunkingParity: for 200 standard library documents, our chunks equal
// transformers' tokenizer(..., truncation=True, max_length=128,
// return_overflowing_tokens=True) filtered to full-length chunks.
func TestChunkingParity(t *testing.T) {
	py := pyref.Require(t)
	gpt2 := filepath.Dir(pyref.RequireAsset(t, "gpt2/vocab.bpe"))
	out, err := exec.Command(py, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, files, err := corpus.Source{Kind: corpus.KindDir, Path: strings.TrimSpace(string(out))}.Files()
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for i := 0; i < len(files) && len(docs) < 200; i += 7 {
		if b, err := os.ReadFile(files[i]); err == nil && len(b) > 0 && utf8.Valid(b) && !strings.Contains(files[i], "/site-packages/") {
			docs = append(docs, files[i])
		}
	}
	dir := t.TempDir()
	list := filepath.Join(dir, "files.txt")
	os.WriteFile(list, []byte(strings.Join(docs, "\n")+"\n"), 0o644)
	bin := filepath.Join(dir, "chunks.bin")
	pyref.Run(t, "tokenizer_chunks.py", "gpt2:"+gpt2, list, "128", bin)
	want := readSeqs(t, bin)
	tok, err := bpe.Load(gpt2)
	if err != nil {
		t.Fatal(err)
	}
	same, chunks := 0, 0
	for i, f := range docs {
		b, _ := os.ReadFile(f)
		got := FullChunks(tok.Encode(string(b)), 128)
		chunks += len(got) / 128
		if slices.Equal(got, want[i]) {
			same++
		} else {
			t.Errorf("%s: %d chunks, HF %d", f, len(got)/128, len(want[i])/128)
		}
	}
	t.Logf("chunking parity: %d/%d documents, %d chunks of 128 identical to transformers", same, len(docs), chunks)
	fmt.Printf("CHUNK PARITY %d/%d documents, %d chunks\n", same, len(docs), chunks)
}

func readSeqs(t *testing.T, path string) [][]int32 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]int32
	for len(b) > 0 {
		n := int(binary.LittleEndian.Uint32(b))
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(binary.LittleEndian.Uint32(b[4+4*i:]))
		}
		b = b[4+4*n:]
		out = append(out, ids)
	}
	return out
}

// testCorpus writes a small synthetic code corpus and trains a tokenizer on
// it, so that the cache tests need nothing outside the repository.
func testCorpus(t *testing.T, vocab int) (dir, tokPath string) {
	t.Helper()
	dir = t.TempDir()
	src := filepath.Join(dir, "src")
	wc := bpe.WordCounts{}
	for i := 0; i < 120; i++ {
		var b strings.Builder
		for j := 0; j < 5+i%40; j++ {
			fmt.Fprintf(&b, "def f%d_%d(x, y=%d):\n    return x * %d + y  # note %d\n", i, j, j, i+j, i*j)
		}
		p := filepath.Join(src, fmt.Sprintf("pkg%d", i%3), fmt.Sprintf("m%03d.py", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(b.String()), 0o644)
		wc.Add(b.String())
	}
	tok, err := bpe.Train(wc, bpe.TrainOptions{VocabSize: vocab})
	if err != nil {
		t.Fatal(err)
	}
	tokPath = filepath.Join(dir, fmt.Sprintf("tok%d.json", vocab))
	if err := tok.Save(tokPath); err != nil {
		t.Fatal(err)
	}
	return src, tokPath
}

func testOptions(src, tok, cache string, log *bytes.Buffer) Options {
	return Options{
		Train: corpus.Source{Kind: corpus.KindDir, Path: src}, Tokenizer: tok, CacheDir: cache,
		ContextLength: 32, NumTokenMult: 0.001, ValidDocs: 2000, ValidFraction: 0.1, Seed: 3,
		Progress: NopProgress{}, Log: log,
	}
}

func allChunks(c *Chunks) []int32 {
	var out []int32
	for i := 0; i < c.Len(); i++ {
		out = append(out, c.Chunk(i, nil)...)
	}
	return out
}

// TestCache: built once, reused; a corrupted or truncated shard is detected
// and rebuilt; a changed tokenizer or setting invalidates the cache.
func TestCache(t *testing.T) {
	src, tok := testCorpus(t, 400)
	cache := filepath.Join(t.TempDir(), "cache")
	var log bytes.Buffer
	o := testOptions(src, tok, cache, &log)
	ds, err := Prepare(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s%s", ds.Summary(), log.String())
	if ds.Manifest.Splits["train"].Documents != 100 || ds.Train.Len() == 0 || ds.Valid.Len() == 0 {
		t.Fatalf("unexpected selection:\n%s", ds.Summary())
	}
	if !strings.Contains(log.String(), "only") {
		t.Errorf("no warning for too few validation documents: %q", log.String())
	}
	train, valid := allChunks(ds.Train), allChunks(ds.Valid)
	ds.Close()

	step := func(name string, change func(o *Options), damage func(), wantMsg string) {
		t.Helper()
		log.Reset()
		if change != nil {
			change(&o)
		}
		o2 := o
		if damage != nil {
			damage()
		}
		ds, err := Prepare(context.Background(), o2)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer ds.Close()
		msg := strings.TrimSpace(log.String())
		t.Logf("%s: %q", name, msg)
		if wantMsg == "" && strings.Contains(msg, "building") || wantMsg != "" && !strings.Contains(msg, wantMsg) {
			t.Errorf("%s: message %q, want %q", name, msg, wantMsg)
		}
		if change == nil && (!slices.Equal(allChunks(ds.Train), train) || !slices.Equal(allChunks(ds.Valid), valid)) {
			t.Errorf("%s: chunks differ after rebuild", name)
		}
	}
	shard := filepath.Join(cache, "train-00000.bin")
	step("reuse", nil, nil, "")
	step("corrupt", nil, func() {
		b, _ := os.ReadFile(shard)
		b[len(b)/2] ^= 1
		os.WriteFile(shard, b, 0o644)
	}, "corrupt shard")
	step("truncated", nil, func() {
		b, _ := os.ReadFile(shard)
		os.WriteFile(shard, b[:len(b)-7], 0o644)
	}, "truncated shard")
	step("missing", nil, func() { os.Remove(shard) }, "misses shard")
	_, tok2 := testCorpus(t, 300)
	step("tokenizer", func(o *Options) { o.Tokenizer = tok2 }, nil, "another tokenizer")
	step("seed", func(o *Options) { o.Seed = 4 }, nil, "other settings")
	step("corpus", func(*Options) {
		os.WriteFile(filepath.Join(src, "new.py"), []byte("x = 1\n"), 0o644)
	}, nil, "corpus that has changed")
}

// TestBatcherResume: batches are deterministic, and a restored cursor
// continues the exact sequence, across epochs.
func TestBatcherResume(t *testing.T) {
	var toks []int32
	for i := 0; i < 37*4; i++ {
		toks = append(toks, int32(i))
	}
	c := memChunks(toks, 4)
	a, err := NewBatcher(c, 5, 9)
	if err != nil {
		t.Fatal(err)
	}
	var seq [][][]int32
	var states []BatcherState
	for i := 0; i < 30; i++ {
		states = append(states, a.State())
		seq = append(seq, a.Next())
	}
	if a.Epoch() != 4 {
		t.Errorf("epoch %d after 30 batches of 5 from 37 chunks, want 4", a.Epoch())
	}
	for _, k := range []int{0, 6, 7, 8, 19, 29} {
		b, _ := NewBatcher(c, 5, 9)
		if err := b.Restore(states[k]); err != nil {
			t.Fatal(err)
		}
		for i := k; i < 30; i++ {
			if got := b.Next(); !equalBatch(got, seq[i]) {
				t.Fatalf("resume at %d: batch %d differs", k, i)
			}
		}
	}
	// Each epoch is a permutation without repeats.
	seen := map[int32]bool{}
	for _, batch := range seq[:7] {
		for _, row := range batch {
			if seen[row[0]] {
				t.Fatalf("chunk %d twice in an epoch", row[0]/4)
			}
			seen[row[0]] = true
		}
	}
	other, _ := NewBatcher(c, 5, 10)
	if equalBatch(other.Next(), seq[0]) {
		t.Error("seed does not change the order")
	}
	bad := states[3]
	bad.BatchSize = 4
	if err := other.Restore(bad); err == nil {
		t.Error("restore accepted a state of another batch size")
	}
}

func equalBatch(a, b [][]int32) bool {
	return slices.EqualFunc(a, b, func(x, y []int32) bool { return slices.Equal(x, y) })
}

// TestHashSplitShare: the validation share of a hash split is what was asked
// for, also for rows of one dataset file, whose names differ only at the end.
func TestHashSplitShare(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format string
	}{{"rows of shards", "data/train-%05d-of-00008.parquet#%d"}, {"source files", "lib/%d/module_%d.py"}} {
		for _, frac := range []float64{0.01, 0.05, 0.3} {
			n, in := 20000, 0
			for i := 0; i < n; i++ {
				if hashValid(fmt.Sprintf(tc.format, i/2500, i%2500), frac) {
					in++
				}
			}
			if got := float64(in) / float64(n); math.Abs(got-frac) > 0.15*frac+0.002 {
				t.Errorf("%s, fraction %g: %.4f of documents held out", tc.name, frac, got)
			}
		}
	}
}
