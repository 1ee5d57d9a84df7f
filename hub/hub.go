// Package hub downloads files of Hugging Face Hub repositories (datasets and
// models) as the official huggingface_hub client does, into the same cache,
// so that clm and Python share one download: endpoint, token, cache root and
// offline mode from the same environment variables; revisions resolved to
// commits; the blobs/snapshots/refs/trees layout; ETag-named blobs checked
// against their sha256 (LFS) or git blob hash; resumable downloads; retries
// with back-off; one-line errors that say what to do.
//
// huggingface_hub's source is the specification; the package's tests run the
// official client against the same test server (package hubtest) and
// exchange caches with it.
package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Repository types.
const (
	TypeModel   = "model"
	TypeDataset = "dataset"
	TypeSpace   = "space"
)

// Repo names a repository of the Hub.
type Repo struct {
	Type string // TypeModel, TypeDataset or TypeSpace
	ID   string // "org/name" (or "name")
}

// Dataset names a dataset repository.
func Dataset(id string) Repo { return Repo{TypeDataset, id} }

// Model names a model repository.
func Model(id string) Repo { return Repo{TypeModel, id} }

func (r Repo) String() string { return r.Type + " " + r.ID }

// urlPrefix is the path prefix of the repository's pages and files.
func (r Repo) urlPrefix() string {
	switch r.Type {
	case TypeDataset:
		return "datasets/"
	case TypeSpace:
		return "spaces/"
	}
	return ""
}

// folder is the repository's folder name in the cache.
func (r Repo) folder() string { return r.Type + "s--" + strings.ReplaceAll(r.ID, "/", "--") }

// Validate checks the repository name as the Hub spells them.
func (r Repo) Validate() error {
	switch r.Type {
	case TypeModel, TypeDataset, TypeSpace:
	default:
		return fmt.Errorf("hub: unknown repository type %q (want model, dataset or space)", r.Type)
	}
	parts := strings.Split(r.ID, "/")
	if len(parts) > 2 || r.ID == "" {
		return fmt.Errorf("hub: repository id %q: want \"org/name\"", r.ID)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.HasPrefix(p, "-") || strings.Contains(p, "--") ||
			strings.ContainsAny(p, " \\:?#%") {
			return fmt.Errorf("hub: repository id %q: want \"org/name\" of letters, digits, '-', '_' and '.'", r.ID)
		}
	}
	return nil
}

// File is one file of a commit, as the tree listing gives it.
type File struct {
	Path   string // '/'-separated path in the repository
	Size   int64  // bytes (of the file, not of an LFS pointer)
	BlobID string // git blob sha1
	LFS    *LFS   // set for files stored with git LFS
}

// LFS describes a file stored with git LFS.
type LFS struct {
	SHA256 string
	Size   int64
}

// ETag is the name the file's blob gets in the cache: the LFS sha256, else
// the git blob sha1.
func (f File) ETag() string {
	if f.LFS != nil {
		return f.LFS.SHA256
	}
	return f.BlobID
}

// Client talks to one Hub endpoint and caches into one cache folder.
type Client struct {
	cfg  Config
	http *http.Client
}

// New returns a client for cfg (FromEnv gives the usual one).
func New(cfg Config) *Client {
	cfg = cfg.withDefaults()
	hc := *cfg.HTTP
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{cfg: cfg, http: &hc}
}

// Config returns the client's configuration.
func (c *Client) Config() Config { return c.cfg }

// apiURL is the API path of the repository, e.g. /api/datasets/org/name.
func (c *Client) apiURL(r Repo, tail string) string {
	return c.cfg.Endpoint + "/api/" + r.Type + "s/" + r.ID + tail
}

// fileURL is the resolve URL of a file at a revision.
func (c *Client) fileURL(r Repo, rev, file string) string {
	return c.cfg.Endpoint + "/" + r.urlPrefix() + r.ID + "/resolve/" + url.PathEscape(rev) + "/" + escapePath(file)
}

// escapePath quotes each segment of a repo path, as Python's quote does.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// getJSON GETs an API URL and decodes its JSON body into v; it returns the
// response's Link "next" URL, if any.
func (c *Client) getJSON(ctx context.Context, u string, t target, v any) (string, error) {
	resp, _, err := c.follow(ctx, http.MethodGet, u, nil, t, false)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := c.check(resp, t); err != nil {
		return "", err
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(v); err != nil {
		return "", t.err(KindOther, resp.StatusCode, "unreadable answer from "+u+": "+err.Error(), "is HF_ENDPOINT a Hub?", err)
	}
	return nextLink(resp.Header.Get("Link")), nil
}

// nextLink parses the rel="next" URL of a Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		seg := strings.Split(part, ";")
		if len(seg) < 2 {
			continue
		}
		for _, p := range seg[1:] {
			if strings.ReplaceAll(strings.TrimSpace(p), " ", "") == `rel="next"` {
				return strings.Trim(strings.TrimSpace(seg[0]), "<>")
			}
		}
	}
	return ""
}

// resolveOnline asks the Hub which commit rev names.
func (c *Client) resolveOnline(ctx context.Context, r Repo, rev string) (string, error) {
	t := target{repo: r, revision: rev}
	var info struct {
		SHA string `json:"sha"`
	}
	if _, err := c.getJSON(ctx, c.apiURL(r, "/revision/"+url.PathEscape(rev)), t, &info); err != nil {
		return "", err
	}
	if !IsCommit(info.SHA) {
		return "", t.err(KindOther, 0, fmt.Sprintf("the Hub answered commit %q", info.SHA), "is HF_ENDPOINT a Hub?", nil)
	}
	return info.SHA, nil
}

// listOnline lists every file of a commit, following the pages.
func (c *Client) listOnline(ctx context.Context, r Repo, commit string) ([]File, error) {
	t := target{repo: r, revision: commit}
	next := c.apiURL(r, "/tree/"+commit+"?recursive=true&expand=false")
	var files []File
	for next != "" {
		var page []struct {
			Type string `json:"type"`
			Path string `json:"path"`
			Size int64  `json:"size"`
			OID  string `json:"oid"`
			LFS  *struct {
				OID  string `json:"oid"`
				Size int64  `json:"size"`
			} `json:"lfs"`
		}
		var err error
		if next, err = c.getJSON(ctx, next, t, &page); err != nil {
			return nil, err
		}
		for _, e := range page {
			if e.Type != "file" {
				continue
			}
			if err := checkRepoPath(e.Path); err != nil {
				return nil, t.err(KindOther, 0, err.Error(), "", nil)
			}
			f := File{Path: e.Path, Size: e.Size, BlobID: e.OID}
			if e.LFS != nil {
				f.LFS = &LFS{SHA256: e.LFS.OID, Size: e.LFS.Size}
			}
			files = append(files, f)
		}
	}
	return files, nil
}

// List returns the files of a commit: from the cache's trees/<commit>.json
// when present, else from the Hub (and then cached).
func (c *Client) List(ctx context.Context, r Repo, commit string) ([]File, error) {
	if files, ok := c.readTree(r, commit); ok {
		return files, nil
	}
	if c.cfg.Offline {
		return nil, c.offlineErr(r, commit, "", "its file listing is not cached")
	}
	files, err := c.listOnline(ctx, r, commit)
	if err != nil {
		return nil, err
	}
	if err := c.writeTree(r, commit, files); err != nil {
		fmt.Fprintf(c.cfg.Log, "hub: cannot cache the listing of %s@%s: %v\n", r, commit, err)
	}
	return files, nil
}

// offlineErr explains that the cache lacks something while offline.
func (c *Client) offlineErr(r Repo, rev, file, what string) *Error {
	return &Error{Kind: KindOffline, Repo: r, Revision: rev, File: file,
		Detail: "offline (HF_HUB_OFFLINE) and " + what + "; " + c.describeCache(r),
		Hint:   "download it on a connected machine (`clm data download`) and copy the cache folder here, or unset HF_HUB_OFFLINE"}
}

// Snapshot is a commit of a repository with some of its files in the cache.
type Snapshot struct {
	Repo     Repo
	Revision string // what was asked: branch, tag or commit
	Commit   string // what it resolved to
	Dir      string // snapshots/<commit> in the cache
	Files    []File // every file of the commit (when known), sorted by path
	// Offline is set when the Hub was not asked (offline mode, or it could
	// not be reached and the cache had the snapshot).
	Offline bool
}

// Has reports whether the commit has a file of that path.
func (s *Snapshot) Has(path string) bool {
	for _, f := range s.Files {
		if f.Path == path {
			return true
		}
	}
	return false
}

// Snapshot resolves rev, lists the commit's files and makes sure those that
// want accepts are in the cache (downloading what is missing). Offline, or
// when the Hub cannot be reached and the cache holds the snapshot, it is
// served from the cache alone.
func (c *Client) Snapshot(ctx context.Context, r Repo, rev string, want func(path string) bool) (*Snapshot, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if rev == "" {
		rev = "main"
	}
	if c.cfg.Offline {
		return c.cachedSnapshot(r, rev, want, nil)
	}
	commit := rev
	var err error
	if !IsCommit(rev) {
		commit, err = c.resolveOnline(ctx, r, rev)
	}
	var files []File
	if err == nil {
		files, err = c.List(ctx, r, commit)
	}
	if err != nil {
		if ctx.Err() != nil || IsKind(err, KindRevisionNotFound) {
			return nil, err
		}
		return c.cachedSnapshot(r, rev, want, err)
	}
	s := &Snapshot{Repo: r, Revision: rev, Commit: commit, Dir: c.SnapshotDir(r, commit), Files: files}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("hub cache: %w", err)
	}
	if tag := filepath.Join(c.cfg.CacheDir, "CACHEDIR.TAG"); !exists(tag) {
		os.WriteFile(tag, []byte(cacheDirTag), 0o644)
	}
	if err := c.writeRef(r, rev, commit); err != nil {
		// A read-only shared cache: the files may all be there already.
		fmt.Fprintf(c.cfg.Log, "hub: cannot record %s of %s in the cache: %v\n", rev, r, err)
	}
	if err := c.Fetch(ctx, s, want); err != nil {
		return nil, err
	}
	return s, nil
}

// Fetch makes sure the files of s that want accepts (nil: all) are in the
// cache, downloading what is missing (Download's rules: offline, only the
// cache serves).
func (c *Client) Fetch(ctx context.Context, s *Snapshot, want func(path string) bool) error {
	for _, f := range s.Files {
		if want == nil || want(f.Path) {
			if _, err := c.Download(ctx, s.Repo, s.Commit, f); err != nil {
				return err
			}
		}
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// cachedSnapshot serves a snapshot from the cache alone. cause is why the
// Hub was not used (nil: offline mode).
func (c *Client) cachedSnapshot(r Repo, rev string, want func(string) bool, cause error) (*Snapshot, error) {
	fail := func(what string) error {
		if cause == nil {
			return c.offlineErr(r, rev, "", what)
		}
		he, ok := cause.(*Error)
		if !ok {
			return cause
		}
		e := *he
		if e.Kind == KindUnavailable {
			e.Hint = c.describeCache(r) + "; to work offline, download it on a connected machine (`clm data download`) and copy the cache folder, or point HF_ENDPOINT at a reachable mirror"
		}
		return &e
	}
	commit, ok := rev, IsCommit(rev)
	if !ok {
		if commit, ok = c.readRef(r, rev); !ok {
			return nil, fail("revision " + rev + " is not cached")
		}
	}
	dir := c.SnapshotDir(r, commit)
	if _, err := os.Stat(dir); err != nil {
		return nil, fail("commit " + commit + " is not cached")
	}
	files, listed := c.readTree(r, commit)
	if !listed {
		var err error
		if files, err = c.snapshotFiles(r, commit); err != nil {
			return nil, fail("its snapshot is unreadable (" + err.Error() + ")")
		}
	}
	for _, f := range files {
		if want != nil && !want(f.Path) {
			continue
		}
		p, err := c.pointerPath(r, commit, f.Path)
		if err != nil {
			return nil, fail(err.Error())
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fail(fmt.Sprintf("file %q of commit %s is not cached", f.Path, commit[:12]))
		}
	}
	if cause != nil {
		fmt.Fprintf(c.cfg.Log, "hub: %v; using the cached snapshot %s of %s\n", cause, commit[:12], r)
	}
	return &Snapshot{Repo: r, Revision: rev, Commit: commit, Dir: dir, Files: files, Offline: true}, nil
}
