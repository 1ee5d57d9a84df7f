// Package corpus streams the documents of a code corpus: a directory tree of
// source files filtered by extension, Hugging Face dataset files as they lie
// on disk (*.parquet, *.json, *.jsonl, optionally .gz, including the hub cache
// layout datasets--org--name/snapshots/<rev>/...), or, by default, the Python
// standard library of the local Python installation.
//
// Files that cannot be read, are empty, or are not UTF-8 are counted and
// reported in Stats, never fatal alone; a corpus without any document is an
// error.
package corpus

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// Kinds of Source.
const (
	KindStdlib = "stdlib" // the local Python standard library (the default)
	KindDir    = "dir"    // a directory tree of source files
	KindHF     = "hf"     // Hugging Face dataset files (parquet / json / jsonl)
	KindHub    = "hub"    // a split of a Hugging Face Hub dataset repository
)

// Source describes a corpus.
type Source struct {
	// Kind is KindStdlib (default), KindDir or KindHF.
	Kind string `json:"kind"`
	// Path is the directory or file (KindDir, KindHF); for KindStdlib it
	// overrides the detected standard library directory.
	Path string `json:"path,omitempty"`
	// Extensions filter the files of KindDir and KindStdlib (default ".py").
	Extensions []string `json:"extensions,omitempty"`
	// Column is the text column of KindHF and KindHub files (default "content").
	Column string `json:"column,omitempty"`
	// Repo, Revision and Split name a KindHub source: a dataset repository
	// ("org/name"), a branch, tag or commit (default "main") and a split
	// (default "train"), read as datasets.load_dataset reads them.
	Repo     string `json:"repo,omitempty"`
	Revision string `json:"revision,omitempty"`
	Split    string `json:"split,omitempty"`
	// FileList, when set, lists the files to read, in order, relative to Path
	// ('/'-separated): a KindHub source once its snapshot is downloaded
	// (data.ResolveHub sets Path and FileList).
	FileList []string `json:"-"`
}

// Document is one text of the corpus.
type Document struct {
	// Name identifies the document: its path relative to the source root,
	// with "#row" appended for rows of dataset files.
	Name string
	Text string
	// File is the path relative to the source root ('/'-separated) and Row
	// the 0-based row within a dataset file (-1 for source files).
	File string
	Row  int64
	// Index is the position of the document among every file or row of the
	// source, skipped ones included (datasets' row index for dataset files).
	Index int64
	// Skip says why WalkAll passes a document without text ("" otherwise).
	Skip string
}

// Stats counts what a Walk read and skipped.
type Stats struct {
	Files      int   // files opened
	Rows       int64 // files or rows seen, skipped ones included
	Documents  int   // documents passed on
	Bytes      int64 // bytes of those documents
	Unreadable int   // files or rows that could not be read
	Empty      int   // empty documents
	NotUTF8    int   // documents that are not valid UTF-8
	// Problems holds the first few reasons for skips, one line each.
	Problems []string
}

// Skipped returns the number of skipped files or rows.
func (s *Stats) Skipped() int { return s.Unreadable + s.Empty + s.NotUTF8 }

func (s *Stats) problem(format string, args ...any) {
	if len(s.Problems) < 20 {
		s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
	}
}

// String summarises the counts in one line.
func (s *Stats) String() string {
	return fmt.Sprintf("%d documents (%.1f MB) from %d files; skipped: %d unreadable, %d empty, %d not UTF-8",
		s.Documents, float64(s.Bytes)/1e6, s.Files, s.Unreadable, s.Empty, s.NotUTF8)
}

// Normalize fills defaults and checks the source.
func (s Source) Normalize() (Source, error) {
	if s.Kind == "" {
		s.Kind = KindStdlib
	}
	switch s.Kind {
	case KindStdlib, KindDir:
		if len(s.Extensions) == 0 {
			s.Extensions = []string{".py"}
		}
		for i, e := range s.Extensions {
			if !strings.HasPrefix(e, ".") {
				s.Extensions[i] = "." + e
			}
		}
		s.Column = ""
	case KindHF:
		if s.Column == "" {
			s.Column = "content"
		}
		s.Extensions = nil
	case KindHub:
		if s.Column == "" {
			s.Column = "content"
		}
		if s.Revision == "" {
			s.Revision = "main"
		}
		if s.Split == "" {
			s.Split = "train"
		}
		s.Extensions = nil
		if s.Repo == "" {
			return s, fmt.Errorf("corpus kind %q needs a dataset repository (org/name)", s.Kind)
		}
		return s, nil
	default:
		return s, fmt.Errorf("corpus kind %q: want %q, %q, %q or %q", s.Kind, KindStdlib, KindDir, KindHF, KindHub)
	}
	if s.Kind != KindStdlib && s.Path == "" {
		return s, fmt.Errorf("corpus kind %q needs a path", s.Kind)
	}
	return s, nil
}

// String describes the source in one line.
func (s Source) String() string {
	switch s.Kind {
	case KindHub:
		return fmt.Sprintf("hub:%s@%s split %s (column %s)", s.Repo, s.Revision, s.Split, s.Column)
	case KindHF:
		return fmt.Sprintf("hf:%s (column %s)", s.Path, s.Column)
	case KindDir:
		return fmt.Sprintf("dir:%s (%s)", s.Path, strings.Join(s.Extensions, ","))
	}
	if s.Path != "" {
		return "stdlib:" + s.Path
	}
	return "stdlib"
}

// StdlibDir returns the standard library directory of the local Python:
// $CLM_STDLIB if set, else what python3 (or python) reports.
func StdlibDir() (string, error) {
	if d := os.Getenv("CLM_STDLIB"); d != "" {
		return d, nil
	}
	var errs []string
	for _, py := range []string{"python3", "python"} {
		out, err := exec.Command(py, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])").Output()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", py, err))
			continue
		}
		d := strings.TrimSpace(string(out))
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d, nil
		}
		errs = append(errs, fmt.Sprintf("%s reports %q, not a directory", py, d))
	}
	return "", fmt.Errorf("no local Python standard library found (%s); set CLM_STDLIB or choose another corpus", strings.Join(errs, "; "))
}

// Root returns the directory (or file) the source reads, resolving the
// standard library and the hub cache layout.
func (s Source) Root() (string, error) {
	s, err := s.Normalize()
	if err != nil {
		return "", err
	}
	if s.Kind == KindStdlib && s.Path == "" {
		return StdlibDir()
	}
	if s.Kind == KindHub {
		if s.Path == "" || s.FileList == nil {
			return "", fmt.Errorf("corpus %s: not downloaded yet (data.ResolveHub)", s)
		}
		return s.Path, nil
	}
	if s.Kind == KindHF {
		return hubSnapshot(s.Path)
	}
	return s.Path, nil
}

// hubSnapshot resolves a hub cache repository directory
// (datasets--org--name, holding snapshots/<rev>/) to the snapshot that
// refs/main names, or the only snapshot. Other paths are returned as given.
func hubSnapshot(path string) (string, error) {
	snaps := filepath.Join(path, "snapshots")
	ents, err := os.ReadDir(snaps)
	if err != nil {
		return path, nil
	}
	if ref, err := os.ReadFile(filepath.Join(path, "refs", "main")); err == nil {
		p := filepath.Join(snaps, strings.TrimSpace(string(ref)))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	var revs []string
	for _, e := range ents {
		if e.IsDir() {
			revs = append(revs, e.Name())
		}
	}
	switch len(revs) {
	case 0:
		return "", fmt.Errorf("hub cache %s: no snapshot under snapshots/", path)
	case 1:
		return filepath.Join(snaps, revs[0]), nil
	}
	return "", fmt.Errorf("hub cache %s: several snapshots (%s) and no refs/main; give the snapshot directory", path, strings.Join(revs, ", "))
}

// hfFile reports whether name is a dataset file that KindHF reads.
func hfFile(name string) bool {
	n := strings.TrimSuffix(strings.ToLower(name), ".gz")
	return strings.HasSuffix(n, ".parquet") || strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".json")
}

// Files returns the files of the source, sorted, relative names included.
func (s Source) Files() (root string, files []string, err error) {
	s, err = s.Normalize()
	if err != nil {
		return "", nil, err
	}
	root, err = s.Root()
	if err != nil {
		return "", nil, err
	}
	if s.FileList != nil {
		for _, f := range s.FileList {
			files = append(files, filepath.Join(root, filepath.FromSlash(f)))
		}
		return root, files, nil
	}
	st, err := os.Stat(root)
	if err != nil {
		return "", nil, fmt.Errorf("corpus %s: %w", s, err)
	}
	match := func(name string) bool {
		if s.Kind == KindHF {
			return hfFile(name)
		}
		for _, e := range s.Extensions {
			if strings.HasSuffix(name, e) {
				return true
			}
		}
		return false
	}
	if !st.IsDir() {
		return filepath.Dir(root), []string{root}, nil
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // unreadable subdirectories are skipped
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "__pycache__" ||
				(s.Kind == KindStdlib && (name == "site-packages" || name == "dist-packages"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !match(name) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// The hub cache links snapshot files to blobs.
			if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
				files = append(files, p) // reported as unreadable when read
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("corpus %s: %w", s, err)
	}
	sort.Strings(files)
	return root, files, nil
}

// Fingerprint identifies the corpus content for caches: the source settings
// and every file's name, size and modification time.
func (s Source) Fingerprint() (string, error) {
	s, err := s.Normalize()
	if err != nil {
		return "", err
	}
	root, files, err := s.Files()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if s.Kind == KindHub {
		// A commit's files never change: its name (the snapshot folder) and
		// the files read identify the content.
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\n", s.Kind, s.Repo, filepath.Base(root), s.Split, s.Column)
		for _, f := range s.FileList {
			fmt.Fprintf(h, "%s\n", f)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\n", s.Kind, root, s.Column, strings.Join(s.Extensions, ","))
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(h, "%s\x00missing\n", f)
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", f, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Walk streams the documents of the source, in a deterministic order, to fn.
// An error from fn stops the walk and is returned. Skipped files and rows are
// counted in the returned Stats, not passed on; a corpus that yields no
// document is an error.
func (s Source) Walk(ctx context.Context, fn func(Document) error) (Stats, error) {
	return s.walk(ctx, fn, false)
}

// WalkAll is Walk that also passes skipped files and rows (Skip says why,
// Text is empty), so that Document.Index counts every row as datasets
// counts them.
func (s Source) WalkAll(ctx context.Context, fn func(Document) error) (Stats, error) {
	return s.walk(ctx, fn, true)
}

// walk implements Walk and WalkAll (all).
func (s Source) walk(ctx context.Context, fn func(Document) error, all bool) (Stats, error) {
	s, err := s.Normalize()
	if err != nil {
		return Stats{}, err
	}
	root, files, err := s.Files()
	if err != nil {
		return Stats{}, err
	}
	w := &walker{src: s, fn: fn, all: all}
	tabular := s.Kind == KindHF || s.Kind == KindHub
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return w.st, err
		}
		rel, err := filepath.Rel(root, f)
		if err != nil {
			rel = f
		}
		rel = filepath.ToSlash(rel)
		w.st.Files++
		if tabular {
			err = w.readDatasetFile(f, rel)
		} else {
			err = w.readSourceFile(f, rel)
		}
		if err != nil {
			return w.st, err
		}
	}
	if w.st.Documents == 0 {
		return w.st, w.noDocuments(root, files)
	}
	return w.st, nil
}

// walker passes the documents of one walk to fn, counting them in st.
type walker struct {
	src Source
	fn  func(Document) error
	all bool // pass skipped documents too
	st  Stats
}

// emit numbers d and passes it to fn with text, or counts why it is skipped:
// a null value, no text, or text that is not UTF-8. Skipped documents reach
// fn only in a WalkAll.
func (w *walker) emit(d Document, text []byte, null bool) error {
	st := &w.st
	d.Index = st.Rows
	st.Rows++
	switch {
	case null:
		d.Skip = "null"
		st.Empty++
	case len(text) == 0:
		d.Skip = "empty"
		st.Empty++
	case !utf8.Valid(text):
		d.Skip = "not UTF-8"
		st.NotUTF8++
	}
	if d.Skip != "" {
		st.problem("%s: %s", d.Name, d.Skip)
		if w.all {
			return w.fn(d)
		}
		return nil
	}
	st.Documents++
	st.Bytes += int64(len(text))
	d.Text = string(text)
	return w.fn(d)
}

// readSourceFile emits the source file path, named rel, as one document. A
// file that cannot be read is counted as unreadable.
func (w *walker) readSourceFile(path, rel string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		w.st.Unreadable++
		w.st.problem("%s: %v", path, err)
		d := Document{Name: rel, File: rel, Row: -1, Index: w.st.Rows, Skip: "unreadable"}
		w.st.Rows++
		if w.all {
			return w.fn(d)
		}
		return nil
	}
	return w.emit(Document{Name: rel, File: rel, Row: -1}, b, false)
}

// readDatasetFile emits each row of the dataset file path, named rel. A
// file that cannot be read is counted as unreadable, except in a hub split,
// whose row numbers it would shift; a missing column and an error from fn
// stop the walk.
func (w *walker) readDatasetFile(path, rel string) error {
	err := readDataset(path, w.src.Column, func(row int64, text []byte, null bool) error {
		return w.emit(Document{Name: fmt.Sprintf("%s#%d", rel, row), File: rel, Row: row}, text, null)
	})
	var fatal *fatalError
	if errors.As(err, &fatal) {
		return fatal.err
	}
	if errors.Is(err, errStop) {
		return err
	}
	if err != nil && w.src.Kind == KindHub {
		// Row positions must match datasets', which cannot skip a file.
		return fmt.Errorf("corpus %s: %v", w.src, err)
	}
	if err != nil {
		w.st.Unreadable++
		w.st.problem("%v", err)
	}
	return nil
}

// noDocuments returns the error of a walk of files under root that found no
// document, with what was skipped and why.
func (w *walker) noDocuments(root string, files []string) error {
	st := &w.st
	msg := fmt.Sprintf("corpus %s: no documents", w.src)
	if len(files) == 0 {
		msg += " (no matching files under " + root + ")"
	} else {
		msg += fmt.Sprintf(" (%d files; skipped %d unreadable, %d empty, %d not UTF-8", len(files), st.Unreadable, st.Empty, st.NotUTF8)
		if len(st.Problems) > 0 {
			msg += "; first: " + st.Problems[0]
		}
		msg += ")"
	}
	return errors.New(msg)
}

// Collect returns all documents of the source.
func (s Source) Collect(ctx context.Context) ([]Document, Stats, error) {
	var docs []Document
	st, err := s.Walk(ctx, func(d Document) error {
		docs = append(docs, d)
		return nil
	})
	return docs, st, err
}

var errStop = errors.New("stop")

// fatalError marks errors that must stop the walk (a missing column).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// readDataset reads column of one dataset file, calling fn per row.
func readDataset(path, column string, fn func(row int64, text []byte, null bool) error) error {
	lower := strings.ToLower(path)
	if strings.HasSuffix(lower, ".parquet") {
		return readParquet(path, column, fn)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(lower, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	return readJSON(path, bufio.NewReaderSize(r, 1<<20), column, fn)
}

func columnsMissing(path, column string, present []string) error {
	slices.Sort(present)
	return &fatalError{fmt.Errorf("%s: no column %q (columns: %s); choose one with -column", path, column, strings.Join(present, ", "))}
}
