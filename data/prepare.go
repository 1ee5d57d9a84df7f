package data

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"clm/data/bpe"
	"clm/data/corpus"
	"clm/data/nprand"
	"clm/hub"
	"clm/internal/atomicfile"
	"clm/internal/jsondiff"
)

// Options select, tokenize and cache a corpus.
type Options struct {
	// Train is the corpus (default: the local Python standard library).
	Train corpus.Source `json:"train"`
	// Valid, when set, is a separate validation corpus (as CodeParrot's
	// -valid dataset); otherwise documents are split from Train by a hash of
	// their names (ValidFraction of them go to validation).
	Valid *corpus.Source `json:"valid,omitempty"`
	// Tokenizer is the path of the tokenizer (see bpe.Load).
	Tokenizer string `json:"-"`
	// ContextLength is the chunk length in tokens (default 128).
	ContextLength int `json:"context_length"`
	// NumTokenMult selects NumTokenMult x 100000 training documents (default 1;
	// all documents, with a warning, when there are fewer).
	NumTokenMult float64 `json:"num_token_mult"`
	// ValidDocs is the number of validation documents (default 2000).
	ValidDocs int `json:"valid_docs"`
	// ValidFraction is the share of Train documents held out for validation
	// when Valid is nil (default 0.05).
	ValidFraction float64 `json:"valid_fraction"`
	// Seed of the document shuffle (default 0).
	Seed int64 `json:"seed"`
	// CacheDir holds the token cache (default: a folder of $CLM_CACHE/data,
	// or of the user cache directory, named after the settings and the
	// tokenizer's content; the least recently used beyond
	// CLM_TOKEN_CACHE_LIMIT are removed).
	CacheDir string `json:"-"`
	// Workers tokenizing in parallel (default: all cores).
	Workers int `json:"-"`
	// Progress reports long steps (default: DefaultProgress(os.Stderr)).
	Progress Progress `json:"-"`
	// Log receives one-line messages (default: os.Stderr).
	Log io.Writer `json:"-"`
	// Hub downloads KindHub sources and hub: tokenizers (default: a client
	// configured from the environment, as huggingface_hub is).
	Hub *hub.Client `json:"-"`
	// Origins records the Hub commits that Resolve used ("train", "valid",
	// "tokenizer").
	Origins map[string]Origin `json:"-"`

	cacheRoot string // the root whose caches share the limit (default CacheDir only)
}

// WithDefaults returns o with defaults filled in.
func (o Options) WithDefaults() (Options, error) {
	var err error
	if o.Train, err = o.Train.Normalize(); err != nil {
		return o, err
	}
	if o.Valid != nil {
		v, err := o.Valid.Normalize()
		if err != nil {
			return o, fmt.Errorf("validation corpus: %w", err)
		}
		o.Valid = &v
	}
	if o.ContextLength == 0 {
		o.ContextLength = 128
	}
	if o.NumTokenMult == 0 {
		o.NumTokenMult = 1
	}
	if o.ValidDocs == 0 {
		o.ValidDocs = 2000
	}
	if o.ValidFraction == 0 {
		o.ValidFraction = 0.05
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Progress == nil {
		o.Progress = DefaultProgress(os.Stderr)
	}
	switch {
	case o.ContextLength < 2:
		return o, fmt.Errorf("context length %d: must be at least 2", o.ContextLength)
	case o.NumTokenMult < 0:
		return o, fmt.Errorf("num_token_mult %g: must be positive", o.NumTokenMult)
	case o.ValidDocs < 0:
		return o, fmt.Errorf("valid_docs %d: must not be negative", o.ValidDocs)
	case o.ValidFraction < 0 || o.ValidFraction >= 1:
		return o, fmt.Errorf("valid_fraction %g: must be in [0, 1)", o.ValidFraction)
	case o.Seed < 0:
		return o, fmt.Errorf("seed %d: must not be negative (NumPy's default_rng refuses it)", o.Seed)
	}
	return o, nil
}

// CacheRoot returns $CLM_CACHE, else <user cache dir>/clm.
func CacheRoot() (string, error) {
	if d := os.Getenv("CLM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: %v (set CLM_CACHE)", err)
	}
	return filepath.Join(d, "clm"), nil
}

// Manifest records what a token cache was built from, and its shards.
type Manifest struct {
	Version          int                       `json:"version"`
	Settings         Options                   `json:"settings"`
	TrainFingerprint string                    `json:"train_fingerprint"`
	ValidFingerprint string                    `json:"valid_fingerprint,omitempty"`
	TokenizerPath    string                    `json:"tokenizer_path"`
	TokenizerSHA256  string                    `json:"tokenizer_sha256"`
	VocabSize        int                       `json:"vocab_size"`
	DType            string                    `json:"dtype"`
	Corpus           corpus.Stats              `json:"corpus"`
	DocumentsSeen    int                       `json:"documents_seen"`
	Splits           map[string]*SplitManifest `json:"splits"`
	// Origins are the Hub commits of the datasets and tokenizer, if any.
	Origins         map[string]Origin `json:"origins,omitempty"`
	Created         string            `json:"created"`
	TokenizeSeconds float64           `json:"tokenize_seconds"`
}

// SplitManifest describes the chunks of one split.
type SplitManifest struct {
	Documents int     `json:"documents"` // documents selected
	Chunked   int     `json:"chunked"`   // documents with at least one full chunk
	Tokens    int64   `json:"tokens"`    // tokens of the selected documents
	Chunks    int     `json:"chunks"`    // full chunks kept
	Shards    []Shard `json:"shards"`
}

// Shard is one file of chunks.
type Shard struct {
	File   string `json:"file"`
	Chunks int    `json:"chunks"`
	Bytes  int64  `json:"bytes"`
	CRC32C string `json:"crc32c"`
}

// manifestVersion 2: documents are selected with NumPy's default_rng
// permutation (the original's Dataset.shuffle), counting skipped rows.
const manifestVersion = 2

// Dataset is a prepared corpus: train and validation chunks from the cache.
type Dataset struct {
	Train, Valid *Chunks
	Manifest     Manifest
	Tokenizer    *bpe.Tokenizer
	Dir          string

	use *useLock // held while the cache is read: no other process removes it
}

// Close releases the mapped shards and the cache.
func (d *Dataset) Close() error {
	defer d.use.release()
	err := d.Train.Close()
	if e := d.Valid.Close(); err == nil {
		err = e
	}
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// resolve downloads what o names on the Hub, fills in o's defaults, loads
// its tokenizer and computes the manifest its token cache must have.
func (o Options) resolve(ctx context.Context) (Options, *bpe.Tokenizer, Manifest, error) {
	o, err := o.WithDefaults()
	if err != nil {
		return o, nil, Manifest{}, err
	}
	if o.Tokenizer == "" {
		return o, nil, Manifest{}, errors.New("no tokenizer given")
	}
	if o, err = Resolve(ctx, o); err != nil {
		return o, nil, Manifest{}, err
	}
	tok, err := bpe.Load(o.Tokenizer)
	if err != nil {
		return o, nil, Manifest{}, err
	}
	want, err := expectedManifest(o, tok)
	if err == nil && o.CacheDir == "" {
		if o.cacheRoot, err = CacheRoot(); err == nil {
			o.CacheDir = filepath.Join(o.cacheRoot, "data", cacheName(o, want.TokenizerSHA256))
		}
	}
	return o, tok, want, err
}

// Prepare returns the dataset of o, from the token cache when it matches o,
// the corpus and the tokenizer, else after building it (with a message).
func Prepare(ctx context.Context, o Options) (*Dataset, error) {
	o, tok, want, err := o.resolve(ctx)
	if err != nil {
		return nil, err
	}
	ds, reason, err := openShared(o.CacheDir, want, tok)
	if ds != nil || err != nil {
		return ds, err
	}
	// Build (or rebuild) it, alone.
	l, ok, err := lockCache(o.CacheDir, true)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("token cache %s %s, and another process reads or builds it now; wait for it to finish and start again", o.CacheDir, orMissing(reason))
	}
	if reason != "" {
		fmt.Fprintf(o.Log, "data: token cache %s %s; rebuilding\n", o.CacheDir, reason)
	} else {
		fmt.Fprintf(o.Log, "data: building token cache %s\n", o.CacheDir)
	}
	err = build(ctx, o, tok, want)
	l.release()
	if err != nil {
		return nil, err
	}
	ds, reason, err = openShared(o.CacheDir, want, tok)
	if err == nil && ds == nil {
		err = fmt.Errorf("token cache %s: %s right after building it", o.CacheDir, reason)
	}
	if err == nil && o.cacheRoot != "" {
		err = o.evict()
	}
	if err != nil && ds != nil {
		ds.Close()
		ds = nil
	}
	return ds, err
}

func orMissing(reason string) string {
	if reason == "" {
		return "does not exist yet"
	}
	return reason
}

// openShared opens the cache at dir (as openCache) holding its use lock
// shared, and records the use.
func openShared(dir string, want Manifest, tok *bpe.Tokenizer) (*Dataset, string, error) {
	l, ok, err := lockCache(dir, false)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", fmt.Errorf("token cache %s is being built by another process; wait for it to finish and start again", dir)
	}
	ds, reason := openCache(dir, want, tok)
	if ds == nil {
		l.release()
		return nil, reason, nil
	}
	ds.use = l
	markUsed(dir)
	return ds, "", nil
}

// evict keeps the token caches under the limit, saying what it removed.
func (o Options) evict() error {
	limit, err := CacheLimit()
	if err != nil {
		return err
	}
	removed, err := evictCaches(o.cacheRoot, o.CacheDir, limit)
	for _, c := range removed {
		fmt.Fprintf(o.Log, "data: token caches over %s: removed %s (%s, last used %s)\n",
			humanBytes(limit), c.Dir, humanBytes(c.Bytes), c.LastUsed.Format("2006-01-02 15:04"))
	}
	return err
}

// humanBytes writes a size in GiB, MiB or bytes.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// expectedManifest is the manifest fields that identify a valid cache.
func expectedManifest(o Options, tok *bpe.Tokenizer) (Manifest, error) {
	m := Manifest{Version: manifestVersion, Settings: o, TokenizerPath: o.Tokenizer, VocabSize: tok.VocabSize(), DType: "uint16",
		Origins: o.Origins}
	if tok.VocabSize() > 1<<16 {
		m.DType = "uint32"
	}
	var err error
	if m.TrainFingerprint, err = o.Train.Fingerprint(); err != nil {
		return m, err
	}
	if o.Valid != nil {
		if m.ValidFingerprint, err = o.Valid.Fingerprint(); err != nil {
			return m, fmt.Errorf("validation corpus: %w", err)
		}
	}
	j, err := tok.MarshalJSON()
	if err != nil {
		return m, err
	}
	sum := sha256.Sum256(j)
	m.TokenizerSHA256 = hex.EncodeToString(sum[:])
	return m, nil
}

func settingsJSON(o Options) string {
	b, _ := json.Marshal(o)
	return string(b)
}

// settingsDiff lists the settings that differ, "key old -> new", in key
// order.
func settingsDiff(a, b Options) string {
	fields, _ := jsondiff.Fields(a, b)
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if !f.InB {
			out = append(out, fmt.Sprintf("%s %s -> unset", f.Key, f.A))
		} else {
			out = append(out, fmt.Sprintf("%s %s -> %s", f.Key, f.A, f.B))
		}
	}
	return strings.Join(out, ", ")
}

// openCache opens the cache at dir if its manifest matches want and every
// shard checks out; otherwise it returns why not ("" when there is none).
func openCache(dir string, want Manifest, tok *bpe.Tokenizer) (*Dataset, string) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("has an unreadable manifest (%v)", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Sprintf("has a corrupt manifest (%v)", err)
	}
	moved := originsDiff(m.Origins, want.Origins)
	switch {
	case m.Version != want.Version:
		return nil, fmt.Sprintf("has format version %d, not %d", m.Version, want.Version)
	case moved != "":
		return nil, "was built from " + moved
	case m.TokenizerSHA256 != want.TokenizerSHA256:
		return nil, "was built with another tokenizer"
	case settingsJSON(m.Settings) != settingsJSON(want.Settings):
		return nil, "was built with other settings (" + settingsDiff(m.Settings, want.Settings) + ")"
	case m.TrainFingerprint != want.TrainFingerprint || m.ValidFingerprint != want.ValidFingerprint:
		return nil, "was built from a corpus that has changed since"
	case m.Splits["train"] == nil || m.Splits["valid"] == nil:
		return nil, "lacks a split"
	}
	width := 2
	if m.DType == "uint32" {
		width = 4
	}
	for _, name := range []string{"train", "valid"} {
		for _, sh := range m.Splits[name].Shards {
			if reason := checkShard(dir, sh, want.Settings.ContextLength*width); reason != "" {
				return nil, reason
			}
		}
	}
	ds := &Dataset{Manifest: m, Tokenizer: tok, Dir: dir}
	if ds.Train, err = openChunks(dir, m.Splits["train"], want.Settings.ContextLength, width); err != nil {
		return nil, err.Error()
	}
	if ds.Valid, err = openChunks(dir, m.Splits["valid"], want.Settings.ContextLength, width); err != nil {
		ds.Train.Close()
		return nil, err.Error()
	}
	return ds, ""
}

// checkShard verifies a shard's size and checksum.
func checkShard(dir string, sh Shard, chunkBytes int) string {
	f, err := os.Open(filepath.Join(dir, sh.File))
	if err != nil {
		return fmt.Sprintf("misses shard %s", sh.File)
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	switch {
	case err != nil:
		return fmt.Sprintf("has an unreadable shard %s (%v)", sh.File, err)
	case n != sh.Bytes || n != int64(sh.Chunks*chunkBytes):
		return fmt.Sprintf("has a truncated shard %s (%d bytes, want %d)", sh.File, n, sh.Bytes)
	case fmt.Sprintf("%08x", h.Sum32()) != sh.CRC32C:
		return fmt.Sprintf("has a corrupt shard %s (checksum mismatch)", sh.File)
	}
	return ""
}

// originsDiff says how the Hub origins of a cache differ from wanted
// ones ("" if they do not), e.g. "dataset org/x@main commit 1a2b3c4d5e6f;
// main is now at 0f0e0d0c0b0a".
func originsDiff(have, want map[string]Origin) string {
	var out []string
	for _, k := range []string{"train", "valid", "tokenizer"} {
		h, w := have[k], want[k]
		switch {
		case h.Commit == w.Commit && h.Repo == w.Repo:
		case h.Repo == w.Repo && h.Revision == w.Revision:
			out = append(out, fmt.Sprintf("%s %s at commit %.12s; %s is now at %.12s", k, h.Repo, h.Commit, w.Revision, w.Commit))
		case h.Repo == "":
			out = append(out, fmt.Sprintf("another %s source than %s", k, w))
		default:
			out = append(out, fmt.Sprintf("%s %s, not %s", k, h, w))
		}
	}
	return strings.Join(out, ", ")
}

// hashValid reports whether a document belongs to the validation split of a
// corpus without a separate validation source. FNV-1a alone leaves the high
// bits of names that differ only at the end ("x.parquet#17", "#18") nearly
// equal, so its hash is mixed with splitmix64's finalizer first.
func hashValid(name string, fraction float64) bool {
	h := fnv.New64a()
	h.Write([]byte(name))
	z := h.Sum64()
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11)/float64(1<<53) < fraction
}

// docRef locates a selected document.
type docRef struct {
	index int64  // position in the source (corpus.Document.Index)
	file  string // file relative to the source root
	row   int64  // row in a dataset file, -1 for source files
}

// selectDocs picks documents as the original's
// Dataset.shuffle(seed).select(range(want)) does: among the source's
// documents (every row or file, skipped ones included) that keep(name)
// accepts, NumPy's default_rng(seed).permutation order, the first want. It
// returns them in selection order, and the number available.
func selectDocs(ctx context.Context, src corpus.Source, keep func(string) bool, want int, seed int64) ([]docRef, int, corpus.Stats, error) {
	var cand []docRef
	st, err := src.WalkAll(ctx, func(d corpus.Document) error {
		if keep(d.Name) {
			cand = append(cand, docRef{d.Index, d.File, d.Row})
		}
		return nil
	})
	if err != nil {
		return nil, 0, st, err
	}
	perm := nprand.Permutation(uint64(seed), len(cand))
	n := min(want, len(cand))
	sel := make([]docRef, n)
	for pos := range sel {
		sel[pos] = cand[perm[pos]]
	}
	return sel, len(cand), st, nil
}

// positions maps a selection's source positions to selection order.
func positions(sel []docRef) map[int64]int {
	m := make(map[int64]int, len(sel))
	for pos, d := range sel {
		m[d.index] = pos
	}
	return m
}

// FullChunks cuts the ids of one document into consecutive chunks of ctx
// tokens and keeps only full ones, as the original's tokenize function does
// (truncation with overflowing tokens, then length == context_length). The
// chunks are returned concatenated.
func FullChunks(ids []int32, ctx int) []int32 {
	full := len(ids) / ctx * ctx
	return ids[:full:full]
}

type docJob struct {
	pos  int
	text string
}

// tokenizeSplit tokenizes the selected documents of src on all workers and
// returns their chunks in selection order.
func tokenizeSplit(ctx context.Context, o Options, tok *bpe.Tokenizer, src corpus.Source, sel map[int64]int, name string) ([][]int32, *SplitManifest, error) {
	perDoc := make([][]int32, len(sel))
	sm := &SplitManifest{Documents: len(sel)}
	var tokens atomic.Int64
	jobs := make(chan docJob, 64)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := tok.NewEncoder()
			for j := range jobs {
				ids := enc.Encode(j.text)
				tokens.Add(int64(len(ids)))
				perDoc[j.pos] = FullChunks(ids, o.ContextLength)
				o.Progress.Add(int64(len(j.text)))
			}
		}()
	}
	o.Progress.Start("tokenizing "+name+" (bytes)", 0)
	_, err := src.Walk(ctx, func(d corpus.Document) error {
		if pos, ok := sel[d.Index]; ok {
			select {
			case jobs <- docJob{pos, d.Text}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	o.Progress.Finish()
	if err != nil {
		return nil, nil, err
	}
	sm.Tokens = tokens.Load()
	for _, c := range perDoc {
		if len(c) > 0 {
			sm.Chunked++
			sm.Chunks += len(c) / o.ContextLength
		}
	}
	return perDoc, sm, nil
}

const shardBytes = 256 << 20

// writeSplit writes the chunks of a split as shards.
func writeSplit(dir, name string, perDoc [][]int32, sm *SplitManifest, ctxLen, width int) error {
	chunksPerShard := max(1, shardBytes/(ctxLen*width))
	var f *os.File
	var h hashWriter
	var sh Shard
	buf := make([]byte, 0, 1<<16)
	flush := func() error {
		if len(buf) > 0 {
			if _, err := f.Write(buf); err != nil {
				return err
			}
			h.Write(buf)
			buf = buf[:0]
		}
		return nil
	}
	closeShard := func() error {
		if f == nil {
			return nil
		}
		if err := flush(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		sh.CRC32C = fmt.Sprintf("%08x", h.Sum32())
		sm.Shards = append(sm.Shards, sh)
		f = nil
		return nil
	}
	open := func() error {
		sh = Shard{File: fmt.Sprintf("%s-%05d.bin", name, len(sm.Shards))}
		h = hashWriter{crc32.New(castagnoli)}
		var err error
		f, err = os.Create(filepath.Join(dir, sh.File))
		return err
	}
	if err := open(); err != nil {
		return err
	}
	for _, doc := range perDoc {
		for c := 0; c+ctxLen <= len(doc); c += ctxLen {
			if sh.Chunks == chunksPerShard {
				if err := closeShard(); err != nil {
					return err
				}
				if err := open(); err != nil {
					return err
				}
			}
			for _, id := range doc[c : c+ctxLen] {
				if width == 2 {
					buf = binary.LittleEndian.AppendUint16(buf, uint16(id))
				} else {
					buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
				}
			}
			sh.Chunks++
			sh.Bytes += int64(ctxLen * width)
			if len(buf) >= 1<<16 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return closeShard()
}

type hashWriter struct {
	crc interface {
		Write([]byte) (int, error)
		Sum32() uint32
	}
}

func (h hashWriter) Write(b []byte) { h.crc.Write(b) }
func (h hashWriter) Sum32() uint32  { return h.crc.Sum32() }

// selections are the documents of both splits, in selection order.
type selections struct {
	train, valid           []docRef
	validSrc               corpus.Source
	trainAvail, validAvail int
	stats                  corpus.Stats // of the training source
}

// trainDocs is the number of training documents the original selects.
func (o Options) trainDocs() int { return int(o.NumTokenMult * 100000) }

// selectSplits selects the training and validation documents of o (whose
// sources are resolved and defaults filled): from a separate validation
// source as the original does, else by a hash split of the training source.
// Both use the same seed, as the original's shuffle(seed=0) of each.
func selectSplits(ctx context.Context, o Options) (selections, error) {
	var s selections
	s.validSrc = o.Train
	isValid := func(name string) bool { return hashValid(name, o.ValidFraction) }
	keepTrain := func(name string) bool { return !isValid(name) }
	keepValid := isValid
	if o.Valid != nil {
		s.validSrc = *o.Valid
		keepTrain = func(string) bool { return true }
		keepValid = keepTrain
	}
	var err error
	if s.train, s.trainAvail, s.stats, err = selectDocs(ctx, o.Train, keepTrain, o.trainDocs(), o.Seed); err != nil {
		return s, err
	}
	if s.valid, s.validAvail, _, err = selectDocs(ctx, s.validSrc, keepValid, o.ValidDocs, o.Seed); err != nil {
		return s, fmt.Errorf("validation documents: %w", err)
	}
	return s, nil
}

// Selected lists the documents of a split ("train" or "valid") in
// selection order, one "<file>:<row>" per document (the file alone for
// source-file corpora), without tokenizing: `clm data inspect -list`.
func Selected(ctx context.Context, o Options, split string) ([]string, error) {
	if split != "train" && split != "valid" {
		return nil, fmt.Errorf("split %q: want train or valid", split)
	}
	o, err := o.WithDefaults()
	if err != nil {
		return nil, err
	}
	o.Tokenizer = "" // not needed to select
	if o, err = Resolve(ctx, o); err != nil {
		return nil, err
	}
	sel, err := selectSplits(ctx, o)
	if err != nil {
		return nil, err
	}
	docs := sel.train
	if split == "valid" {
		docs = sel.valid
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.file
		if d.row >= 0 {
			out[i] = fmt.Sprintf("%s:%d", d.file, d.row)
		}
	}
	return out, nil
}

// build tokenizes the corpus and writes the cache.
func build(ctx context.Context, o Options, tok *bpe.Tokenizer, m Manifest) error {
	start := time.Now()
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	// Remove the old cache first: a manifest never describes other shards.
	os.Remove(filepath.Join(o.CacheDir, "manifest.json"))
	olds, _ := filepath.Glob(filepath.Join(o.CacheDir, "*.bin"))
	for _, f := range olds {
		os.Remove(f)
	}
	sel, err := selectSplits(ctx, o)
	if err != nil {
		return err
	}
	st := sel.stats
	m.Corpus, m.DocumentsSeen = st, st.Documents
	if nTrain := o.trainDocs(); sel.trainAvail < nTrain {
		fmt.Fprintf(o.Log, "data: warning: %d training documents wanted (num_token_mult %g x 100000), only %d available: taking all\n", nTrain, o.NumTokenMult, sel.trainAvail)
	}
	if sel.validAvail < o.ValidDocs {
		fmt.Fprintf(o.Log, "data: warning: %d validation documents wanted, only %d available: taking all\n", o.ValidDocs, sel.validAvail)
	}
	if len(sel.valid) == 0 {
		return fmt.Errorf("corpus %s: no validation documents (raise valid_fraction or give a validation corpus)", o.Train)
	}
	if len(st.Problems) > 0 {
		fmt.Fprintf(o.Log, "data: corpus %s: %s (first: %s)\n", o.Train, st.String(), st.Problems[0])
	}
	width := 2
	if m.DType == "uint32" {
		width = 4
	}
	m.Splits = map[string]*SplitManifest{}
	for _, sp := range []struct {
		name string
		src  corpus.Source
		sel  []docRef
	}{{"train", o.Train, sel.train}, {"valid", sel.validSrc, sel.valid}} {
		perDoc, sm, err := tokenizeSplit(ctx, o, tok, sp.src, positions(sp.sel), sp.name)
		if err != nil {
			return err
		}
		if err := writeSplit(o.CacheDir, sp.name, perDoc, sm, o.ContextLength, width); err != nil {
			return fmt.Errorf("token cache %s: %w", o.CacheDir, err)
		}
		m.Splits[sp.name] = sm
	}
	if m.Splits["train"].Chunks == 0 {
		return fmt.Errorf("corpus %s: no training document has %d tokens (one full chunk)", o.Train, o.ContextLength)
	}
	m.Created = time.Now().UTC().Format(time.RFC3339)
	m.TokenizeSeconds = time.Since(start).Seconds()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(o.CacheDir, "manifest.json"), b, 0o644); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

// Summary describes a dataset in a few lines.
func (d *Dataset) Summary() string {
	m := d.Manifest
	var b strings.Builder
	fmt.Fprintf(&b, "cache      %s\n", d.Dir)
	fmt.Fprintf(&b, "corpus     %s: %s\n", m.Settings.Train, m.Corpus.String())
	fmt.Fprintf(&b, "tokenizer  %s (vocabulary %d, %s, sha256 %.12s)\n", m.TokenizerPath, m.VocabSize, m.DType, m.TokenizerSHA256)
	fmt.Fprintf(&b, "settings   context %d, num_token_mult %g, valid_docs %d, seed %d\n", m.Settings.ContextLength, m.Settings.NumTokenMult, m.Settings.ValidDocs, m.Settings.Seed)
	for _, k := range []string{"train", "valid", "tokenizer"} {
		if org, ok := m.Origins[k]; ok {
			fmt.Fprintf(&b, "%-10s %s\n", "hub "+k, org)
		}
	}
	names := make([]string, 0, len(m.Splits))
	for n := range m.Splits {
		names = append(names, n)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	for _, n := range names {
		s := m.Splits[n]
		fmt.Fprintf(&b, "%-10s %d documents (%d with a full chunk), %d tokens, %d chunks = %d tokens in %d shards\n",
			n, s.Documents, s.Chunked, s.Tokens, s.Chunks, int64(s.Chunks)*int64(m.Settings.ContextLength), len(s.Shards))
	}
	return b.String()
}

// Open returns the dataset of o from the token cache without building it: an
// error says why the cache is missing or stale.
func Open(ctx context.Context, o Options) (*Dataset, error) {
	o, tok, want, err := o.resolve(ctx)
	if err != nil {
		return nil, err
	}
	ds, reason, err := openShared(o.CacheDir, want, tok)
	if err != nil {
		return nil, err
	}
	if ds == nil {
		if reason == "" {
			reason = "does not exist"
		}
		return nil, fmt.Errorf("token cache %s %s (run `clm data prepare`)", o.CacheDir, reason)
	}
	return ds, nil
}
