// Package hubtest is a Hugging Face Hub for tests: an httptest server that
// speaks the part of the Hub's protocol that downloads use (revision info,
// tree listings, paths-info, resolve with ETag / X-Repo-Commit / LFS
// redirects to a second "CDN" host, Range requests), serves repositories
// built in memory, counts requests by kind and injects faults. The tests of
// package hub run the official huggingface_hub client against it, which is
// what makes it a faithful stand-in.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// File is one file of a commit.
type File struct {
	Content []byte
	LFS     bool // stored with git LFS: served from the CDN host
}

// Access restricts a repository.
type Access int

// Access levels.
const (
	Public    Access = iota
	Private          // needs the server's token; others get 401 RepoNotFound
	Gated            // 403 GatedRepo for everyone without the token
	Forbidden        // 403 without an error code, even with the token
)

type repo struct {
	typ, id string
	access  Access
	refs    map[string]string          // branch or tag -> commit
	commits map[string]map[string]File // commit -> path -> file
	alias   string                     // when set, this id redirects to alias
}

// Server is the test Hub. Its zero value is not usable; call New.
type Server struct {
	*httptest.Server
	CDN *httptest.Server
	// Token, when set, is the bearer token that private and gated
	// repositories accept.
	Token string
	// PageSize is the number of tree entries per page (default 1000).
	PageSize int

	mu       sync.Mutex
	repos    map[string]*repo
	counts   map[string]int
	faults   []Fault
	cdnAuth  int      // CDN requests that carried an Authorization header
	ranged   int      // GETs with a Range header
	unknown  []string // requests no handler knew
	seq      int
	requests []string
}

// Fault changes the answer to one matching request.
type Fault struct {
	Kind   string // request kind (see Count); "" matches any
	Path   string // repository file path; "" matches any
	Status int    // answer this status instead (with Retry-After: 0 for 429)
	CutAt  int64  // serve the body only up to this many bytes (-1: none), then drop the connection
	Flip   bool   // serve the body with one byte changed
	Times  int    // how many requests it applies to (default 1)
}

// New starts a test Hub and its CDN; both close with t's cleanup via Close.
func New() *Server {
	s := &Server{repos: map[string]*repo{}, counts: map[string]int{}, PageSize: 1000}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.CDN = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	return s
}

// Close stops both servers.
func (s *Server) Close() {
	s.Server.Close()
	s.CDN.Close()
}

func key(typ, id string) string { return typ + "/" + id }

// Repo creates (or returns) a repository.
func (s *Server) Repo(typ, id string, access Access) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.repos[key(typ, id)]; r != nil {
		r.access = access
		return
	}
	s.repos[key(typ, id)] = &repo{typ: typ, id: id, access: access, refs: map[string]string{}, commits: map[string]map[string]File{}}
}

// Alias makes requests for oldID redirect (307, relative) to newID, as the
// Hub does for renamed repositories.
func (s *Server) Alias(typ, oldID, newID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[key(typ, oldID)] = &repo{typ: typ, id: oldID, alias: newID}
}

// Commit records a commit holding files on branch and returns its hash.
func (s *Server) Commit(typ, id, branch string, files map[string]File) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[key(typ, id)]
	if r == nil {
		panic("hubtest: no repository " + key(typ, id))
	}
	s.seq++
	h := sha1.New()
	fmt.Fprintf(h, "%s %d", key(typ, id), s.seq)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(h, "%s %x", p, sha256.Sum256(files[p].Content))
	}
	commit := hex.EncodeToString(h.Sum(nil))
	r.commits[commit] = files
	r.refs[branch] = commit
	return commit
}

// Tag points a tag (or branch) at a commit.
func (s *Server) Tag(typ, id, tag, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[key(typ, id)].refs[tag] = commit
}

// Inject queues a fault; faults apply in order to the first matching request.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, f)
}

// Count returns the number of requests of a kind: "revision", "tree",
// "paths-info", "head" (resolve HEAD), "get" (resolve GET), "cdn" (CDN
// GET), "other".
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind]
}

// Counts returns all counts.
func (s *Server) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// Total is the number of requests of every kind.
func (s *Server) Total() int {
	n := 0
	for _, v := range s.Counts() {
		n += v
	}
	return n
}

// ResetCounts zeroes the request counts.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[string]int{}
	s.requests = nil
}

// Requests lists the requests seen since the last reset ("METHOD path").
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// CDNAuth is the number of CDN requests that carried a token (must be 0).
func (s *Server) CDNAuth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cdnAuth
}

// Ranged is the number of GETs that asked for a byte range (resumptions).
func (s *Server) Ranged() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ranged
}

// Unknown lists requests that no handler understood.
func (s *Server) Unknown() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unknown...)
}

// fault pops the fault for a request, if any.
func (s *Server) fault(kind, path string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.faults {
		f := &s.faults[i]
		if (f.Kind == "" || f.Kind == kind) && (f.Path == "" || f.Path == path) && f.Times > 0 {
			f.Times--
			out := *f
			if f.Times == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return &out
		}
	}
	return nil
}

func (s *Server) count(kind string, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[kind]++
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
}

// hubError answers like the Hub: a status with X-Error-Code/-Message.
func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

var typePrefixes = map[string]string{"datasets": "dataset", "spaces": "space", "models": "model"}

// splitRepo splits "org/name/rest..." after a type prefix into the repo id
// (two segments, or one) and the rest, trying the known repositories.
func (s *Server) splitRepo(typ string, segs []string, marker string) (*repo, string, []string) {
	for n := 2; n >= 1; n-- {
		if (marker != "" && len(segs) > n && segs[n] == marker) || (marker == "" && len(segs) == n) {
			id := strings.Join(segs[:n], "/")
			s.mu.Lock()
			r := s.repos[key(typ, id)]
			s.mu.Unlock()
			if r != nil {
				return r, id, segs[n:]
			}
		}
	}
	if len(segs) > 2 && segs[2] == marker {
		return nil, strings.Join(segs[:2], "/"), segs[2:]
	}
	if len(segs) > 1 && segs[1] == marker {
		return nil, segs[0], segs[1:]
	}
	return nil, strings.Join(segs, "/"), nil
}

// authorize applies the repository's access rule; false: answered.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rp *repo, id string) bool {
	auth := r.Header.Get("Authorization")
	if auth != "" && !strings.HasPrefix(auth, "Bearer ") {
		hubError(w, 401, "", "Invalid credentials in Authorization header")
		return false
	}
	ok := s.Token != "" && auth == "Bearer "+s.Token
	if auth != "" && !ok && s.Token != "" && rp != nil && rp.access != Public {
		hubError(w, 401, "", "Invalid credentials in Authorization header")
		return false
	}
	switch {
	case rp == nil:
		hubError(w, 401, "RepoNotFound", "Repository not found")
		return false
	case rp.access == Private && !ok:
		hubError(w, 401, "RepoNotFound", "Repository not found")
		return false
	case rp.access == Gated && !ok:
		hubError(w, 403, "GatedRepo", "Access to "+rp.typ+" "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		return false
	case rp.access == Forbidden:
		hubError(w, 403, "", "Your token does not have the permission to read this repository")
		return false
	}
	return true
}

// commitOf resolves a revision of rp (branch, tag or commit).
func (rp *repo) commitOf(rev string) (string, bool) {
	if c, ok := rp.refs[rev]; ok {
		return c, true
	}
	if _, ok := rp.commits[rev]; ok {
		return rev, true
	}
	return "", false
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	segs := strings.Split(p, "/")
	for i, sg := range segs {
		if u, err := url.PathUnescape(sg); err == nil {
			segs[i] = u
		}
	}
	if len(segs) > 2 && segs[0] == "api" {
		typ, ok := typePrefixes[segs[1]]
		if ok {
			s.serveAPI(w, r, typ, segs[2:])
			return
		}
	}
	typ := "model"
	if t, ok := typePrefixes[segs[0]]; ok && segs[0] != "models" {
		typ, segs = t, segs[1:]
	}
	rp, id, rest := s.splitRepo(typ, segs, "resolve")
	if len(rest) >= 3 && rest[0] == "resolve" {
		s.serveResolve(w, r, rp, typ, id, rest[1], strings.Join(rest[2:], "/"))
		return
	}
	s.notFound(w, r)
}

// notFound answers a request no handler knows, and records it.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.count("other", r)
	s.mu.Lock()
	s.unknown = append(s.unknown, r.Method+" "+r.URL.RequestURI())
	s.mu.Unlock()
	http.NotFound(w, r)
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, typ string, segs []string) {
	for _, marker := range []string{"revision", "tree", "paths-info", ""} {
		rp, id, rest := s.splitRepo(typ, segs, marker)
		if rest == nil && marker != "" {
			continue
		}
		if marker != "" && (len(rest) == 0 || rest[0] != marker) {
			continue
		}
		kind := marker
		if kind == "" {
			kind = "revision"
		}
		s.count(kind, r)
		if f := s.fault(kind, ""); f != nil && f.Status != 0 {
			s.faultStatus(w, f)
			return
		}
		if !s.authorize(w, r, rp, id) {
			return
		}
		rev := "main"
		if len(rest) > 1 {
			rev = rest[1]
		}
		commit, ok := rp.commitOf(rev)
		if !ok {
			hubError(w, 404, "RevisionNotFound", "Invalid rev id: "+rev)
			return
		}
		switch marker {
		case "revision", "":
			s.serveInfo(w, rp, id, commit)
		case "tree":
			s.serveTree(w, r, rp, commit, strings.Join(rest[min(2, len(rest)):], "/"))
		case "paths-info":
			s.servePathsInfo(w, r, rp, commit)
		}
		return
	}
	s.notFound(w, r)
}

func (s *Server) faultStatus(w http.ResponseWriter, f *Fault) {
	if f.Status == 429 {
		w.Header().Set("Retry-After", "0")
	}
	hubError(w, f.Status, "", http.StatusText(f.Status))
}

func (s *Server) serveInfo(w http.ResponseWriter, rp *repo, id, commit string) {
	var siblings []map[string]any
	for _, p := range sortedPaths(rp.commits[commit]) {
		siblings = append(siblings, map[string]any{"rfilename": p})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"_id": "test-" + id, "id": id, "author": strings.Split(id, "/")[0], "sha": commit, "private": rp.access == Private,
		"gated": rp.access == Gated, "disabled": false, "downloads": 0, "likes": 0, "tags": []string{},
		"lastModified": "2024-01-01T00:00:00.000Z", "createdAt": "2024-01-01T00:00:00.000Z",
		"siblings": siblings, "cardData": map[string]any{},
	})
}

func sortedPaths(files map[string]File) []string {
	out := make([]string, 0, len(files))
	for p := range files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// gitBlobSHA is git's blob hash of content.
func gitBlobSHA(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// entry is a tree listing entry of the Hub's API.
func fileEntry(p string, f File) map[string]any {
	e := map[string]any{"type": "file", "path": p, "size": len(f.Content), "oid": gitBlobSHA(f.Content)}
	if f.LFS {
		pointer := fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha256Hex(f.Content), len(f.Content))
		e["oid"] = gitBlobSHA([]byte(pointer))
		e["lfs"] = map[string]any{"oid": sha256Hex(f.Content), "size": len(f.Content), "pointerSize": len(pointer)}
	}
	return e
}

func dirEntry(p string) map[string]any {
	return map[string]any{"type": "directory", "path": p, "size": 0, "oid": gitBlobSHA([]byte("tree " + p))}
}

func truthy(v string) bool { return v == "1" || strings.EqualFold(v, "true") }

// serveTree lists the files (recursive) or the entries (one level) under dir.
func (s *Server) serveTree(w http.ResponseWriter, r *http.Request, rp *repo, commit, dir string) {
	files := rp.commits[commit]
	prefix := ""
	if dir != "" {
		prefix = strings.TrimSuffix(dir, "/") + "/"
	}
	recursive := truthy(r.URL.Query().Get("recursive"))
	var entries []map[string]any
	seenDirs := map[string]bool{}
	found := dir == ""
	for _, p := range sortedPaths(files) {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		found = true
		rest := strings.TrimPrefix(p, prefix)
		parts := strings.Split(rest, "/")
		for i := 1; i < len(parts); i++ {
			d := prefix + strings.Join(parts[:i], "/")
			if !seenDirs[d] && (recursive || i == 1) {
				seenDirs[d] = true
				entries = append(entries, dirEntry(d))
			}
		}
		if recursive || len(parts) == 1 {
			entries = append(entries, fileEntry(p, files[p]))
		}
	}
	if !found {
		hubError(w, 404, "EntryNotFound", dir+" does not exist on \""+commit+"\"")
		return
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i]["path"].(string) < entries[j]["path"].(string) })
	start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	end := min(len(entries), start+s.PageSize)
	if end < len(entries) {
		q := r.URL.Query()
		q.Set("cursor", strconv.Itoa(end))
		next := *r.URL
		next.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, s.URL, next.RequestURI()))
	}
	w.Header().Set("Content-Type", "application/json")
	page := entries[start:end]
	if page == nil {
		page = []map[string]any{}
	}
	json.NewEncoder(w).Encode(page)
}

// servePathsInfo answers POST paths-info (form or JSON "paths").
func (s *Server) servePathsInfo(w http.ResponseWriter, r *http.Request, rp *repo, commit string) {
	var paths []string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var body struct {
			Paths []string `json:"paths"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		paths = body.Paths
	} else {
		r.ParseForm()
		paths = r.PostForm["paths"]
	}
	files := rp.commits[commit]
	out := []map[string]any{}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		if f, ok := files[p]; ok {
			out = append(out, fileEntry(p, f))
			continue
		}
		for _, q := range sortedPaths(files) {
			if p == "" || strings.HasPrefix(q, p+"/") {
				out = append(out, dirEntry(p))
				break
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, rp *repo, typ, id, rev, path string) {
	kind := "get"
	if r.Method == http.MethodHead {
		kind = "head"
	}
	s.count(kind, r)
	if f := s.fault(kind, path); f != nil && f.Status != 0 {
		s.faultStatus(w, f)
		return
	} else if f != nil {
		s.Inject(*f) // a body fault: applies to the download itself
	}
	if rp != nil && rp.alias != "" {
		prefix := map[string]string{"dataset": "/datasets/", "space": "/spaces/", "model": "/"}[typ]
		w.Header().Set("Location", prefix+rp.alias+"/resolve/"+url.PathEscape(rev)+"/"+path)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	if !s.authorize(w, r, rp, id) {
		return
	}
	commit, ok := rp.commitOf(rev)
	if !ok {
		hubError(w, 404, "RevisionNotFound", "Invalid rev id: "+rev)
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	f, ok := rp.commits[commit][path]
	if !ok {
		hubError(w, 404, "EntryNotFound", path+" does not exist on \""+rev+"\"")
		return
	}
	if f.LFS {
		sum := sha256Hex(f.Content)
		w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Content)))
		w.Header().Set("ETag", `"`+gitBlobSHA(f.Content)+`"`)
		w.Header().Set("Location", s.CDN.URL+"/blobs/"+sum+"?expires=never&signature=test")
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+gitBlobSHA(f.Content)+`"`)
	s.serveBody(w, r, f.Content, path, kind)
}

// serveBody serves content with Range support and the queued body faults.
func (s *Server) serveBody(w http.ResponseWriter, r *http.Request, content []byte, path, kind string) {
	body := content
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && r.Method == http.MethodGet {
		s.mu.Lock()
		s.ranged++
		s.mu.Unlock()
		var from int
		if _, err := fmt.Sscanf(rg, "bytes=%d-", &from); err != nil || from < 0 || from >= len(content) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(content)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(content)-1, len(content)))
		body, status = content[from:], http.StatusPartialContent
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	f := s.fault(kind, path)
	if f != nil && f.Status != 0 {
		s.faultStatus(w, f)
		return
	}
	if f != nil && f.Flip {
		body = append([]byte(nil), body...)
		body[len(body)/2] ^= 0x20
	}
	w.WriteHeader(status)
	if f != nil && f.CutAt != 0 && f.CutAt < int64(len(body)) {
		w.Write(body[:max(f.CutAt, 0)])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler) // drops the connection mid-body
	}
	w.Write(body)
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.count("cdn", r)
	if r.Header.Get("Authorization") != "" {
		s.mu.Lock()
		s.cdnAuth++
		s.mu.Unlock()
	}
	sum := strings.TrimPrefix(r.URL.Path, "/blobs/")
	s.mu.Lock()
	var content []byte
	var path string
	for _, rp := range s.repos {
		for _, files := range rp.commits {
			for p, f := range files {
				if f.LFS && sha256Hex(f.Content) == sum {
					content, path = f.Content, p
				}
			}
		}
	}
	s.mu.Unlock()
	if content == nil {
		http.NotFound(w, r)
		return
	}
	s.serveBody(w, r, content, path, "cdn")
}
