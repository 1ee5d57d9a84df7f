package data

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/data/corpus"
	"clm/hub"
	"clm/hub/hubtest"
	"clm/internal/testkit/pyref"
	"clm/internal/testkit/testhub"
)

// layout is a dataset repository of the test Hub and the splits to check.
type layout struct {
	id     string
	files  map[string]hubtest.File
	splits []string
}

// docs makes n distinguishable documents; some are empty or null, which
// datasets counts as rows.
func docs(tag string, n int) []testhub.Row {
	rows := make([]testhub.Row, n)
	for i := range rows {
		s := fmt.Sprintf("def %s_%d():\n    return %d\n", tag, i, i)
		switch {
		case i%11 == 5:
			s = ""
		case i%13 == 7:
			rows[i] = testhub.Row{RepoName: "null"}
			continue
		}
		rows[i] = testhub.Row{Content: &s, RepoName: tag}
	}
	return rows
}

func merge(ms ...map[string]hubtest.File) map[string]hubtest.File {
	out := map[string]hubtest.File{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// layouts covers the ways datasets finds the files of a split: push_to_hub
// shards, a dataset card's configs, split names in file names and in
// folders, and no split names at all; with files it must ignore.
func layouts() []layout {
	pq := func(tag string, n int) hubtest.File {
		return hubtest.File{Content: testhub.Parquet(docs(tag, n), 4), LFS: true}
	}
	js := func(tag string, n int, gz bool) hubtest.File {
		return hubtest.File{Content: testhub.JSONL(docs(tag, n), gz)}
	}
	card := "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path:\n    - shards/b-*.jsonl.gz\n    - shards/a-*.jsonl.gz\n  - split: validation\n    path: heldout.jsonl\n---\n"
	return []layout{
		{"org/sharded", merge(testhub.Shards("train", docs("tr", 40), 3, 6), testhub.Shards("validation", docs("va", 15), 1, 4),
			map[string]hubtest.File{"README.md": {Content: []byte("# no card metadata\n")}}), []string{"train", "validation"}},
		{"org/configs", map[string]hubtest.File{"README.md": {Content: []byte(card)},
			"shards/b-0.jsonl.gz": js("b0", 9, true), "shards/b-1.jsonl.gz": js("b1", 8, true), "shards/a-0.jsonl.gz": js("a0", 7, true),
			"heldout.jsonl": js("ho", 12, false), "other/train.jsonl": js("x", 3, false)}, []string{"train", "validation"}},
		{"org/names", map[string]hubtest.File{"train.jsonl": js("t", 10, false), "train-extra.jsonl": js("te", 5, false),
			"valid.jsonl.gz": js("v", 9, true), "test.jsonl": js("s", 4, false), ".hidden/train.jsonl": js("h", 3, false),
			"__pycache__/train.jsonl": js("p", 3, false), "scripts/build.py": {Content: []byte("print(1)\n")}}, []string{"train", "validation", "test"}},
		{"org/dirs", map[string]hubtest.File{"train/b.parquet": pq("b", 9), "train/a.parquet": pq("a", 6), "train/sub/c.parquet": pq("c", 5),
			"dev/x.parquet": pq("x", 8), "README.md": {Content: []byte("hi\n")}}, []string{"train", "validation"}},
		{"org/flat", map[string]hubtest.File{"a.jsonl": js("a", 8, false), "b/c.jsonl": js("c", 6, false), "notes.txt": {Content: []byte("notes\n")}},
			[]string{"train"}},
	}
}

// TestHubDatasetsMatchDatasetsLibrary checks, on each layout, that clm
// reads a split's rows in the order datasets.load_dataset does, and that
// its selection equals ds.shuffle(seed).select(range(k)) (and
// Dataset.from_dict(...).shuffle(seed).select(range(k))) for several seeds.
func TestHubDatasetsMatchDatasetsLibrary(t *testing.T) {
	pyref.Require(t)
	srv := hubtest.New()
	defer srv.Close()
	type job struct {
		ID    string `json:"id"`
		Split string `json:"split"`
		Seed  int64  `json:"seed"`
		K     int    `json:"k"`
	}
	var jobs []job
	for _, l := range layouts() {
		srv.Repo(hub.TypeDataset, l.id, hubtest.Public)
		srv.Commit(hub.TypeDataset, l.id, "main", l.files)
		for _, sp := range l.splits {
			for _, seed := range []int64{0, 42} {
				jobs = append(jobs, job{l.id, sp, seed, 9})
			}
		}
	}
	b, _ := json.Marshal(jobs)
	jobsPath := filepath.Join(t.TempDir(), "jobs.json")
	os.WriteFile(jobsPath, b, 0o644)
	env := []string{"HF_ENDPOINT=" + srv.URL, "HF_HUB_CACHE=" + t.TempDir(), "HF_DATASETS_CACHE=" + t.TempDir(), "HF_HOME=" + t.TempDir(),
		"HF_HUB_DISABLE_TELEMETRY=1", "HF_HUB_DISABLE_PROGRESS_BARS=1", "HF_DATASETS_DISABLE_PROGRESS_BARS=1", "HF_TOKEN=", "HF_HUB_OFFLINE=0"}
	var want []struct {
		Rows     []*string `json:"rows"`
		Selected []*string `json:"selected"`
		FromDict []*string `json:"from_dict"`
	}
	if err := json.Unmarshal(pyref.RunEnv(t, env, "datasets_check.py", jobsPath), &want); err != nil {
		t.Fatal(err)
	}
	client := hub.New(hub.Config{Endpoint: srv.URL, CacheDir: t.TempDir(), Log: io.Discard})
	ctx := context.Background()
	for i, j := range jobs {
		name := fmt.Sprintf("%s %s seed %d", j.ID, j.Split, j.Seed)
		src := corpus.Source{Kind: corpus.KindHub, Repo: j.ID, Split: j.Split}
		// Every row in load order, skipped ones (empty, null) included.
		rsrc, _, err := ResolveHub(ctx, client, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		byRef := map[string]*string{}
		var rows []*string
		if _, err := rsrc.WalkAll(ctx, func(d corpus.Document) error {
			var p *string
			if d.Skip != "null" {
				text := d.Text
				p = &text
			}
			rows = append(rows, p)
			byRef[fmt.Sprintf("%s:%d", d.File, d.Row)] = p
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !sameTexts(rows, want[i].Rows) {
			t.Errorf("%s: clm reads %d rows %v, datasets %d %v", name, len(rows), short(rows), len(want[i].Rows), short(want[i].Rows))
			continue
		}
		// The selection, through the same path as `clm data inspect -list`.
		o := Options{Train: src, Valid: &src, Seed: j.Seed, NumTokenMult: float64(j.K) / 100000, ValidDocs: 1, Hub: client, Log: io.Discard}
		refs, err := Selected(ctx, o, "train")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var sel []*string
		for _, r := range refs {
			sel = append(sel, byRef[r])
		}
		if !sameTexts(sel, want[i].Selected) || !sameTexts(sel, want[i].FromDict) {
			t.Errorf("%s: clm selects %v, datasets %v (from_dict %v)", name, short(sel), short(want[i].Selected), short(want[i].FromDict))
		}
	}
}

func sameTexts(a, b []*string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || (a[i] != nil && *a[i] != *b[i]) {
			return false
		}
	}
	return true
}

// short renders texts compactly for messages.
func short(ts []*string) string {
	var out []string
	for _, t := range ts {
		if t == nil {
			out = append(out, "null")
		} else {
			out = append(out, strings.SplitN(strings.TrimPrefix(*t, "def "), "(", 2)[0])
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}
