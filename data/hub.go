package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"clm/data/bpe"
	"clm/data/corpus"
	"clm/hub"
)

// Origin records which commit of a Hub repository a source or tokenizer
// came from (the token cache's manifest keeps it).
type Origin struct {
	Repo     string   `json:"repo"`
	Revision string   `json:"revision"`
	Commit   string   `json:"commit"`
	Split    string   `json:"split,omitempty"`
	Files    []string `json:"files,omitempty"`
}

func (o Origin) String() string {
	s := fmt.Sprintf("%s@%s (commit %.12s)", o.Repo, o.Revision, o.Commit)
	if o.Split != "" {
		s += " split " + o.Split
	}
	return s
}

// HubPrefix marks a tokenizer on the Hub: "hub:org/name" or
// "hub:org/name@revision".
const HubPrefix = "hub:"

// The original's data: CodeParrot as the Hugging Face course published it,
// and the tokenizer the course trained on code-search-net.
const (
	PaperTrainDataset = "huggingface-course/codeparrot-ds-train"
	PaperValidDataset = "huggingface-course/codeparrot-ds-valid"
	PaperTokenizer    = "hub:huggingface-course/code-search-net-tokenizer"
)

// HubValid is the validation source on the Hub that goes with train:
// dataset repo at rev (default: train's revision), split split, read from
// train's column.
func HubValid(train corpus.Source, repo, rev, split string) *corpus.Source {
	if rev == "" {
		rev = train.Revision
	}
	return &corpus.Source{Kind: corpus.KindHub, Repo: repo, Revision: rev, Split: split, Column: train.Column}
}

// HubClient returns o's client, or one configured from the environment
// that logs to o.Log.
func (o Options) HubClient() *hub.Client {
	if o.Hub != nil {
		return o.Hub
	}
	cfg := hub.FromEnv()
	cfg.Log = o.Log
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if w := cfg.Log; IsTerminal(w) {
		cfg.Progress = func() hub.Progress { return DefaultProgress(w) } // a bar per file
	} // elsewhere the client logs a line as each file starts and ends
	return hub.New(cfg)
}

// ResolveHub downloads the data files of a KindHub source's split (what
// datasets.load_dataset would read, in its order) and returns the source
// pointing at them, with its origin. Other sources are returned as given.
func ResolveHub(ctx context.Context, c *hub.Client, src corpus.Source) (corpus.Source, *Origin, error) {
	if src.Kind != corpus.KindHub || src.FileList != nil {
		return src, nil, nil
	}
	src, err := src.Normalize()
	if err != nil {
		return src, nil, err
	}
	repo := hub.Dataset(src.Repo)
	// The dataset card first: its configs may name the data files.
	snap, err := c.Snapshot(ctx, repo, src.Revision, func(p string) bool { return p == "README.md" })
	if err != nil {
		return src, nil, err
	}
	var paths []string
	for _, f := range snap.Files {
		paths = append(paths, f.Path)
	}
	var readme []byte
	if snap.Has("README.md") {
		if readme, err = os.ReadFile(filepath.Join(snap.Dir, "README.md")); err != nil {
			return src, nil, err
		}
	}
	files, _, err := corpus.DataFiles(paths, readme, src.Split)
	if err != nil {
		return src, nil, fmt.Errorf("dataset %s@%s: %v", src.Repo, src.Revision, err)
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f] = true
	}
	if err := c.Fetch(ctx, snap, func(p string) bool { return want[p] }); err != nil {
		return src, nil, err
	}
	src.Path, src.FileList = snap.Dir, files
	return src, &Origin{Repo: src.Repo, Revision: src.Revision, Commit: snap.Commit, Split: src.Split, Files: files}, nil
}

// ResolveTokenizer downloads a "hub:org/name[@revision]" tokenizer
// (tokenizer.json, else vocab.json and merges.txt) and returns its local
// path and origin; other paths are returned as given.
func ResolveTokenizer(ctx context.Context, c *hub.Client, spec string) (string, *Origin, error) {
	rest, ok := strings.CutPrefix(spec, HubPrefix)
	if !ok {
		return spec, nil, nil
	}
	id, rev, _ := strings.Cut(rest, "@")
	if rev == "" {
		rev = "main"
	}
	repo := hub.Model(id)
	names := map[string]bool{"tokenizer.json": true, "vocab.json": true, "merges.txt": true,
		"tokenizer_config.json": true, "special_tokens_map.json": true}
	snap, err := c.Snapshot(ctx, repo, rev, func(p string) bool { return names[p] })
	if err != nil {
		return "", nil, err
	}
	o := &Origin{Repo: id, Revision: rev, Commit: snap.Commit}
	switch {
	case snap.Has("tokenizer.json"):
		return filepath.Join(snap.Dir, "tokenizer.json"), o, nil
	case snap.Has("vocab.json") && snap.Has("merges.txt"):
		return filepath.Join(snap.Dir, "vocab.json") + ":" + filepath.Join(snap.Dir, "merges.txt"), o, nil
	}
	return "", nil, fmt.Errorf("tokenizer %s: model %s@%s holds neither tokenizer.json nor vocab.json+merges.txt", spec, id, rev)
}

// Resolve downloads what o names on the Hub (datasets of KindHub sources, a
// hub: tokenizer) and returns o pointing at the local files, with their
// origins in o.Origins.
func Resolve(ctx context.Context, o Options) (Options, error) {
	pending := func(s *corpus.Source) bool { return s != nil && s.Kind == corpus.KindHub && s.FileList == nil }
	needs := pending(&o.Train) || pending(o.Valid) || strings.HasPrefix(o.Tokenizer, HubPrefix)
	if !needs {
		return o, nil
	}
	c := o.HubClient()
	if o.Origins == nil {
		o.Origins = map[string]Origin{}
	}
	var org *Origin
	var err error
	if o.Train, org, err = ResolveHub(ctx, c, o.Train); err != nil {
		return o, err
	} else if org != nil {
		o.Origins["train"] = *org
	}
	if o.Valid != nil {
		v := *o.Valid
		if v, org, err = ResolveHub(ctx, c, v); err != nil {
			return o, fmt.Errorf("validation: %w", err)
		} else if org != nil {
			o.Origins["valid"] = *org
		}
		o.Valid = &v
	}
	if o.Tokenizer, org, err = ResolveTokenizer(ctx, c, o.Tokenizer); err != nil {
		return o, err
	} else if org != nil {
		o.Origins["tokenizer"] = *org
	}
	return o, nil
}

// Download fetches Hub datasets' splits and a tokenizer into the shared
// cache without tokenizing (`clm data download`); it reports each to log.
func Download(ctx context.Context, c *hub.Client, sources []corpus.Source, tokenizer string, log io.Writer) error {
	var errs []error
	for _, s := range sources {
		r, org, err := ResolveHub(ctx, c, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if org != nil {
			fmt.Fprintf(log, "dataset %s: data files %d, in %s\n", org, len(r.FileList), r.Path)
		}
	}
	if tokenizer != "" {
		p, org, err := ResolveTokenizer(ctx, c, tokenizer)
		if err != nil {
			errs = append(errs, err)
		} else if org != nil {
			fmt.Fprintf(log, "tokenizer %s: %s\n", org, p)
		}
	}
	return errors.Join(errs...)
}

// LoadTokenizer loads a tokenizer by path or "hub:org/name[@revision]"
// (downloaded into the Hub cache, or served from it), reporting to log.
func LoadTokenizer(ctx context.Context, spec string, log io.Writer) (*bpe.Tokenizer, error) {
	if strings.HasPrefix(spec, HubPrefix) {
		p, _, err := ResolveTokenizer(ctx, (Options{Log: log}).HubClient(), spec)
		if err != nil {
			return nil, err
		}
		spec = p
	}
	return bpe.Load(spec)
}
