package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"clm/internal/testkit/pyref"
)

// pyHub runs scripts/reference/hub_check.py (the official huggingface_hub
// client) against the fixture's server with the given cache.
func pyHub(t *testing.T, f *fixture, cache string, offline bool, jobs []map[string]any) []map[string]any {
	t.Helper()
	b, _ := json.Marshal(jobs)
	path := filepath.Join(t.TempDir(), "jobs.json")
	os.WriteFile(path, b, 0o644)
	off := "0"
	if offline {
		off = "1"
	}
	env := []string{"HF_ENDPOINT=" + f.srv.URL, "HF_HUB_CACHE=" + cache, "HF_HUB_OFFLINE=" + off, "HF_TOKEN=",
		"HF_HUB_DISABLE_TELEMETRY=1", "HF_HUB_DISABLE_PROGRESS_BARS=1", "HF_HOME=" + t.TempDir()}
	out := pyref.RunEnv(t, env, "hub_check.py", path)
	var res []map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("hub_check.py: %v\n%s", err, out)
	}
	return res
}

func fileSHA(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestInteropWithHuggingFaceHub proves the protocol and the cache layout
// against the official client: both download the same bytes from the test
// Hub; huggingface_hub accepts clm's cache (scan_cache_dir without warnings,
// hf_hub_download and snapshot_download with local_files_only); clm serves
// a cache that huggingface_hub wrote, offline, without a request.
func TestInteropWithHuggingFaceHub(t *testing.T) {
	pyref.Require(t)
	f := newFixture(t)
	clmCache, pyCache := t.TempDir(), t.TempDir()
	f.cache = clmCache
	revs := []repoRev{{f.ds, "main"}, {f.ds, "v1.0"}, {f.ds, "v2"}, {f.tok, "main"}}
	snaps := snapshotAll(t, f.client(nil), revs)
	// 1. The official client downloads the same bytes.
	checkPythonDownloads(t, f, pyCache, revs, snaps)
	// 2. huggingface_hub accepts clm's cache, offline.
	checkPythonReadsCache(t, f, clmCache, revs, snaps)
	// 3. clm serves huggingface_hub's cache offline, without a request.
	checkServesPythonCache(t, f, pyCache, revs, snaps)
	if u := f.srv.Unknown(); len(u) != 0 {
		t.Logf("requests the test Hub does not serve (harmless if only telemetry): %v", u)
	}
}

// repoRev is a revision of a repository.
type repoRev struct {
	repo Repo
	rev  string
}

// snapshotAll downloads the snapshots of revs with c.
func snapshotAll(t *testing.T, c *Client, revs []repoRev) map[repoRev]*Snapshot {
	t.Helper()
	snaps := map[repoRev]*Snapshot{}
	for _, x := range revs {
		s, err := c.Snapshot(context.Background(), x.repo, x.rev, nil)
		if err != nil {
			t.Fatal(err)
		}
		snaps[x] = s
	}
	return snaps
}

// checkPythonDownloads has huggingface_hub download revs into pyCache and
// checks that it gets the commits, files and bytes of clm's snapshots.
func checkPythonDownloads(t *testing.T, f *fixture, pyCache string, revs []repoRev, snaps map[repoRev]*Snapshot) {
	t.Helper()
	var dl []map[string]any
	for _, x := range revs {
		dl = append(dl, map[string]any{"op": "download", "type": x.repo.Type, "id": x.repo.ID, "revision": x.rev})
	}
	py := pyHub(t, f, pyCache, false, dl)
	for i, x := range revs {
		s := snaps[x]
		if py[i]["commit"] != s.Commit {
			t.Errorf("%v@%s: huggingface_hub got commit %v, clm %s", x.repo, x.rev, py[i]["commit"], s.Commit)
		}
		pyFiles := py[i]["files"].(map[string]any)
		if len(pyFiles) != len(s.Files) {
			t.Errorf("%v@%s: huggingface_hub has %d files, clm %d", x.repo, x.rev, len(pyFiles), len(s.Files))
		}
		for _, file := range s.Files {
			if got := fileSHA(t, filepath.Join(s.Dir, file.Path)); pyFiles[file.Path] != got {
				t.Errorf("%v@%s %s: clm sha256 %s, huggingface_hub %v", x.repo, x.rev, file.Path, got, pyFiles[file.Path])
			}
		}
	}
}

// checkPythonReadsCache has huggingface_hub read clm's cache offline: every
// snapshot and file with local_files_only, and scan_cache_dir, which must
// neither warn nor miss a ref. It must make no request.
func checkPythonReadsCache(t *testing.T, f *fixture, clmCache string, revs []repoRev, snaps map[repoRev]*Snapshot) {
	t.Helper()
	f.srv.ResetCounts()
	var jobs []map[string]any
	for _, x := range revs {
		var paths []string
		for _, file := range snaps[x].Files {
			paths = append(paths, file.Path)
		}
		jobs = append(jobs, map[string]any{"op": "offline", "type": x.repo.Type, "id": x.repo.ID, "revision": x.rev, "files": paths})
	}
	jobs = append(jobs, map[string]any{"op": "scan"})
	res := pyHub(t, f, clmCache, true, jobs)
	for i, x := range revs {
		s := snaps[x]
		if res[i]["dir"] != s.Dir {
			t.Errorf("%v@%s: snapshot_download(local_files_only) gave %v, want %s", x.repo, x.rev, res[i]["dir"], s.Dir)
		}
		for _, file := range s.Files {
			got := res[i]["files"].(map[string]any)[file.Path].([]any)
			if got[0] != filepath.Join(s.Dir, file.Path) || got[1] != fileSHA(t, filepath.Join(s.Dir, file.Path)) {
				t.Errorf("%v@%s %s: hf_hub_download(local_files_only) gave %v", x.repo, x.rev, file.Path, got)
			}
		}
	}
	checkScan(t, res[len(revs)], map[string][]string{f.main: {"main", "v1.0"}, f.v2: {"v2"}})
	if f.srv.Total() != 0 {
		t.Errorf("the offline Python run made %d requests", f.srv.Total())
	}
}

// checkScan checks the result of scan_cache_dir: no warnings, and the refs
// of each commit of org/ds as wantRefs lists them, sorted.
func checkScan(t *testing.T, scan map[string]any, wantRefs map[string][]string) {
	t.Helper()
	if w := scan["warnings"].([]any); len(w) != 0 {
		t.Errorf("scan_cache_dir warns about clm's cache: %v", w)
	}
	for _, r := range scan["repos"].([]any) {
		repo := r.(map[string]any)
		if repo["id"] != "org/ds" {
			continue
		}
		for _, v := range repo["revisions"].([]any) {
			rev := v.(map[string]any)
			var refs []string
			for _, x := range rev["refs"].([]any) {
				refs = append(refs, x.(string))
			}
			sort.Strings(refs)
			if want := wantRefs[rev["commit"].(string)]; !equalStrings(refs, want) {
				t.Errorf("scan_cache_dir: commit %v has refs %v, want %v", rev["commit"], refs, want)
			}
		}
	}
}

// checkServesPythonCache has clm read the cache huggingface_hub wrote to
// pyCache, offline, and checks that it finds the snapshots of snaps, byte
// for byte, without a request.
func checkServesPythonCache(t *testing.T, f *fixture, pyCache string, revs []repoRev, snaps map[repoRev]*Snapshot) {
	t.Helper()
	f.srv.ResetCounts()
	pc := New(Config{Endpoint: f.srv.URL, CacheDir: pyCache, Offline: true, Log: &f.log})
	for _, x := range revs {
		s, err := pc.Snapshot(context.Background(), x.repo, x.rev, nil)
		if err != nil {
			t.Fatalf("clm on huggingface_hub's cache, %v@%s: %v", x.repo, x.rev, err)
		}
		if s.Commit != snaps[x].Commit || len(s.Files) != len(snaps[x].Files) {
			t.Errorf("%v@%s: commit %s with %d files, want %s with %d", x.repo, x.rev, s.Commit, len(s.Files), snaps[x].Commit, len(snaps[x].Files))
		}
		for _, file := range s.Files {
			if fileSHA(t, filepath.Join(s.Dir, file.Path)) != fileSHA(t, filepath.Join(snaps[x].Dir, file.Path)) {
				t.Errorf("%v@%s %s differs between the caches", x.repo, x.rev, file.Path)
			}
		}
	}
	if f.srv.Total() != 0 {
		t.Errorf("clm offline made %d requests", f.srv.Total())
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
