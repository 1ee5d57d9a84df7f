// Package testhub fills a hubtest server with dataset repositories the way
// the Hub holds them (parquet shards written by push_to_hub, JSON lines,
// gzip), for the tests of data and cmd/clm.
package testhub

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"

	"github.com/parquet-go/parquet-go"

	"clm/hub"
	"clm/hub/hubtest"
)

// Row is one document; a nil Content is a null.
type Row struct {
	Content  *string `parquet:"content,optional" json:"content"`
	RepoName string  `parquet:"repo_name" json:"repo_name"`
}

// Rows makes rows from texts.
func Rows(texts ...string) []Row {
	out := make([]Row, len(texts))
	for i := range texts {
		out[i] = Row{Content: &texts[i], RepoName: fmt.Sprintf("repo%d", i)}
	}
	return out
}

// Parquet encodes rows as a parquet file with rowsPerGroup rows per row
// group.
func Parquet(rows []Row, rowsPerGroup int) []byte {
	var b bytes.Buffer
	w := parquet.NewGenericWriter[Row](&b, parquet.MaxRowsPerRowGroup(int64(rowsPerGroup)))
	if _, err := w.Write(rows); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// JSONL encodes rows as JSON lines, gzipped if gz.
func JSONL(rows []Row, gz bool) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range rows {
		enc.Encode(r)
	}
	if !gz {
		return b.Bytes()
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(b.Bytes())
	w.Close()
	return z.Bytes()
}

// Shards splits rows into n parquet shards named as push_to_hub names them,
// data/<split>-0000i-of-0000n.parquet, stored with LFS.
func Shards(split string, rows []Row, n, rowsPerGroup int) map[string]hubtest.File {
	files := map[string]hubtest.File{}
	per := (len(rows) + n - 1) / n
	for i := 0; i < n; i++ {
		lo, hi := min(i*per, len(rows)), min((i+1)*per, len(rows))
		name := fmt.Sprintf("data/%s-%05d-of-%05d.parquet", split, i, n)
		files[name] = hubtest.File{Content: Parquet(rows[lo:hi], rowsPerGroup), LFS: true}
	}
	return files
}

// Paper creates the original's three repositories on srv: the CodeParrot
// training and validation datasets (parquet shards) and the tokenizer model
// (tokenizer.json); it returns their main commits.
func Paper(srv *hubtest.Server, train, valid []Row, tokenizerJSON []byte) (trainCommit, validCommit, tokCommit string) {
	const card = "---\nlicense: other\n---\n# test copy\n"
	srv.Repo(hub.TypeDataset, "huggingface-course/codeparrot-ds-train", hubtest.Public)
	tf := Shards("train", train, 3, 7)
	tf["README.md"] = hubtest.File{Content: []byte(card)}
	trainCommit = srv.Commit(hub.TypeDataset, "huggingface-course/codeparrot-ds-train", "main", tf)
	srv.Repo(hub.TypeDataset, "huggingface-course/codeparrot-ds-valid", hubtest.Public)
	vf := Shards("validation", valid, 1, 5)
	vf["README.md"] = hubtest.File{Content: []byte(card)}
	validCommit = srv.Commit(hub.TypeDataset, "huggingface-course/codeparrot-ds-valid", "main", vf)
	srv.Repo(hub.TypeModel, "huggingface-course/code-search-net-tokenizer", hubtest.Public)
	tokCommit = srv.Commit(hub.TypeModel, "huggingface-course/code-search-net-tokenizer", "main", map[string]hubtest.File{
		"tokenizer.json":          {Content: tokenizerJSON},
		"tokenizer_config.json":   {Content: []byte(`{"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}`)},
		"special_tokens_map.json": {Content: []byte(`{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}`)},
	})
	return
}
