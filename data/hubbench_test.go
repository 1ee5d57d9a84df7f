package data

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"clm/data/bpe"
	"clm/data/corpus"
	"clm/hub"
	"clm/hub/hubtest"
	"clm/internal/testkit/pyref"
	"clm/internal/testkit/testhub"
)

// BenchmarkHubPrepare times the original's data path end to end on a local
// multi-shard parquet dataset served by a test Hub on loopback: download,
// selection, tokenization into 128-token chunks. clm (data.Prepare, cold
// caches) and the original's Python (datasets.load_dataset, shuffle/select,
// tokenizer map with return_overflowing_tokens; cold caches) run
// alternately, 3 times each; it reports the medians in MB of text per
// second. Run: make bench-data.
func BenchmarkHubPrepare(b *testing.B) {
	pyref.Require(b)
	root, err := corpus.StdlibDir()
	if err != nil {
		b.Skip(err)
	}
	docs, _, err := corpus.Source{Kind: corpus.KindStdlib, Path: root}.Collect(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	var texts []string
	var mb float64
	for _, d := range docs {
		texts = append(texts, d.Text)
		mb += float64(len(d.Text)) / 1e6
	}
	srv := hubtest.New()
	defer srv.Close()
	srv.Repo(hub.TypeDataset, "bench/code", hubtest.Public)
	files := testhub.Shards("train", testhub.Rows(texts...), 8, 1000)
	srv.Commit(hub.TypeDataset, "bench/code", "main", files)
	work := b.TempDir()
	tokPath := filepath.Join(work, "tokenizer.json")
	tok, err := TrainTokenizer(context.Background(), corpus.Source{Kind: corpus.KindStdlib, Path: root}, bpe.TrainOptions{VocabSize: 52000}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := tok.Save(tokPath); err != nil {
		b.Fatal(err)
	}
	src := corpus.Source{Kind: corpus.KindHub, Repo: "bench/code"}
	goSide := func(i int) float64 {
		dir := filepath.Join(work, fmt.Sprintf("go-%d", i))
		o := Options{Train: src, Tokenizer: tokPath, NumTokenMult: float64(len(texts)) / 1e5, ValidFraction: 0.01, CacheDir: filepath.Join(dir, "tokens"),
			Hub: hub.New(hub.Config{Endpoint: srv.URL, CacheDir: filepath.Join(dir, "hub"), Log: io.Discard}), Log: io.Discard, Progress: NopProgress{}}
		start := time.Now()
		ds, err := Prepare(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		s := time.Since(start).Seconds()
		ds.Close()
		return s
	}
	pySide := func(i int) float64 {
		dir := filepath.Join(work, fmt.Sprintf("py-%d", i))
		env := []string{"HF_ENDPOINT=" + srv.URL, "HF_HUB_CACHE=" + filepath.Join(dir, "hub"), "HF_DATASETS_CACHE=" + filepath.Join(dir, "ds"),
			"HF_HOME=" + dir, "HF_HUB_DISABLE_TELEMETRY=1", "HF_HUB_DISABLE_PROGRESS_BARS=1", "HF_DATASETS_DISABLE_PROGRESS_BARS=1", "HF_TOKEN="}
		out := pyref.RunEnv(b, env, "bench_data.py", "bench/code", tokPath)
		var r struct {
			Seconds float64 `json:"seconds"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			b.Fatalf("bench_data.py: %v: %s", err, out)
		}
		return r.Seconds
	}
	var gs, ps []float64
	for i := 0; i < 3; i++ {
		gs = append(gs, goSide(i))
		ps = append(ps, pySide(i))
	}
	med := func(x []float64) float64 { sort.Float64s(x); return x[len(x)/2] }
	b.ReportMetric(mb/med(gs), "clm_MB/s")
	b.ReportMetric(mb/med(ps), "datasets_MB/s")
	b.Logf("%.1f MB in %d documents, 8 parquet shards; clm %s s, datasets+tokenizers %s s (3 interleaved runs each)",
		mb, len(texts), fmtRuns(gs), fmtRuns(ps))
}

func fmtRuns(x []float64) string {
	var s []string
	for _, v := range x {
		s = append(s, fmt.Sprintf("%.2f", v))
	}
	return strings.Join(s, "/")
}
