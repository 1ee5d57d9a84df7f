package hf

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/hub"
	"clm/hub/hubtest"
)

// TestDownload: a hub: model is fetched into the Hub cache with its
// shards, pinned to its commit, and opens as a folder; a repository of
// PyTorch pickles only is refused with the conversion, before anything
// large is downloaded; offline, the cache serves the snapshot.
func TestDownload(t *testing.T) {
	srv := hubtest.New()
	defer srv.Close()
	src := writeFolder(t, gpt2JSON(t, nil), hfTensors(), true)
	files := map[string]hubtest.File{}
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		files[e.Name()] = hubtest.File{Content: b, LFS: strings.HasSuffix(e.Name(), ".safetensors")}
	}
	files["README.md"] = hubtest.File{Content: []byte("# a card clm does not need\n")}
	srv.Repo(hub.TypeModel, "tester/tiny", hubtest.Public)
	commit := srv.Commit(hub.TypeModel, "tester/tiny", "main", files)
	srv.Repo(hub.TypeModel, "tester/pickled", hubtest.Public)
	srv.Commit(hub.TypeModel, "tester/pickled", "main", map[string]hubtest.File{
		ConfigFile: {Content: gpt2JSON(t, nil)}, pytorchWeights: {Content: []byte("pickle"), LFS: true}})
	cache := t.TempDir()
	c := hub.New(hub.Config{Endpoint: srv.URL, CacheDir: cache, Log: io.Discard})
	ctx := context.Background()

	dir, pinned, err := Download(ctx, c, "hub:tester/tiny")
	if err != nil {
		t.Fatal(err)
	}
	if pinned != "hub:tester/tiny@"+commit || dir != c.SnapshotDir(hub.Model("tester/tiny"), commit) {
		t.Errorf("pinned %q in %s, want commit %s", pinned, dir, commit)
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err == nil {
		t.Errorf("the model card was downloaded too")
	}
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := resolve(gpt2JSON(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	w, release, err := f.Tensors(keysOf(t, cfg))
	defer release()
	if err != nil || len(w) != len(cfg.Params()) {
		t.Fatalf("the downloaded shards: %d tensors, %v", len(w), err)
	}

	_, _, err = Download(ctx, c, "hub:tester/pickled")
	if err == nil || !strings.Contains(err.Error(), "pytorch_model.bin") || !strings.Contains(err.Error(), "save_pretrained") {
		t.Errorf("pickles only: %v", err)
	}
	filepath.Walk(cache, func(p string, _ os.FileInfo, _ error) error {
		if filepath.Base(p) == pytorchWeights {
			t.Errorf("the pickle was downloaded: %s", p)
		}
		return nil
	})

	// GPT-2's original tokenizer files serve when there is no tokenizer.json.
	old := map[string]hubtest.File{ConfigFile: files[ConfigFile], WeightsIndexFile: files[WeightsIndexFile],
		vocabFile: {Content: []byte("{}")}, mergesFile: {Content: []byte("#version: 0.2\n")}}
	for name, f := range files {
		if strings.HasSuffix(name, ".safetensors") {
			old[name] = f
		}
	}
	srv.Repo(hub.TypeModel, "tester/old", hubtest.Public)
	srv.Commit(hub.TypeModel, "tester/old", "main", old)
	if d, _, err := Download(ctx, c, "hub:tester/old"); err != nil {
		t.Error(err)
	} else if f, err := Open(d); err != nil || !strings.HasSuffix(f.Tokenizer, vocabFile+":"+filepath.Join(d, mergesFile)) {
		t.Errorf("vocab.json and merges.txt: %v", err)
	}

	off := hub.New(hub.Config{Endpoint: "http://127.0.0.1:1", CacheDir: cache, Offline: true, Log: io.Discard})
	if d, p, err := Download(ctx, off, "hub:tester/tiny@"+commit); err != nil || d != dir || p != pinned {
		t.Errorf("offline: %s %s %v", d, p, err)
	}
}
