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

// TestFaults drives the client through the failures of a real network and
// Hub. Each case checks the outcome, the one-line error where it fails, and
// that nothing half-downloaded is ever used.
func TestFaults(t *testing.T) {
	const lfs = "data/train-00000-of-00002.parquet"
	type env struct {
		f   *fixture
		cfg func(*Config)
	}
	cases := []struct {
		name    string
		setup   func(e *env)
		repo    Repo
		rev     string
		file    string // "": whole snapshot
		wantErr Kind   // -1: success
		msg     []string
		check   func(t *testing.T, e *env)
	}{
		{name: "cut mid-file resumes with a Range request (LFS, via the CDN)",
			setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, CutAt: 100_000}) },
			file:  lfs, wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.Ranged() != 1 || e.f.srv.Count("cdn") != 2 || !strings.Contains(e.f.log.String(), "resuming") {
					t.Errorf("ranged %d, cdn %d, log %q", e.f.srv.Ranged(), e.f.srv.Count("cdn"), e.f.log.String())
				}
			}},
		{name: "cut mid-file resumes (regular file)",
			setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "get", Path: "big.txt", CutAt: 20_000, Times: 2}) },
			file:  "big.txt", wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.Ranged() < 1 {
					t.Errorf("no Range request after a cut")
				}
			}},
		{name: "a partial file left by a killed process is resumed",
			setup: func(e *env) {
				c := e.f.client(nil)
				blob := filepath.Join(c.RepoDir(e.f.ds), "blobs", sha(e.f.files[lfs].Content))
				os.MkdirAll(filepath.Dir(blob), 0o755)
				os.WriteFile(blob+".incomplete", e.f.files[lfs].Content[:123_456], 0o644)
			},
			file: lfs, wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.Ranged() != 1 || e.f.srv.Count("cdn") != 1 {
					t.Errorf("ranged %d, cdn %d: want one ranged GET", e.f.srv.Ranged(), e.f.srv.Count("cdn"))
				}
			}},
		{name: "a partial file longer than the file is started afresh",
			setup: func(e *env) {
				c := e.f.client(nil)
				blob := filepath.Join(c.RepoDir(e.f.ds), "blobs", sha(e.f.files[lfs].Content))
				os.MkdirAll(filepath.Dir(blob), 0o755)
				os.WriteFile(blob+".incomplete", bigContent(400_000, 9), 0o644)
			},
			file: lfs, wantErr: -1},
		{name: "a corrupted blob (sha256 mismatch) is detected and fetched again",
			setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, Flip: true}) },
			file:  lfs, wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.Count("cdn") != 2 || !strings.Contains(e.f.log.String(), "checksum") {
					t.Errorf("cdn %d, log %q", e.f.srv.Count("cdn"), e.f.log.String())
				}
			}},
		{name: "a corrupted regular file (git blob sha1 mismatch) is fetched again",
			setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "get", Path: "big.txt", Flip: true}) },
			file:  "big.txt", wantErr: -1},
		{name: "corrupted twice: an error, and nothing is used",
			setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, Flip: true, Times: 2}) },
			file:  lfs, wantErr: KindCorrupt, msg: []string{"checksum", lfs, "org/ds"}},
		{name: "the connection keeps dying: an error, the partial file kept for later",
			setup: func(e *env) {
				e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, CutAt: 1000})
				e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, CutAt: -1, Times: 100})
			},
			file: lfs, wantErr: KindUnavailable, msg: []string{"stalled at 1000 bytes", "resumed"},
			check: func(t *testing.T, e *env) {
				blob := filepath.Join(e.f.client(nil).RepoDir(e.f.ds), "blobs", sha(e.f.files[lfs].Content))
				if st, err := os.Stat(blob + ".incomplete"); err != nil || st.Size() != 1000 {
					t.Errorf("partial file: %v %v, want 1000 bytes kept", st, err)
				}
				if _, err := os.Stat(blob); err == nil {
					t.Errorf("an unfinished blob was put in place")
				}
			}},
		{name: "the download keeps failing (500)",
			setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "cdn", Path: lfs, Status: 500, Times: 100}) },
			file:  lfs, wantErr: KindUnavailable, msg: []string{"HTTP 500", lfs}},
		{name: "429 then 200", setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "revision", Status: 429}) },
			wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.Count("revision") != 2 {
					t.Errorf("%d revision requests, want 2", e.f.srv.Count("revision"))
				}
			}},
		{name: "500 then 200 (file metadata)", setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "head", Status: 500}) },
			wantErr: -1},
		{name: "502 then 200 (download)", setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "get", Path: "big.txt", Status: 502}) },
			file: "big.txt", wantErr: -1},
		{name: "503 for ever", setup: func(e *env) { e.f.srv.Inject(hubtest.Fault{Kind: "revision", Status: 503, Times: 100}) },
			wantErr: KindUnavailable, msg: []string{"HTTP 503", "nothing of it is cached"}},
		{name: "401: private repository without a token",
			setup:   func(e *env) { e.f.srv.Token = "hf_good"; e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Private) },
			wantErr: KindRepoNotFound, msg: []string{"dataset org/ds not found, or private or gated", "HF_TOKEN", "hf auth login"}},
		{name: "private repository with the token",
			setup: func(e *env) {
				e.f.srv.Token = "hf_good"
				e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Private)
				e.cfg = func(c *Config) { c.Token = "hf_good" }
			},
			wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.CDNAuth() != 0 {
					t.Errorf("the token went to the CDN host")
				}
			}},
		{name: "401: a wrong token",
			setup: func(e *env) {
				e.f.srv.Token = "hf_good"
				e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Private)
				e.cfg = func(c *Config) { c.Token = "hf_bad" }
			},
			wantErr: KindUnauthorized, msg: []string{"token was refused", "HF_TOKEN"}},
		{name: "403: gated repository",
			setup:   func(e *env) { e.f.srv.Token = "hf_good"; e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Gated) },
			wantErr: KindGated, msg: []string{"dataset org/ds is gated", "/datasets/org/ds", "hf auth login"}},
		{name: "403: the token lacks permission",
			setup:   func(e *env) { e.f.srv.Repo(TypeDataset, "org/ds", hubtest.Forbidden) },
			wantErr: KindForbidden, msg: []string{"forbidden", "permission"}},
		{name: "404: no such repository", repo: Dataset("org/nope"),
			wantErr: KindRepoNotFound, msg: []string{"dataset org/nope"}},
		{name: "404: no such revision", rev: "v9",
			wantErr: KindRevisionNotFound, msg: []string{`dataset org/ds has no revision "v9"`}},
		{name: "404: no such file", file: "nope.parquet",
			wantErr: KindEntryNotFound, msg: []string{`has no file "nope.parquet"`, "org/ds@"}},
		{name: "a renamed repository redirects (307, relative)",
			setup: func(e *env) { e.f.srv.Alias(TypeDataset, "old/ds", "org/ds") },
			repo:  Dataset("old/ds"), file: "README.md", wantErr: -1},
		{name: "the token never leaves the Hub's host",
			setup: func(e *env) { e.cfg = func(c *Config) { c.Token = "hf_secret" } },
			file:  lfs, wantErr: -1,
			check: func(t *testing.T, e *env) {
				if e.f.srv.CDNAuth() != 0 || e.f.srv.Count("cdn") != 1 {
					t.Errorf("CDN requests with a token: %d of %d", e.f.srv.CDNAuth(), e.f.srv.Count("cdn"))
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{f: newFixture(t)}
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
			ctx := context.Background()
			var err error
			var path string
			want := e.f.files[tc.file].Content
			if tc.file == "" {
				var s *Snapshot
				if s, err = c.Snapshot(ctx, repo, rev, nil); err == nil {
					path, want = filepath.Join(s.Dir, "README.md"), e.f.files["README.md"].Content
				}
			} else if repo.ID == "old/ds" {
				path, err = c.Download(ctx, repo, e.f.main, File{Path: tc.file})
			} else {
				commit := e.f.main
				path, err = c.Download(ctx, repo, commit, File{Path: tc.file})
			}
			if tc.wantErr == -1 {
				if err != nil {
					t.Fatalf("%v (log %q)", err, e.f.log.String())
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
					t.Fatalf("downloaded content differs (%d bytes, want %d)", len(got), len(want))
				}
			} else {
				if !IsKind(err, tc.wantErr) {
					t.Fatalf("error %v (%T), want kind %d (log %q)", err, err, tc.wantErr, e.f.log.String())
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
					p := filepath.Join(c.SnapshotDir(repo, e.f.main), filepath.FromSlash(tc.file))
					if _, err := os.Lstat(p); err == nil {
						t.Errorf("a failed download left %s in the snapshot", p)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}
