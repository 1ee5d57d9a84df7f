package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"clm/internal/atomicfile"
)

// The cache layout of huggingface_hub, shared with it:
//
//	<cache>/<type>s--<org>--<name>/
//	    blobs/<etag>                  file contents, named by ETag (git sha1 or LFS sha256)
//	    snapshots/<commit>/<path>     relative symlinks into blobs/
//	    refs/<branch or tag>          the commit a revision last resolved to
//	    trees/<commit>.json           the commit's file listing
//	<cache>/.locks/<repo folder>/<etag>.lock
//	<cache>/CACHEDIR.TAG

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// IsCommit reports whether rev is a full commit hash.
func IsCommit(rev string) bool { return commitRE.MatchString(rev) }

const cacheDirTag = "Signature: 8a477f597d28d172789f06886806bc55\n" +
	"# This file is a cache directory tag created by huggingface_hub.\n" +
	"# For information about cache directory tags, see:\n" +
	"#\thttps://bford.info/cachedir/\n"

// RepoDir is the repository's folder in the cache.
func (c *Client) RepoDir(r Repo) string { return filepath.Join(c.cfg.CacheDir, r.folder()) }

// SnapshotDir is the folder of a commit's files in the cache.
func (c *Client) SnapshotDir(r Repo, commit string) string {
	return filepath.Join(c.RepoDir(r), "snapshots", commit)
}

// checkRepoPath refuses file names that would escape the snapshot folder.
func checkRepoPath(p string) error {
	switch {
	case p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.Contains(p, "\x00"):
		return fmt.Errorf("unsafe file name %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." || part == "" {
			return fmt.Errorf("unsafe file name %q", p)
		}
	}
	return nil
}

// pointerPath is where a file of a commit lies in the cache.
func (c *Client) pointerPath(r Repo, commit, file string) (string, error) {
	if err := checkRepoPath(file); err != nil {
		return "", err
	}
	return filepath.Join(c.SnapshotDir(r, commit), filepath.FromSlash(file)), nil
}

// readRef returns the commit that refs/<rev> records.
func (c *Client) readRef(r Repo, rev string) (string, bool) {
	if checkRepoPath(rev) != nil {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(c.RepoDir(r), "refs", filepath.FromSlash(rev)))
	if err != nil {
		return "", false
	}
	commit := strings.TrimSpace(string(b))
	return commit, IsCommit(commit)
}

// writeRef records that rev resolved to commit (atomically, only if it
// changed, and only once the snapshot folder exists: huggingface_hub's
// scan_cache_dir rejects refs to missing snapshots).
func (c *Client) writeRef(r Repo, rev, commit string) error {
	if rev == commit {
		return nil
	}
	if old, ok := c.readRef(r, rev); ok && old == commit {
		return nil
	}
	if err := checkRepoPath(rev); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.RepoDir(r), "refs", filepath.FromSlash(rev)), []byte(commit))
}

// writeFileAtomic writes b to p (creating its folder) through
// atomicfile: a reader never sees a partial ref or listing.
func writeFileAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(p, b, 0o644)
}

// treeFile is huggingface_hub's trees/<commit>.json format (version 1).
type treeFile struct {
	FormatVersion int                  `json:"format_version"`
	Files         map[string]treeEntry `json:"files"`
}

type treeEntry struct {
	Size      int64  `json:"size"`
	BlobID    string `json:"blob_id"`
	LFSSHA256 string `json:"lfs_sha256,omitempty"`
	LFSSize   *int64 `json:"lfs_size,omitempty"`
	XetHash   string `json:"xet_hash,omitempty"`
}

func (c *Client) treePath(r Repo, commit string) string {
	return filepath.Join(c.RepoDir(r), "trees", commit+".json")
}

// readTree returns the cached listing of a commit.
func (c *Client) readTree(r Repo, commit string) ([]File, bool) {
	b, err := os.ReadFile(c.treePath(r, commit))
	if err != nil {
		return nil, false
	}
	var t treeFile
	if json.Unmarshal(b, &t) != nil || t.FormatVersion != 1 || t.Files == nil {
		return nil, false
	}
	files := make([]File, 0, len(t.Files))
	for p, e := range t.Files {
		f := File{Path: p, Size: e.Size, BlobID: e.BlobID}
		if e.LFSSHA256 != "" {
			f.LFS = &LFS{SHA256: e.LFSSHA256, Size: e.Size}
			if e.LFSSize != nil {
				f.LFS.Size = *e.LFSSize
			}
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, true
}

// writeTree caches the listing of a commit (a commit never changes).
func (c *Client) writeTree(r Repo, commit string, files []File) error {
	t := treeFile{FormatVersion: 1, Files: map[string]treeEntry{}}
	for _, f := range files {
		e := treeEntry{Size: f.Size, BlobID: f.BlobID}
		if f.LFS != nil {
			size := f.LFS.Size
			e.LFSSHA256, e.LFSSize = f.LFS.SHA256, &size
		}
		t.Files[f.Path] = e
	}
	b, err := json.MarshalIndent(t, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.treePath(r, commit), b)
}

// snapshotFiles lists the files present in a cached snapshot, as repo paths.
func (c *Client) snapshotFiles(r Repo, commit string) ([]File, error) {
	root := c.SnapshotDir(r, commit)
	var files []File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil // a broken link: not cached
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, File{Path: filepath.ToSlash(rel), Size: st.Size()})
		return nil
	})
	return files, err
}

// cachedCommits lists the commits with a snapshot folder, and the refs
// naming them, for messages ("main -> 1a2b3c4", "0f0e0d0").
func (c *Client) cachedCommits(r Repo) []string {
	ents, err := os.ReadDir(filepath.Join(c.RepoDir(r), "snapshots"))
	if err != nil {
		return nil
	}
	names := map[string][]string{}
	refs := filepath.Join(c.RepoDir(r), "refs")
	filepath.WalkDir(refs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(p); err == nil {
				rel, _ := filepath.Rel(refs, p)
				names[strings.TrimSpace(string(b))] = append(names[strings.TrimSpace(string(b))], filepath.ToSlash(rel))
			}
		}
		return nil
	})
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		s := e.Name()
		if len(s) > 12 {
			s = s[:12]
		}
		if n := names[e.Name()]; len(n) > 0 {
			sort.Strings(n)
			s = strings.Join(n, ",") + "=" + s
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// describeCache says in a few words what the cache holds of r.
func (c *Client) describeCache(r Repo) string {
	if cc := c.cachedCommits(r); len(cc) > 0 {
		return fmt.Sprintf("the cache %s holds only %s of it", c.cfg.CacheDir, strings.Join(cc, ", "))
	}
	return fmt.Sprintf("nothing of it is cached in %s", c.cfg.CacheDir)
}

// lockFile takes huggingface_hub's per-blob lock (flock on
// .locks/<repo>/<etag>.lock), so that clm and Python never write one blob
// at once. The returned function releases it.
func (c *Client) lockFile(r Repo, etag string) (func(), error) {
	p := filepath.Join(c.cfg.CacheDir, ".locks", r.folder(), etag+".lock")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o664)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// link points the snapshot file at its blob with a relative symlink,
// replacing whatever was there atomically.
func link(blob, pointer string) error {
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(pointer), blob)
	if err != nil {
		rel = blob
	}
	tmp := fmt.Sprintf("%s.%d.link.tmp", pointer, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, pointer); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
