package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"clm/data"
)

// TestTokenCachePerContent: two experiments that differ in their documents
// keep a token cache each, so alternating them rebuilds neither; `clm data
// cache` lists them; beyond the size limit the least recently used cache
// goes, never one that another process reads.
func TestTokenCachePerContent(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	cfg := write(t, filepath.Join(dir, "micro.toml"), strings.NewReplacer("max_steps = 12", "max_steps = 1",
		"eval_every = 6", "eval_every = 1").Replace(microExperiment))
	run := func(name, mult string, env ...string) string {
		t.Helper()
		out, stderr, code := runClm(t, dir, append([]string{"CLM_CACHE=" + cache}, env...),
			"-config", cfg, "-run-dir", name, "-set", "data.num_token_mult="+mult)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out, stderr)
		}
		return stderr
	}
	if s := run("a1", "0.002"); !strings.Contains(s, "building token cache") {
		t.Fatalf("first run built no token cache:\n%s", s)
	}
	if s := run("b", "0.003"); !strings.Contains(s, "building token cache") || strings.Contains(s, "rebuilding") {
		t.Fatalf("another document count: want a cache of its own, not a rebuild:\n%s", s)
	}
	if s := run("a2", "0.002"); strings.Contains(s, "building token cache") || strings.Contains(s, "rebuilding") {
		t.Fatalf("the first experiment again rebuilt its cache:\n%s", s)
	}
	out, stderr, code := runClm(t, dir, []string{"CLM_CACHE=" + cache}, "data", "cache")
	if code != 0 || !strings.Contains(out, "2 token caches") || strings.Count(out, "\nstdlib-") != 2 {
		t.Fatalf("clm data cache: exit %d\n%s%s", code, out, stderr)
	}

	caches, err := data.TokenCaches(cache)
	if err != nil || len(caches) != 2 {
		t.Fatalf("%d caches (%v)", len(caches), err)
	}
	byMult := map[float64]string{}
	for _, c := range caches {
		byMult[c.Manifest.Settings.NumTokenMult] = c.Dir
	}
	// Another process reads the least recently used cache (the 0.003 one).
	busy := byMult[0.003]
	f, err := os.OpenFile(filepath.Join(busy, ".use"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	s := run("c", "0.004", "CLM_TOKEN_CACHE_LIMIT=1")
	if !strings.Contains(s, "removed "+byMult[0.002]) {
		t.Errorf("over the limit, the least recently used cache not in use was not removed:\n%s", s)
	}
	for _, d := range []string{busy} {
		if _, err := os.Stat(filepath.Join(d, "manifest.json")); err != nil {
			t.Errorf("the cache in use was removed: %v", err)
		}
	}
	if _, err := os.Stat(byMult[0.002]); err == nil {
		t.Errorf("%s is still there", byMult[0.002])
	}
	caches, _ = data.TokenCaches(cache)
	if len(caches) != 2 {
		t.Errorf("after the eviction: %d caches, want the one in use and the new one", len(caches))
	}
	// Listing only reads: it creates no lock file where none is.
	for _, c := range caches {
		if c.Dir != busy {
			os.Remove(filepath.Join(c.Dir, ".use"))
			if _, _, code := runClm(t, dir, []string{"CLM_CACHE=" + cache}, "data", "cache"); code != 0 {
				t.Fatalf("clm data cache: exit %d", code)
			}
			if _, err := os.Stat(filepath.Join(c.Dir, ".use")); err == nil {
				t.Errorf("clm data cache wrote %s", filepath.Join(c.Dir, ".use"))
			}
		}
	}
}
