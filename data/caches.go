package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"clm/data/corpus"
)

// The token caches of $CLM_CACHE/data: one folder per content, named after
// everything that changes its bytes, so that experiments with other
// tokenizers, document counts or seeds keep theirs side by side instead of
// rebuilding one in place. A process that reads a cache holds a shared lock
// on it; the least recently used caches beyond a size limit are removed,
// never one that is held.

const (
	useFile  = ".use"      // flock: shared while read, exclusive to build or remove
	usedFile = "last-used" // its modification time is the last use
)

// DefaultCacheLimit is the size the token caches may take together before
// the least recently used are removed (CLM_TOKEN_CACHE_LIMIT overrides it).
const DefaultCacheLimit = 50 << 30

// cacheName names a token cache after its settings (corpus, revision,
// split, validation, context length, documents, seed) and its tokenizer's
// content. Hub datasets are named by branch, not commit: a moved branch
// rebuilds its cache in place.
func cacheName(o Options, tokenizerSHA256 string) string {
	// A Hub dataset resolves to its commit's snapshot folder: name it by
	// repository, branch and split instead.
	if o.Train.Kind == corpus.KindHub {
		o.Train.Path = ""
	}
	if o.Valid != nil && o.Valid.Kind == corpus.KindHub {
		v := *o.Valid
		v.Path = ""
		o.Valid = &v
	}
	h := fnv.New64a()
	io.WriteString(h, settingsJSON(o))
	io.WriteString(h, "|"+tokenizerSHA256)
	return fmt.Sprintf("%s-%016x-ctx%d", o.Train.Kind, h.Sum64(), o.ContextLength)
}

// useLock is a held lock on a cache folder.
type useLock struct{ f *os.File }

// lockCache takes dir's use lock, shared (reading) or exclusive (building,
// removing), without waiting: ok is false when another process holds it.
func lockCache(dir string, exclusive bool) (l *useLock, ok bool, err error) {
	if !exclusive {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, true, nil // nothing to read: nothing to hold
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("token cache: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, useFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("token cache: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("token cache %s: %w", dir, err)
	}
	return &useLock{f: f}, true, nil
}

// inUse reports whether a process holds dir's use lock, without creating
// the lock file (listing the caches writes nothing).
func inUse(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, useFile), os.O_RDWR, 0)
	if err != nil {
		return false // no lock file: nobody has read it since it was built
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// release drops the lock.
func (l *useLock) release() {
	if l != nil && l.f != nil {
		syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}

// markUsed records a use of the cache in dir now.
func markUsed(dir string) {
	p := filepath.Join(dir, usedFile)
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		os.WriteFile(p, nil, 0o644)
	}
}

// CacheInfo describes one token cache folder.
type CacheInfo struct {
	Dir      string
	Bytes    int64
	LastUsed time.Time
	InUse    bool      // a process reads it now
	Manifest *Manifest // nil when the folder has no readable manifest
}

// TokenCaches lists the token caches under root ($CLM_CACHE), least
// recently used first.
func TokenCaches(root string) ([]CacheInfo, error) {
	ents, err := os.ReadDir(filepath.Join(root, "data"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token caches: %w", err)
	}
	var out []CacheInfo
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, "data", e.Name())
		info := CacheInfo{Dir: dir}
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					info.Bytes += fi.Size()
					if fi.ModTime().After(info.LastUsed) && d.Name() != useFile {
						info.LastUsed = fi.ModTime()
					}
				}
			}
			return nil
		})
		if fi, err := os.Stat(filepath.Join(dir, usedFile)); err == nil {
			info.LastUsed = fi.ModTime()
		}
		if b, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err == nil {
			var m Manifest
			if json.Unmarshal(b, &m) == nil {
				info.Manifest = &m
			}
		}
		info.InUse = inUse(dir)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.Before(out[j].LastUsed) })
	return out, nil
}

// CacheLimit is CLM_TOKEN_CACHE_LIMIT ("50G", "800M", bytes), else
// DefaultCacheLimit.
func CacheLimit() (int64, error) {
	s := strings.TrimSpace(os.Getenv("CLM_TOKEN_CACHE_LIMIT"))
	if s == "" {
		return DefaultCacheLimit, nil
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToUpper(s), "G"):
		mult, s = 1<<30, s[:len(s)-1]
	case strings.HasSuffix(strings.ToUpper(s), "M"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("CLM_TOKEN_CACHE_LIMIT=%q: want a size such as 50G, 800M or a number of bytes", os.Getenv("CLM_TOKEN_CACHE_LIMIT"))
	}
	return int64(v * float64(mult)), nil
}

// evictCaches removes the least recently used token caches under root
// until they fit in limit, never keep and never one in use; it returns
// what it removed.
func evictCaches(root, keep string, limit int64) ([]CacheInfo, error) {
	caches, err := TokenCaches(root)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, c := range caches {
		total += c.Bytes
	}
	var removed []CacheInfo
	for _, c := range caches {
		if total <= limit {
			break
		}
		if c.Dir == keep || c.InUse {
			continue
		}
		l, ok, err := lockCache(c.Dir, true)
		if err != nil || !ok {
			continue
		}
		err = os.RemoveAll(c.Dir)
		l.release()
		if err != nil {
			return removed, fmt.Errorf("token cache %s: %w", c.Dir, err)
		}
		total -= c.Bytes
		removed = append(removed, c)
	}
	return removed, nil
}
