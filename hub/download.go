package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"clm/internal/progress"
)

// meta is what the HEAD of a resolve URL tells about a file.
type meta struct {
	commit   string
	etag     string
	size     int64 // -1: unknown
	location string
}

// normalizeETag strips W/ and the quotes, as huggingface_hub does.
func normalizeETag(e string) string {
	return strings.Trim(strings.TrimPrefix(e, "W/"), `"`)
}

// head asks the Hub for a file's commit, ETag, size and download location.
func (c *Client) head(ctx context.Context, r Repo, commit, file string) (meta, error) {
	t := target{repo: r, revision: commit, file: file}
	hdr := http.Header{"Accept-Encoding": {"identity"}}
	resp, loc, err := c.follow(ctx, http.MethodHead, c.fileURL(r, commit, file), hdr, t, true)
	if err != nil {
		return meta{}, err
	}
	resp.Body.Close()
	if err := c.check(resp, t); err != nil {
		return meta{}, err
	}
	m := meta{commit: resp.Header.Get("X-Repo-Commit"), location: loc, size: -1,
		etag: normalizeETag(resp.Header.Get("X-Linked-Etag"))}
	if m.etag == "" {
		m.etag = normalizeETag(resp.Header.Get("ETag"))
	}
	redirect := resp.StatusCode >= 300 && resp.StatusCode < 400
	if s := resp.Header.Get("X-Linked-Size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return m, t.err(KindOther, 0, "the answer's X-Linked-Size header is "+strconv.Quote(s), "is HF_ENDPOINT a Hub? check your proxy and firewall", nil)
		}
		m.size = n
	} else if !redirect && resp.ContentLength >= 0 {
		m.size = resp.ContentLength
	}
	switch {
	case m.commit == "":
		return m, t.err(KindOther, 0, "the answer lacks the X-Repo-Commit header", "is HF_ENDPOINT a Hub? check your proxy and firewall", nil)
	case m.etag == "" || strings.ContainsAny(m.etag, "/\\") || m.etag == "." || m.etag == "..":
		return m, t.err(KindOther, 0, fmt.Sprintf("the answer has no usable ETag (%q)", m.etag), "is HF_ENDPOINT a Hub?", nil)
	}
	return m, nil
}

// Download makes sure one file of a commit is in the cache and returns its
// snapshot path. A file already there costs no request.
func (c *Client) Download(ctx context.Context, r Repo, commit string, f File) (string, error) {
	pointer, err := c.pointerPath(r, commit, f.Path)
	if err != nil {
		return "", &Error{Repo: r, Revision: commit, File: f.Path, Detail: err.Error()}
	}
	if _, err := os.Stat(pointer); err == nil {
		return pointer, nil
	}
	if c.cfg.Offline {
		return "", c.offlineErr(r, commit, f.Path, "the file is not cached")
	}
	m, err := c.head(ctx, r, commit, f.Path)
	if err != nil {
		return "", err
	}
	t := target{repo: r, revision: commit, file: f.Path}
	if m.commit != commit {
		return "", t.err(KindOther, 0, "the Hub served commit "+m.commit+" for it", "", nil)
	}
	if want := f.ETag(); want != "" && want != m.etag {
		return "", t.err(KindCorrupt, 0, fmt.Sprintf("the listing gives ETag %s, the file's answer %s", want, m.etag), "the Hub answered inconsistently; try again", nil)
	}
	if m.size < 0 && f.Size > 0 {
		m.size = f.Size
	}
	blob := filepath.Join(c.RepoDir(r), "blobs", m.etag)
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return "", fmt.Errorf("hub cache: %w", err)
	}
	unlock, err := c.lockFile(r, m.etag)
	if err != nil {
		return "", fmt.Errorf("hub cache: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(blob); err != nil {
		if err := c.fetchBlob(ctx, t, m, blob); err != nil {
			return "", err
		}
	}
	if err := link(blob, pointer); err != nil {
		return "", fmt.Errorf("hub cache: %w", err)
	}
	return pointer, nil
}

// fetchBlob downloads a blob to <blob>.incomplete (resuming what an earlier
// attempt left there), checks its size and hash, and renames it into
// place. A blob that fails its check is fetched once more from scratch.
func (c *Client) fetchBlob(ctx context.Context, t target, m meta, blob string) error {
	inc := blob + ".incomplete"
	for attempt := 0; ; attempt++ {
		if err := c.fetchInto(ctx, t, m, inc); err != nil {
			return err
		}
		err := verify(inc, m.etag, m.size)
		if err == nil {
			break
		}
		os.Remove(inc)
		if attempt > 0 {
			return t.err(KindCorrupt, 0, err.Error(), "the download was corrupted twice; try again, or report it to the repository", nil)
		}
		fmt.Fprintf(c.cfg.Log, "hub: %s of %s: %v; downloading it again\n", t.file, t.repo, err)
	}
	if err := os.Rename(inc, blob); err != nil {
		return fmt.Errorf("hub cache: %w", err)
	}
	return nil
}

var contentRangeRE = regexp.MustCompile(`^bytes (\d+)-\d+/(\d+|\*)$`)

// fetchInto appends the rest of the file to inc, resuming from its size
// with a Range request and retrying when the connection is cut.
func (c *Client) fetchInto(ctx context.Context, t target, m meta, inc string) error {
	f, err := os.OpenFile(inc, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("hub cache: %w", err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("hub cache: %w", err)
	}
	if m.size >= 0 && have > m.size {
		if have, err = truncate(f); err != nil {
			return err
		}
	}
	prog := c.progress(t, m.size)
	defer prog.Finish()
	prog.Add(have)
	stalled := 0
	for m.size < 0 || have < m.size {
		got, done, err := c.fetchOnce(ctx, t, m, f, have, prog)
		if err != nil {
			return err
		}
		if done {
			if m.size >= 0 && got < m.size {
				fmt.Fprintf(c.cfg.Log, "hub: %s of %s: the answer ended at %d of %d bytes; resuming\n", t.file, t.repo, got, m.size)
			} else {
				return f.Sync()
			}
		}
		if got > have {
			stalled = 0
		} else if stalled++; stalled > c.cfg.MaxRetries {
			return t.err(KindUnavailable, 0, fmt.Sprintf("the download stalled at %d bytes", got), "try again later; the partial file is kept and resumed", nil)
		} else if err := c.wait(ctx, stalled-1, nil); err != nil {
			return err
		}
		have = got
	}
	return f.Sync()
}

// fetchOnce makes one GET from offset have. It returns the file's new size
// and whether the answer's body was read to its end (false: cut).
func (c *Client) fetchOnce(ctx context.Context, t target, m meta, f *os.File, have int64, prog Progress) (int64, bool, error) {
	hdr := http.Header{"Accept-Encoding": {"identity"}}
	if have > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, _, err := c.follow(ctx, http.MethodGet, m.location, hdr, t, false)
	if err != nil {
		return have, false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		n, err := truncate(f) // our partial file is not a prefix of this one
		return n, false, err
	case resp.StatusCode == http.StatusOK && have > 0:
		fmt.Fprintf(c.cfg.Log, "hub: %s of %s: the server ignored the range; downloading it whole\n", t.file, t.repo)
		prog.Add(-have)
		if have, err = truncate(f); err != nil {
			return have, false, err
		}
	case resp.StatusCode == http.StatusPartialContent:
		mm := contentRangeRE.FindStringSubmatch(resp.Header.Get("Content-Range"))
		if mm == nil || mm[1] != strconv.FormatInt(have, 10) {
			n, err := truncate(f)
			return n, false, err
		}
	default:
		if err := c.check(resp, t); err != nil {
			return have, false, err
		}
		if resp.StatusCode != http.StatusOK {
			return have, false, t.err(KindOther, resp.StatusCode, "unexpected answer to a download", "", nil)
		}
	}
	n, err := io.Copy(f, io.TeeReader(resp.Body, progressWriter{prog}))
	have += n
	if err != nil {
		if ctx.Err() != nil {
			return have, false, ctx.Err()
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return have, false, fmt.Errorf("hub cache: %w", err)
		}
		fmt.Fprintf(c.cfg.Log, "hub: %s of %s: cut at %d bytes (%v); resuming\n", t.file, t.repo, have, err)
		return have, false, nil
	}
	return have, true, nil
}

// truncate empties f for a download from the start.
func truncate(f *os.File) (int64, error) {
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("hub cache: %w", err)
	}
	_, err := f.Seek(0, io.SeekStart)
	return 0, err
}

type progressWriter struct{ p Progress }

func (w progressWriter) Write(b []byte) (int, error) { w.p.Add(int64(len(b))); return len(b), nil }

// verify checks a downloaded file's size and its hash against the ETag: an
// ETag of 64 hex digits is the content's sha256 (LFS files), one of 40 its
// git blob sha1.
func verify(p, etag string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var h hash.Hash
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if size >= 0 && st.Size() != size {
		return fmt.Errorf("size %d, expected %d", st.Size(), size)
	}
	switch {
	case isHex(etag, 64):
		h = sha256.New()
	case isHex(etag, 40):
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", st.Size())
	default:
		return nil // an ETag that is not a content hash: size only
	}
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != etag {
		return fmt.Errorf("checksum %s, expected %s", got, etag)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// progress returns the reporter for one file: the configured one, else log
// lines at the start and the end.
func (c *Client) progress(t target, size int64) Progress {
	desc := fmt.Sprintf("%s %s", t.repo.ID, t.file)
	if c.cfg.Progress != nil {
		p := c.cfg.Progress()
		p.Start(desc, size)
		return p
	}
	return &logLines{d: progress.New(c.cfg.Log, progress.Options{Lines: true}), desc: desc, size: size, start: time.Now()}
}

// logLines reports a download in two lines, its start and its end, on a
// progress.Display in lines.
type logLines struct {
	d     *progress.Display
	desc  string
	size  int64
	done  int64
	start time.Time
	said  bool
}

func (l *logLines) Start(string, int64) {}

func (l *logLines) Add(n int64) {
	if !l.said {
		l.said = true
		what := "size unknown"
		if l.size >= 0 {
			what = fmt.Sprintf("%.1f MB", float64(l.size)/1e6)
		}
		l.d.Line(fmt.Sprintf("hub: downloading %s (%s)", l.desc, what))
	}
	l.done += n
}

func (l *logLines) Finish() {
	if l.said {
		s := time.Since(l.start).Seconds()
		l.d.Line(fmt.Sprintf("hub: %s: %.1f MB in %.1fs", l.desc, float64(l.done)/1e6, s))
	}
}
