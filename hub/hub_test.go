package hub

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"clm/hub/hubtest"
)

// fixture is a test Hub with a dataset (regular and LFS files, nested
// folders, a second branch and a tag) and a model repository.
type fixture struct {
	srv            *hubtest.Server
	ds, tok        Repo
	main, v2       string // commits
	files          map[string]hubtest.File
	cache          string
	log            bytes.Buffer
	lfsPath, small string
}

func bigContent(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: hubtest.New(), ds: Dataset("org/ds"), tok: Model("org/tok"), cache: t.TempDir(),
		lfsPath: "data/train-00000-of-00002.parquet", small: "README.md"}
	t.Cleanup(f.srv.Close)
	f.srv.Repo(TypeDataset, "org/ds", hubtest.Public)
	f.files = map[string]hubtest.File{
		"README.md":                          {Content: []byte("---\nlicense: mit\n---\n# test\n")},
		"data/train-00000-of-00002.parquet":  {Content: bigContent(300_000, 1), LFS: true},
		"data/train-00001-of-00002.parquet":  {Content: bigContent(70_000, 2), LFS: true},
		"data/valid/part 1.jsonl.gz":         {Content: []byte("not really gzip, but bytes")},
		"data/validation-00000-of-00001.txt": {Content: []byte("x")},
		"big.txt":                            {Content: bigContent(50_000, 3)},
	}
	f.main = f.srv.Commit(TypeDataset, "org/ds", "main", f.files)
	f.srv.Tag(TypeDataset, "org/ds", "v1.0", f.main)
	f.v2 = f.srv.Commit(TypeDataset, "org/ds", "v2", map[string]hubtest.File{"README.md": {Content: []byte("v2\n")}})
	f.srv.Repo(TypeModel, "org/tok", hubtest.Public)
	f.srv.Commit(TypeModel, "org/tok", "main", map[string]hubtest.File{"tokenizer.json": {Content: []byte(`{"model":{}}`)}})
	return f
}

func (f *fixture) client(mod func(*Config)) *Client {
	c := Config{Endpoint: f.srv.URL, CacheDir: f.cache, Log: &f.log, BaseWait: time.Millisecond, MaxWait: 5 * time.Millisecond}
	if mod != nil {
		mod(&c)
	}
	return New(c)
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func readSnapshot(t *testing.T, s *Snapshot, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, filepath.FromSlash(p)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshotLayoutAndReuse(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)
	ctx := context.Background()
	s, err := c.Snapshot(ctx, f.ds, "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Commit != f.main || s.Offline {
		t.Fatalf("commit %s offline %v, want %s online", s.Commit, s.Offline, f.main)
	}
	for p, want := range f.files {
		if got := readSnapshot(t, s, p); !bytes.Equal(got, want.Content) {
			t.Errorf("%s: content differs", p)
		}
		// The snapshot file is a relative link to blobs/<etag>.
		pp := filepath.Join(s.Dir, filepath.FromSlash(p))
		target, err := os.Readlink(pp)
		if err != nil || filepath.IsAbs(target) {
			t.Errorf("%s: not a relative link (%q, %v)", p, target, err)
		}
		etag := hubtestETag(want)
		if filepath.Base(target) != etag {
			t.Errorf("%s links to %s, want blob %s", p, target, etag)
		}
	}
	ref, _ := os.ReadFile(filepath.Join(c.RepoDir(f.ds), "refs", "main"))
	if string(ref) != f.main {
		t.Errorf("refs/main = %q, want %s", ref, f.main)
	}
	if _, err := os.Stat(filepath.Join(c.RepoDir(f.ds), "trees", f.main+".json")); err != nil {
		t.Errorf("no tree listing cached: %v", err)
	}
	if f.srv.CDNAuth() != 0 {
		t.Errorf("the CDN received the token")
	}
	// Again: one revision look-up, nothing else.
	f.srv.ResetCounts()
	if _, err := c.Snapshot(ctx, f.ds, "main", nil); err != nil {
		t.Fatal(err)
	}
	if n, r := f.srv.Total(), f.srv.Count("revision"); n != 1 || r != 1 {
		t.Errorf("second snapshot made %d requests (%v), want only the revision look-up", n, f.srv.Requests())
	}
	// By commit: no request at all.
	f.srv.ResetCounts()
	if _, err := c.Snapshot(ctx, f.ds, f.main, nil); err != nil || f.srv.Total() != 0 {
		t.Errorf("snapshot by commit: %v, %d requests (%v)", err, f.srv.Total(), f.srv.Requests())
	}
	// A tag and another branch.
	st, err := c.Snapshot(ctx, f.ds, "v1.0", nil)
	if err != nil || st.Commit != f.main {
		t.Errorf("tag v1.0: %v, commit %v", err, st)
	}
	s2, err := c.Snapshot(ctx, f.ds, "v2", nil)
	if err != nil || s2.Commit != f.v2 || string(readSnapshot(t, s2, "README.md")) != "v2\n" {
		t.Errorf("branch v2: %v %+v", err, s2)
	}
}

// hubtestETag is the ETag the test Hub gives a file (sha256 for LFS, the
// git blob hash otherwise).
func hubtestETag(f hubtest.File) string {
	if f.LFS {
		return sha(f.Content)
	}
	var b bytes.Buffer
	b.WriteString("blob ")
	b.WriteString(strconv.Itoa(len(f.Content)))
	b.WriteByte(0)
	b.Write(f.Content)
	return gitSHA(b.Bytes())
}

func TestSnapshotFilter(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)
	s, err := c.Snapshot(context.Background(), f.ds, "main", func(p string) bool { return strings.HasSuffix(p, ".md") })
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Files) != len(f.files) {
		t.Errorf("listing has %d files, want %d", len(s.Files), len(f.files))
	}
	if _, err := os.Stat(filepath.Join(s.Dir, f.lfsPath)); err == nil {
		t.Errorf("a file the filter refused was downloaded")
	}
	if f.srv.Count("cdn") != 0 {
		t.Errorf("%d CDN downloads for a README", f.srv.Count("cdn"))
	}
}

func TestOffline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	off := f.client(func(c *Config) { c.Offline = true })
	_, err := off.Snapshot(ctx, f.ds, "main", nil)
	if !IsKind(err, KindOffline) || !strings.Contains(err.Error(), "nothing of it is cached") || !strings.Contains(err.Error(), "clm data download") {
		t.Fatalf("offline, empty cache: %v", err)
	}
	if f.srv.Total() != 0 {
		t.Fatalf("offline mode made %d requests", f.srv.Total())
	}
	if _, err := f.client(nil).Snapshot(ctx, f.ds, "main", func(p string) bool { return p == "README.md" }); err != nil {
		t.Fatal(err)
	}
	f.srv.ResetCounts()
	s, err := off.Snapshot(ctx, f.ds, "main", func(p string) bool { return p == "README.md" })
	if err != nil || !s.Offline || s.Commit != f.main {
		t.Fatalf("offline with the snapshot cached: %v %+v", err, s)
	}
	if _, err := off.Snapshot(ctx, f.ds, "main", nil); !IsKind(err, KindOffline) || !strings.Contains(err.Error(), "is not cached") {
		t.Errorf("offline, a wanted file missing: %v", err)
	}
	if _, err := off.Snapshot(ctx, f.ds, "v2", nil); !IsKind(err, KindOffline) || !strings.Contains(err.Error(), "main=") {
		t.Errorf("offline, another revision: %v (want it to list the cached main)", err)
	}
	if f.srv.Total() != 0 {
		t.Errorf("offline mode made %d requests: %v", f.srv.Total(), f.srv.Requests())
	}
}

// closedEndpoint returns a URL on which nothing listens.
func closedEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestUnreachable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	down := f.client(func(c *Config) { c.Endpoint = closedEndpoint(t) })
	start := time.Now()
	_, err := down.Snapshot(ctx, f.ds, "main", nil)
	if !IsKind(err, KindUnavailable) || !strings.Contains(err.Error(), "nothing of it is cached") ||
		!strings.Contains(err.Error(), "HF_ENDPOINT") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unreachable Hub, empty cache: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("an unreachable Hub took %v to report", time.Since(start))
	}
	if _, err := f.client(nil).Snapshot(ctx, f.ds, "main", nil); err != nil {
		t.Fatal(err)
	}
	f.log.Reset()
	s, err := down.Snapshot(ctx, f.ds, "main", nil)
	if err != nil || !s.Offline || !strings.Contains(f.log.String(), "using the cached snapshot") {
		t.Fatalf("unreachable Hub, cached snapshot: %v (log %q)", err, f.log.String())
	}
}

func TestEnv(t *testing.T) {
	home := t.TempDir()
	for _, k := range []string{"HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME",
		"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_DISABLE_IMPLICIT_TOKEN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("HOME", home)
	os.WriteFile(filepath.Join(home, "tokfile"), []byte("  hf_file\r\n"), 0o600)
	cases := []struct {
		name                 string
		env                  map[string]string
		endpoint, cache, tok string
		offline              bool
	}{
		{"defaults", nil, DefaultEndpoint, home + "/.cache/huggingface/hub", "", false},
		{"endpoint", map[string]string{"HF_ENDPOINT": "http://mirror:8080/"}, "http://mirror:8080", home + "/.cache/huggingface/hub", "", false},
		{"xdg", map[string]string{"XDG_CACHE_HOME": "/x"}, DefaultEndpoint, "/x/huggingface/hub", "", false},
		{"hf home", map[string]string{"HF_HOME": "~/hf", "XDG_CACHE_HOME": "/x"}, DefaultEndpoint, home + "/hf/hub", "", false},
		{"hub cache wins", map[string]string{"HF_HOME": "/h", "HF_HUB_CACHE": "/c", "HUGGINGFACE_HUB_CACHE": "/legacy"}, DefaultEndpoint, "/c", "", false},
		{"legacy cache", map[string]string{"HUGGINGFACE_HUB_CACHE": "/legacy"}, DefaultEndpoint, "/legacy", "", false},
		{"offline yes", map[string]string{"HF_HUB_OFFLINE": "yes"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "", true},
		{"offline 0", map[string]string{"HF_HUB_OFFLINE": "0"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "", false},
		{"transformers offline", map[string]string{"TRANSFORMERS_OFFLINE": "1"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "", true},
		{"token env", map[string]string{"HF_TOKEN": " hf_env\n", "HUGGING_FACE_HUB_TOKEN": "hf_old"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "hf_env", false},
		{"legacy token", map[string]string{"HUGGING_FACE_HUB_TOKEN": "hf_old"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "hf_old", false},
		{"token file", map[string]string{"HF_TOKEN_PATH": home + "/tokfile"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "hf_file", false},
		{"implicit token off", map[string]string{"HF_TOKEN": "hf_env", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}, DefaultEndpoint, home + "/.cache/huggingface/hub", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c := FromEnv()
			if c.Endpoint != tc.endpoint || c.CacheDir != tc.cache || c.Token != tc.tok || c.Offline != tc.offline {
				t.Errorf("got %q %q %q %v, want %q %q %q %v", c.Endpoint, c.CacheDir, c.Token, c.Offline, tc.endpoint, tc.cache, tc.tok, tc.offline)
			}
		})
	}
	// The default token file lives in HF_HOME.
	t.Setenv("HF_HOME", home+"/hh")
	os.MkdirAll(home+"/hh", 0o755)
	os.WriteFile(home+"/hh/token", []byte("hf_home\n"), 0o600)
	if c := FromEnv(); c.Token != "hf_home" {
		t.Errorf("token from $HF_HOME/token: %q", c.Token)
	}
}

func TestRepoValidate(t *testing.T) {
	for _, tc := range []struct {
		r  Repo
		ok bool
	}{
		{Dataset("huggingface-course/codeparrot-ds-train"), true},
		{Model("gpt2"), true},
		{Dataset(""), false},
		{Dataset("a/b/c"), false},
		{Dataset("../x"), false},
		{Dataset("a/--b"), false},
		{Dataset("a b/c"), false},
		{Repo{"corpus", "a/b"}, false},
	} {
		if err := tc.r.Validate(); (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.r, err)
		}
	}
}

func gitSHA(b []byte) string { s := sha1.Sum(b); return hex.EncodeToString(s[:]) }
