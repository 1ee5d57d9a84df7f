package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"clm/data"
	"clm/data/corpus"
	"clm/train"
)

func init() {
	register("data", "prepare, inspect or download data: the token cache, the selected documents, Hub datasets", runData)
}

var dataSubs = [][2]string{
	{"prepare", "select, tokenize and cache a corpus (the default subcommand)"},
	{"inspect", "describe a token cache (of a run: clm data inspect RUN), or list the selected documents"},
	{"download", "fetch the original's datasets and tokenizer from the Hub into its cache"},
	{"cache", "list the token caches, least recently used first"},
}

func runData(args []string, stdout io.Writer) error {
	if isHelp(args) {
		subcommands(stdout, "data", dataSubs)
		return nil
	}
	sub := "prepare"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "prepare", "inspect":
		return dataPrepare(sub, args, stdout)
	case "download":
		return dataDownload(args, stdout)
	case "cache":
		return dataCache(args, stdout)
	}
	return fmt.Errorf("data: unknown subcommand %q (want prepare, inspect, download or cache; see clm data -h)", sub)
}

// dataCache lists the token caches: one per content, least recently used
// first (the first to go beyond CLM_TOKEN_CACHE_LIMIT).
func dataCache(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "data cache", "clm data cache",
		"Lists the token caches of $CLM_CACHE/data: one per corpus, tokenizer and selection, least recently used first "+
			"(the first removed beyond CLM_TOKEN_CACHE_LIMIT, default 50G; a cache in use is never removed).", "clm data cache")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := fs.atMost(pos, 0); err != nil {
		return err
	}
	root, err := data.CacheRoot()
	if err != nil {
		return err
	}
	caches, err := data.TokenCaches(root)
	if err != nil {
		return err
	}
	limit, err := data.CacheLimit()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "cache\tsize\tlast used\tcorpus\ttokenizer\tcontext\ttrain docs\tvalid docs\tseed\t")
	var total int64
	for _, c := range caches {
		total += c.Bytes
		name := filepath.Base(c.Dir)
		if c.InUse {
			name += " (in use)"
		}
		corpusName, tok, ctx, train, valid, seed := "?", "?", "?", "?", "?", "?"
		if m := c.Manifest; m != nil {
			corpusName, tok = m.Settings.Train.String(), fmt.Sprintf("%.12s", m.TokenizerSHA256)
			ctx, seed = fmt.Sprint(m.Settings.ContextLength), fmt.Sprint(m.Settings.Seed)
			if sp := m.Splits["train"]; sp != nil {
				train = fmt.Sprint(sp.Documents)
			}
			if sp := m.Splits["valid"]; sp != nil {
				valid = fmt.Sprint(sp.Documents)
			}
		}
		fmt.Fprintf(tw, "%s\t%.1f MB\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, float64(c.Bytes)/1e6,
			c.LastUsed.Format("2006-01-02 15:04"), corpusName, tok, ctx, train, valid, seed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d token caches in %s, %.1f MB of the %.1f GiB limit (CLM_TOKEN_CACHE_LIMIT); the least recently used go first\n",
		len(caches), filepath.Join(root, "data"), float64(total)/1e6, float64(limit)/(1<<30))
	return nil
}

// validFlags registers the flags of a separate validation corpus.
func validFlags(fs *flag.FlagSet) func(train corpus.Source) (*corpus.Source, error) {
	validPath := fs.String("valid-path", "", "separate validation corpus of the same kind (default: a hash split of the corpus)")
	validRepo := fs.String("valid-dataset", "", "validation dataset repository on the Hub (-corpus hub), e.g. "+data.PaperValidDataset)
	validRev := fs.String("valid-revision", "", "its branch, tag or commit (default: -revision)")
	validSplit := fs.String("valid-split", "validation", "its split")
	return func(train corpus.Source) (*corpus.Source, error) {
		switch {
		case *validRepo != "":
			if train.Kind != corpus.KindHub {
				return nil, fmt.Errorf("-valid-dataset needs -corpus hub")
			}
			return data.HubValid(train, *validRepo, *validRev, *validSplit), nil
		case *validPath != "":
			v := train
			v.Path = *validPath
			return &v, nil
		}
		return nil, nil
	}
}

func dataPrepare(sub string, args []string, stdout io.Writer) error {
	synopsis, about, examples := "clm data prepare [flags]", "Selects, tokenizes and caches a corpus as a run would (a run does this itself; this prepares ahead).",
		[]string{"clm data prepare -tokenizer stdlib-4096.json -num-token-mult 1", "clm data prepare -corpus hub -dataset huggingface-course/codeparrot-ds-train -valid-dataset huggingface-course/codeparrot-ds-valid -tokenizer hub:huggingface-course/code-search-net-tokenizer"}
	if sub == "inspect" {
		synopsis, about, examples = "clm data inspect [flags] [RUN]",
			"Describes the token cache of RUN's experiment, or of the corpus and tokenizer the flags name, without building it; -list prints the selected documents.",
			[]string{"clm data inspect runs/demo", "clm data inspect -corpus stdlib -tokenizer stdlib-4096.json -list valid"}
	}
	fs := newFlags(stdout, "data "+sub, synopsis, about, examples...)
	src := corpusFlags(fs.FlagSet, "")
	valid := validFlags(fs.FlagSet)
	tok := fs.String("tokenizer", "", "tokenizer.json (or directory / vocab.json:merges.txt, or hub:org/name[@revision]); required")
	ctxLen := fs.Int("context", 128, "chunk length in tokens")
	mult := fs.Float64("num-token-mult", 2, "take num-token-mult x 100000 training documents (2, as data.num_token_mult)")
	validDocs := fs.Int("valid-docs", 2000, "validation documents")
	validFrac := fs.Float64("valid-fraction", 0.05, "share of documents held out for validation without a validation corpus")
	seed := fs.Int64("seed", 0, "document shuffle seed (the original's Dataset.shuffle(seed))")
	cache := fs.String("cache", "", "token cache directory (default under $CLM_CACHE)")
	workers := fs.Int("workers", 0, "tokenizing goroutines (default: all cores)")
	list := ""
	if sub == "inspect" {
		fs.StringVar(&list, "list", "", "list the selected documents of a split (train or valid) in selection order, as <file>:<row>")
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if sub == "inspect" && len(pos) == 1 && list == "" {
		return inspectRun(pos[0], stdout)
	}
	if err := fs.atMost(pos, 0); err != nil {
		return err
	}
	o := data.Options{Train: src(), Tokenizer: *tok, ContextLength: *ctxLen, NumTokenMult: *mult, ValidDocs: *validDocs,
		ValidFraction: *validFrac, Seed: *seed, CacheDir: *cache, Workers: *workers, Log: os.Stderr}
	if o.Valid, err = valid(o.Train); err != nil {
		return fmt.Errorf("data %s: %v", sub, err)
	}
	ctx, stop := signalContext()
	defer stop()
	if list != "" {
		docs, err := data.Selected(ctx, o, list)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(stdout)
		for _, d := range docs {
			fmt.Fprintln(w, d)
		}
		return w.Flush()
	}
	if *tok == "" {
		return fmt.Errorf("data %s: -tokenizer is required (train one with `clm tokenizer train -o tokenizer.json`)", sub)
	}
	var ds *data.Dataset
	if sub == "inspect" {
		ds, err = data.Open(ctx, o)
	} else {
		ds, err = data.Prepare(ctx, o)
	}
	if err != nil {
		return err
	}
	defer ds.Close()
	fmt.Fprint(stdout, ds.Summary())
	return nil
}

// inspectRun describes the token cache of a run's experiment.
func inspectRun(run string, stdout io.Writer) error {
	exp, err := train.Load(train.RunConfig(run), nil)
	if err != nil {
		return fmt.Errorf("data inspect: %s is not a run folder: %w", run, err)
	}
	ds, err := train.OpenData(context.Background(), exp, os.Stderr)
	if err != nil {
		return fmt.Errorf("data inspect: %w", err)
	}
	defer ds.Close()
	fmt.Fprint(stdout, ds.Summary())
	return nil
}

func dataDownload(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "data download", "clm data download [flags]",
		"Fetches the original's datasets and tokenizer (or those the flags name) into the Hub cache, for offline runs (HF_HUB_OFFLINE=1) here or on a machine the cache is copied to.",
		"clm data download", "HF_HOME=/mnt/shared/hf clm data download -dataset \"\" -valid-dataset \"\"")
	repo := fs.String("dataset", data.PaperTrainDataset, "training dataset repository (\"\" for none)")
	rev := fs.String("revision", "main", "its branch, tag or commit")
	split := fs.String("split", "train", "its split")
	validRepo := fs.String("valid-dataset", data.PaperValidDataset, "validation dataset repository (\"\" for none)")
	validRev := fs.String("valid-revision", "", "its branch, tag or commit (default: -revision)")
	validSplit := fs.String("valid-split", "validation", "its split")
	col := fs.String("column", "content", "text column")
	tok := fs.String("tokenizer", data.PaperTokenizer, "tokenizer model repository (\"\" for none)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := fs.atMost(pos, 0); err != nil {
		return err
	}
	train := corpus.Source{Kind: corpus.KindHub, Repo: *repo, Revision: *rev, Split: *split, Column: *col}
	var sources []corpus.Source
	if *repo != "" {
		sources = append(sources, train)
	}
	if *validRepo != "" {
		sources = append(sources, *data.HubValid(train, *validRepo, *validRev, *validSplit))
	}
	t := *tok
	if t != "" && !strings.HasPrefix(t, data.HubPrefix) {
		t = data.HubPrefix + t
	}
	ctx, stop := signalContext()
	defer stop()
	o := data.Options{Log: os.Stderr}
	c := o.HubClient()
	fmt.Fprintf(os.Stderr, "hub: %s\n", c.Config())
	if err := data.Download(ctx, c, sources, t, stdout); err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	return nil
}
