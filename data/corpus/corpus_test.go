package corpus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
)

func testDocs() []*string {
	var docs []*string
	s := func(v string) *string { return &v }
	docs = append(docs, s("def f(x):\n    return x + 1\n"), s(""), nil, s("ünïcödé 日本語 🙂\r\n\ttabs"))
	for i := 0; i < 30; i++ {
		docs = append(docs, s(fmt.Sprintf("# doc %d\n%s", i, strings.Repeat("x = 1\n", i*50))))
	}
	return docs
}

// TestReadersHFFiles has pyarrow / Python write a parquet file and a
// jsonl.gz file as datasets does, and reads both back.
func TestReadersHFFiles(t *testing.T) {
	docs := testDocs()
	dir := t.TempDir()
	in := filepath.Join(dir, "docs.json")
	b, _ := json.Marshal(docs)
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ds")
	os.Mkdir(out, 0o755)
	pyref.Run(t, "tokenizer_write_corpus.py", in, out)
	for _, file := range []string{"train-00000-of-00001.parquet", "valid.jsonl.gz"} {
		got, st, err := Source{Kind: KindHF, Path: filepath.Join(out, file)}.Collect(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var want []string
		for _, d := range docs {
			if d != nil && *d != "" {
				want = append(want, *d)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d documents, want %d", file, len(got), len(want))
		}
		for i := range want {
			if got[i].Text != want[i] {
				t.Fatalf("%s: document %d (%s) differs", file, i, got[i].Name)
			}
		}
		if st.Empty != 2 {
			t.Errorf("%s: %d empty (null or \"\") rows counted, want 2", file, st.Empty)
		}
		t.Logf("%s: %s", file, st.String())
		// A missing column names the columns present.
		_, _, err = Source{Kind: KindHF, Path: filepath.Join(out, file), Column: "text"}.Collect(context.Background())
		if err == nil || !strings.Contains(err.Error(), `no column "text" (columns: content, repo_name, size)`) {
			t.Errorf("%s: missing column error = %v", file, err)
		}
	}
	// The whole directory reads both files.
	all, _, err := Source{Kind: KindHF, Path: out}.Collect(context.Background())
	if err != nil || len(all) != 2*(len(docs)-2) {
		t.Errorf("directory: %d documents, %v", len(all), err)
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadersSkips: unreadable, empty and non-UTF-8 files are counted, not
// fatal; an empty corpus is a clear error.
func TestReadersSkips(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.py"), []byte("print('a')\n"))
	write(t, filepath.Join(dir, "sub", "b.py"), []byte("print('b')\n"))
	write(t, filepath.Join(dir, "empty.py"), nil)
	write(t, filepath.Join(dir, "latin1.py"), []byte("s = '\xe9'\n"))
	write(t, filepath.Join(dir, "notes.txt"), []byte("not python"))
	os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "broken.py"))
	write(t, filepath.Join(dir, "bad.jsonl"), []byte("{\"content\": \"ok\"}\n{broken\n"))
	write(t, filepath.Join(dir, "bad.parquet"), []byte("PAR1 not really"))
	write(t, filepath.Join(dir, "empty.json"), nil)

	docs, st, err := Source{Kind: KindDir, Path: dir}.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Name != "a.py" || docs[1].Name != "sub/b.py" {
		t.Errorf("documents %v", docs)
	}
	if st.Empty != 1 || st.NotUTF8 != 1 || st.Unreadable != 1 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("dir: %s; %v", st.String(), st.Problems)

	docs, st, err = Source{Kind: KindHF, Path: dir}.Collect(context.Background())
	if err != nil || len(docs) != 1 || st.Unreadable != 3 {
		t.Errorf("hf: %d docs, %+v, %v", len(docs), st, err)
	}
	t.Logf("hf: %s; %v", st.String(), st.Problems)

	empty := t.TempDir()
	write(t, filepath.Join(empty, "e.py"), nil)
	for _, src := range []Source{{Kind: KindDir, Path: empty}, {Kind: KindDir, Path: t.TempDir()}} {
		_, _, err = src.Collect(context.Background())
		if err == nil || !strings.Contains(err.Error(), "no documents") {
			t.Errorf("empty corpus: err = %v", err)
		} else {
			t.Logf("empty corpus: %v", err)
		}
	}
	if _, _, err := (Source{Kind: KindDir, Path: filepath.Join(dir, "nope")}).Collect(context.Background()); err == nil {
		t.Error("missing directory: no error")
	}
}

// TestHubCacheLayout resolves datasets--org--name/snapshots/<rev>/ with the
// files linked to blobs, as huggingface_hub stores them.
func TestHubCacheLayout(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "datasets--org--name")
	write(t, filepath.Join(repo, "blobs", "abc"), []byte("{\"content\": \"x = 1\"}\n{\"content\": \"y = 2\"}\n"))
	write(t, filepath.Join(repo, "refs", "main"), []byte("rev2"))
	os.MkdirAll(filepath.Join(repo, "snapshots", "rev1"), 0o755)
	os.MkdirAll(filepath.Join(repo, "snapshots", "rev2", "data"), 0o755)
	if err := os.Symlink("../../../blobs/abc", filepath.Join(repo, "snapshots", "rev2", "data", "train.jsonl")); err != nil {
		t.Fatal(err)
	}
	docs, _, err := Source{Kind: KindHF, Path: repo}.Collect(context.Background())
	if err != nil || len(docs) != 2 || docs[1].Text != "y = 2" || docs[0].Name != "data/train.jsonl#0" {
		t.Fatalf("hub cache: %v %v", docs, err)
	}
}

// TestStdlib reads the default corpus.
func TestStdlib(t *testing.T) {
	if _, err := StdlibDir(); err != nil {
		t.Skip(err)
	}
	n := 0
	st, err := Source{}.Walk(context.Background(), func(d Document) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stdlib: %s", st.String())
	if n < 100 {
		t.Errorf("only %d documents", n)
	}
}
