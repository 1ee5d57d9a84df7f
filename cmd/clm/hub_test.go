package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"clm/data"
	"clm/data/bpe"
	"clm/data/corpus"
	"clm/hub/hubtest"
	"clm/internal/testkit/testhub"
)

// paperHub is a test Hub holding the original's three repositories, filled
// with real Python code (the local standard library) and a small tokenizer.
type paperHub struct {
	srv         *hubtest.Server
	train       []testhub.Row
	trainCommit string
}

func newPaperHub(t *testing.T) *paperHub {
	t.Helper()
	root, err := corpus.StdlibDir()
	if err != nil {
		t.Skip(err)
	}
	var texts []string
	var names []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".py") && !strings.Contains(p, "site-packages") {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, p := range names {
		if b, err := os.ReadFile(p); err == nil && len(b) > 4000 && len(b) < 40000 {
			texts = append(texts, string(b))
		}
		if len(texts) == 300 {
			break
		}
	}
	if len(texts) < 300 {
		t.Skipf("only %d standard library files", len(texts))
	}
	dir := t.TempDir()
	for i, s := range texts[:200] {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d.py", i)), []byte(s), 0o644)
	}
	tok, err := data.TrainTokenizer(context.Background(), corpus.Source{Kind: corpus.KindDir, Path: dir}, bpe.TrainOptions{VocabSize: 400}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokPath := filepath.Join(dir, "tokenizer.json")
	if err := tok.Save(tokPath); err != nil {
		t.Fatal(err)
	}
	tokJSON, _ := os.ReadFile(tokPath)
	h := &paperHub{srv: hubtest.New(), train: testhub.Rows(texts[:240]...)}
	t.Cleanup(h.srv.Close)
	h.trainCommit, _, _ = testhub.Paper(h.srv, h.train, testhub.Rows(texts[240:]...), tokJSON)
	return h
}

// paperArgs shrinks experiments/skipless.toml to a few seconds of training.
var paperArgs = []string{"-config", "../../experiments/skipless.toml",
	"-set", "model.n_layer=2", "-set", "model.n_embd=64", "-set", "model.n_head=2",
	"-set", "train.max_steps=3", "-set", "train.micro_batch=4", "-set", "train.accumulation=1",
	"-set", "train.eval_every=3", "-set", "train.eval_batches=2", "-set", "train.log_every=1",
	"-set", "train.save_every=3", "-set", "train.threads=1",
	"-set", "data.num_token_mult=0.002", "-set", "data.valid_docs=20"}

// hubEnv runs the binary with the Hub's environment variables.
func hubEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runClm(t, "", env, args...)
}

// TestPaperExperimentFromHub trains experiments/skipless.toml (shrunk) on
// the original's data from a test Hub: the first run downloads and
// tokenizes; a second downloads nothing (only the revision look-ups that
// detect a moved branch); offline it makes no request at all; a moved
// branch rebuilds the token cache with a message.
func TestPaperExperimentFromHub(t *testing.T) {
	h := newPaperHub(t)
	work := t.TempDir()
	env := []string{"HF_ENDPOINT=" + h.srv.URL, "HF_HUB_CACHE=" + filepath.Join(work, "hub"), "HF_HOME=" + filepath.Join(work, "hf"),
		"HF_TOKEN=", "HF_HUB_OFFLINE=0", "CLM_CACHE=" + filepath.Join(work, "clm")}
	run := func(name string, extraEnv ...string) string {
		t.Helper()
		out, stderr, code := hubEnv(t, append(env, extraEnv...), append(paperArgs, "-run-dir", filepath.Join(work, name))...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", name, code, stderr)
		}
		if !strings.Contains(out, "done: 3 steps") {
			t.Fatalf("%s: %q", name, out)
		}
		return stderr
	}
	stderr := run("first")
	for _, want := range []string{"hub: downloading huggingface-course/codeparrot-ds-train data/train-00000-of-00003.parquet",
		"hub train  huggingface-course/codeparrot-ds-train@main (commit " + h.trainCommit[:12],
		"hub valid  huggingface-course/codeparrot-ds-valid@main", "hub tokenizer huggingface-course/code-search-net-tokenizer@main",
		"240 documents"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("first run: stderr lacks %q:\n%s", want, stderr)
		}
	}
	if c := h.srv.Counts(); c["cdn"] != 4 || c["revision"] != 3 {
		t.Errorf("first run: requests %v, want 4 shard downloads and 3 revision look-ups", c)
	}
	cfg, _ := os.ReadFile(filepath.Join(work, "first", "config.toml"))
	if !strings.Contains(string(cfg), `source = "hub"`) || !strings.Contains(string(cfg), `tokenizer = "hub:huggingface-course/code-search-net-tokenizer"`) {
		t.Errorf("the run's config.toml does not record the Hub data:\n%s", cfg)
	}

	// The run samples with its Hub tokenizer, offline too.
	for _, off := range []string{"0", "1"} {
		out, stderr, code := hubEnv(t, append(env, "HF_HUB_OFFLINE="+off), "sample", "-ckpt", filepath.Join(work, "first"), "-prompt", "def f(", "-n", "4")
		if code != 0 || !strings.HasPrefix(out, "def f(") {
			t.Errorf("sample (HF_HUB_OFFLINE=%s): exit %d, %q\n%s", off, code, out, stderr)
		}
	}

	h.srv.ResetCounts()
	stderr = run("second")
	if c := h.srv.Counts(); c["revision"] != 3 || h.srv.Total() != 3 {
		t.Errorf("second run: requests %v (%v), want only 3 revision look-ups", c, h.srv.Requests())
	}
	if strings.Contains(stderr, "building token cache") || strings.Contains(stderr, "rebuilding") {
		t.Errorf("second run rebuilt the token cache:\n%s", stderr)
	}

	h.srv.ResetCounts()
	run("offline", "HF_HUB_OFFLINE=1")
	if n := h.srv.Total(); n != 0 {
		t.Errorf("offline run: %d requests (%v)", n, h.srv.Requests())
	}

	// The branch moves: the token cache is rebuilt, and says why.
	moved := append([]testhub.Row(nil), h.train[40:]...)
	files := testhub.Shards("train", moved, 2, 7)
	files["README.md"] = hubtest.File{Content: []byte("moved\n")}
	newCommit := h.srv.Commit("dataset", "huggingface-course/codeparrot-ds-train", "main", files)
	stderr = run("moved")
	if !strings.Contains(stderr, "main is now at "+newCommit[:12]) || !strings.Contains(stderr, "200 documents") {
		t.Errorf("moved branch: stderr lacks the rebuild message or the new documents:\n%s", stderr)
	}
}

// TestPaperExperimentOffline: without the Hub and without a cache, a paper
// experiment fails at once, naming the repository and the ways out.
func TestPaperExperimentOffline(t *testing.T) {
	work := t.TempDir()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String()
	l.Close()
	base := []string{"HF_HUB_CACHE=" + filepath.Join(work, "hub"), "HF_HOME=" + filepath.Join(work, "hf"), "HF_TOKEN=",
		"CLM_CACHE=" + filepath.Join(work, "clm")}
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"offline mode", []string{"HF_HUB_OFFLINE=1", "HF_ENDPOINT=" + closed},
			[]string{"huggingface-course/codeparrot-ds-train", "HF_HUB_OFFLINE", "clm data download", "copy the cache folder", `-set data.source=stdlib -set 'data.tokenizer=""'`}},
		{"no network", []string{"HF_HUB_OFFLINE=0", "HF_ENDPOINT=" + closed},
			[]string{"huggingface-course/codeparrot-ds-train", "cannot reach", "nothing of it is cached", "HF_ENDPOINT", `-set data.source=stdlib -set 'data.tokenizer=""'`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, stderr, code := hubEnv(t, append(base, tc.env...), append(paperArgs, "-run-dir", filepath.Join(work, "run"))...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v to fail", d)
			}
			last := lastLine(stderr)
			if !strings.HasPrefix(last, "clm: hub: ") {
				t.Errorf("last line %q", last)
			}
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q lacks %q", last, w)
				}
			}
			if _, err := os.Stat(filepath.Join(work, "run", "config.toml")); err == nil {
				t.Errorf("a failed start left a run folder")
			}
		})
	}
}

// TestDataDownloadThenOffline: `clm data download` pre-fetches the original's
// repositories into the shared cache; `clm data inspect -list` then lists
// the selected documents offline; training runs offline with no request.
func TestDataDownloadThenOffline(t *testing.T) {
	h := newPaperHub(t)
	work := t.TempDir()
	env := []string{"HF_ENDPOINT=" + h.srv.URL, "HF_HUB_CACHE=" + filepath.Join(work, "hub"), "HF_HOME=" + filepath.Join(work, "hf"),
		"HF_TOKEN=", "CLM_CACHE=" + filepath.Join(work, "clm")}
	out, stderr, code := hubEnv(t, append(env, "HF_HUB_OFFLINE=0"), "data", "download")
	if code != 0 {
		t.Fatalf("data download: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"dataset huggingface-course/codeparrot-ds-train@main", "data files 3,", "dataset huggingface-course/codeparrot-ds-valid@main",
		"tokenizer huggingface-course/code-search-net-tokenizer@main"} {
		if !strings.Contains(out, want) {
			t.Errorf("data download output lacks %q:\n%s", want, out)
		}
	}
	h.srv.ResetCounts()
	off := append(env, "HF_HUB_OFFLINE=1")
	out, stderr, code = hubEnv(t, off, "data", "inspect", "-list", "valid", "-corpus", "hub", "-dataset", data.PaperTrainDataset,
		"-valid-dataset", data.PaperValidDataset, "-valid-docs", "25")
	lines := strings.Fields(out)
	if code != 0 || len(lines) != 25 || !strings.HasPrefix(lines[0], "data/validation-00000-of-00001.parquet:") {
		t.Fatalf("inspect -list valid: exit %d, %d lines %v\n%s", code, len(lines), lines, stderr)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Errorf("document %s listed twice", l)
		}
		seen[l] = true
	}
	_, stderr, code = hubEnv(t, off, append(paperArgs, "-run-dir", filepath.Join(work, "run"))...)
	if code != 0 {
		t.Fatalf("offline training after download: exit %d\n%s", code, stderr)
	}
	if n := h.srv.Total(); n != 0 {
		t.Errorf("offline: %d requests", n)
	}
}
