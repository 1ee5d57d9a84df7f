package hub

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/hub/hubtest"
)

// lfs is an LFS file of the fixture's dataset, downloaded through the CDN.
const lfs = "data/train-00000-of-00002.parquet"

// faultEnv is what a fault case prepares: the fixture and a change to the
// client's configuration.
type faultEnv struct {
	f   *fixture
	cfg func(*Config)
}

// A faultCase is one failure that TestFaults puts the client through.
type faultCase struct {
	name    string
	setup   func(e *faultEnv)
	repo    Repo
	rev     string
	file    string // "": whole snapshot
	wantErr Kind   // -1: success
	msg     []string
	check   func(t *testing.T, e *faultEnv)
}

// faultCases are the failures of a real network and Hub.
var faultCases = []faultCase{
	{name: "cut mid-file resumes with a Range request (LFS, via the CDN)",
		setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, CutAt: 100_000}) },
		file:  lfs, wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.Ranged() != 1 || e.f.srv.Count("cdn") != 2 || !strings.Contains(e.f.log.String(), "resuming") {
				t.Errorf("ranged %d, cdn %d, log %q", e.f.srv.Ranged(), e.f.srv.Count("cdn"), e.f.log.String())
			}
		}},
	{name: "cut mid-file resumes (regular file)",
		setup: func(e *faultEnv) {
			e.f.srv.Inject(hubtest.Fault{Kind: "get", Path: "big.txt", CutAt: 20_000, Times: 2})
		},
		file: "big.txt", wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.Ranged() < 1 {
				t.Errorf("no Range request after a cut")
			}
		}},
	{name: "a partial file left by a killed process is resumed",
		setup: func(e *faultEnv) {
			c := e.f.client(nil)
			blob := filepath.Join(c.RepoDir(e.f.ds), "blobs", sha(e.f.files[lfs].Content))
			os.MkdirAll(filepath.Dir(blob), 0o755)
			os.WriteFile(blob+".incomplete", e.f.files[lfs].Content[:123_456], 0o644)
		},
		file: lfs, wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.Ranged() != 1 || e.f.srv.Count("cdn") != 1 {
				t.Errorf("ranged %d, cdn %d: want one ranged GET", e.f.srv.Ranged(), e.f.srv.Count("cdn"))
			}
		}},
	{name: "a partial file longer than the file is started afresh",
		setup: func(e *faultEnv) {
			c := e.f.client(nil)
			blob := filepath.Join(c.RepoDir(e.f.ds), "blobs", sha(e.f.files[lfs].Content))
			os.MkdirAll(filepath.Dir(blob), 0o755)
			os.WriteFile(blob+".incomplete", bigContent(400_000, 9), 0o644)
		},
		file: lfs, wantErr: -1},
	{name: "a corrupted blob (sha256 mismatch) is detected and fetched again",
		setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, Flip: true}) },
		file:  lfs, wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.Count("cdn") != 2 || !strings.Contains(e.f.log.String(), "checksum") {
				t.Errorf("cdn %d, log %q", e.f.srv.Count("cdn"), e.f.log.String())
			}
		}},
	{name: "a corrupted regular file (git blob sha1 mismatch) is fetched again",
		setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "get", Path: "big.txt", Flip: true}) },
		file:  "big.txt", wantErr: -1},
	{name: "corrupted twice: an error, and nothing is used",
		setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, Flip: true, Times: 2}) },
		file:  lfs, wantErr: KindCorrupt, msg: []string{"checksum", lfs, "org/ds"}},
	{name: "the connection keeps dying: an error, the partial file kept for later",
		setup: func(e *faultEnv) {
			e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, CutAt: 1000})
			e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, CutAt: -1, Times: 100})
		},
		file: lfs, wantErr: KindUnavailable, msg: []string{"stalled at 1000 bytes", "resumed"},
		check: func(t *testing.T, e *faultEnv) {
			blob := filepath.Join(e.f.client(nil).RepoDir(e.f.ds), "blobs", sha(e.f.files[lfs].Content))
			if st, err := os.Stat(blob + ".incomplete"); err != nil || st.Size() != 1000 {
				t.Errorf("partial file: %v %v, want 1000 bytes kept", st, err)
			}
			if _, err := os.Stat(blob); err == nil {
				t.Errorf("an unfinished blob was put in place")
			}
		}},
	{name: "the download keeps failing (500)",
		setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, Status: 500, Times: 100}) },
		file:  lfs, wantErr: KindUnavailable, msg: []string{"HTTP 500", lfs}},
	{name: "429 then 200", setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "revision", Status: 429}) },
		wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.Count("revision") != 2 {
				t.Errorf("%d revision requests, want 2", e.f.srv.Count("revision"))
			}
		}},
	{name: "500 then 200 (file metadata)", setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "head", Status: 500}) },
		wantErr: -1},
	{name: "502 then 200 (download)", setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "get", Path: "big.txt", Status: 502}) },
		file: "big.txt", wantErr: -1},
	{name: "503 for ever", setup: func(e *faultEnv) { e.f.srv.Inject(hubtest.Fault{Kind: "revision", Status: 503, Times: 100}) },
		wantErr: KindUnavailable, msg: []string{"HTTP 503", "nothing of it is cached"}},
	{name: "401: private repository without a token",
		setup:   func(e *faultEnv) { e.f.srv.Token = "hf_good"; e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Private) },
		wantErr: KindRepoNotFound, msg: []string{"dataset org/ds not found, or private or gated", "HF_TOKEN", "hf auth login"}},
	{name: "private repository with the token",
		setup: func(e *faultEnv) {
			e.f.srv.Token = "hf_good"
			e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Private)
			e.cfg = func(c *Config) { c.Token = "hf_good" }
		},
		wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.CDNAuth() != 0 {
				t.Errorf("the token went to the CDN host")
			}
		}},
	{name: "401: a wrong token",
		setup: func(e *faultEnv) {
			e.f.srv.Token = "hf_good"
			e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Private)
			e.cfg = func(c *Config) { c.Token = "hf_bad" }
		},
		wantErr: KindUnauthorized, msg: []string{"token was refused", "HF_TOKEN"}},
	{name: "403: gated repository",
		setup:   func(e *faultEnv) { e.f.srv.Token = "hf_good"; e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Gated) },
		wantErr: KindGated, msg: []string{"dataset org/ds is gated", "/datasets/org/ds", "hf auth login"}},
	{name: "403: the token lacks permission",
		setup:   func(e *faultEnv) { e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Forbidden) },
		wantErr: KindForbidden, msg: []string{"forbidden", "permission"}},
	{name: "404: no such repository", repo: Dataset("org/nope"),
		wantErr: KindRepoNotFound, msg: []string{"dataset org/nope"}},
	{name: "404: no such revision", rev: "v9",
		wantErr: KindRevisionNotFound, msg: []string{`dataset org/ds has no revision "v9"`}},
	{name: "404: no such file", file: "nope.parquet",
		wantErr: KindEntryNotFound, msg: []string{`has no file "nope.parquet"`, "org/ds@"}},
	{name: "a renamed repository redirects (307, relative)",
		setup: func(e *faultEnv) { e.f.srv.Alias(TypeDataset, "old/ds", "org/ds") },
		repo:  Dataset("old/ds"), file: "README.md", wantErr: -1},
	{name: "the token never leaves the Hub's host",
		setup: func(e *faultEnv) { e.cfg = func(c *Config) { c.Token = "hf_secret" } },
		file:  lfs, wantErr: -1,
		check: func(t *testing.T, e *faultEnv) {
			if e.f.srv.CDNAuth() != 0 || e.f.srv.Count("cdn") != 1 {
				t.Errorf("CDN requests with a token: %d of %d", e.f.srv.CDNAuth(), e.f.srv.Count("cdn"))
			}
		}},
}

// TestFaults drives the client through the failures of a real network and
// Hub. Each case checks the outcome, the one-line error where it fails, and
// that nothing half-downloaded is ever used.
func TestFaults(t *testing.T) {
	for _, tc := range faultCases {
		t.Run(tc.name, func(t *testing.T) { runFaultCase(t, tc) })
	}
}

// runFaultCase prepares the fault of tc, fetches its file (or the whole
// snapshot) and checks the outcome.
func runFaultCase(t *testing.T, tc faultCase) {
	e := &faultEnv{f: newFixture(t)}
	if tc.setup != nil {
		tc.setup(e)
	}
	e.f.srv.ResetCounts()
	c := e.f.client(e.cfg)
	repo, rev := e.f.ds, "main"
	if tc.repo.ID != "" {
		repo = tc.repo
	}
	if tc.rev != "" {
		rev = tc.rev
	}
	path, want, err := fetchFaultCase(c, e.f, tc, repo, rev)
	if tc.wantErr == -1 {
		if err != nil {
			t.Fatalf("%v (log %q)", err, e.f.log.String())
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Fatalf("downloaded content differs (%d bytes, want %d)", len(got), len(want))
		}
	} else {
		checkFaultError(t, c, e.f, tc, repo, err)
	}
	if tc.check != nil {
		tc.check(t, e)
	}
}

// fetchFaultCase downloads the file of tc at the fixture's main commit, or
// the snapshot of rev if tc has no file, and returns the path of the file and
// the content it must have (README.md for a snapshot).
func fetchFaultCase(c *Client, f *fixture, tc faultCase, repo Repo, rev string) (path string, want []byte, err error) {
	ctx := context.Background()
	want = f.files[tc.file].Content
	if tc.file != "" {
		path, err = c.Download(ctx, repo, f.main, File{Path: tc.file})
		return path, want, err
	}
	var s *Snapshot
	if s, err = c.Snapshot(ctx, repo, rev, nil); err == nil {
		path, want = filepath.Join(s.Dir, "README.md"), f.files["README.md"].Content
	}
	return path, want, err
}

// checkFaultError checks that err is of the kind tc wants, one line with the
// words tc lists, and that the failed download left nothing in the snapshot.
func checkFaultError(t *testing.T, c *Client, f *fixture, tc faultCase, repo Repo, err error) {
	t.Helper()
	if !IsKind(err, tc.wantErr) {
		t.Fatalf("error %v (%T), want kind %d (log %q)", err, err, tc.wantErr, f.log.String())
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "hub: ") {
		t.Errorf("not one line starting hub: %q", msg)
	}
	for _, m := range tc.msg {
		if !strings.Contains(msg, m) {
			t.Errorf("message %q lacks %q", msg, m)
		}
	}
	// Nothing half-done is visible in the snapshot.
	if tc.file != "" {
		p := filepath.Join(c.SnapshotDir(repo, f.main), filepath.FromSlash(tc.file))
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("a failed download left %s in the snapshot", p)
		}
	}
}
