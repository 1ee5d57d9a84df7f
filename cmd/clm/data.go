package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"clm/data"
)

func init() {
	register("data", "prepare or inspect the token cache (documents, chunks, tokens)", runData)
}

func runData(args []string, stdout io.Writer) error {
	sub := "prepare"
	if len(args) > 0 && (args[0] == "prepare" || args[0] == "inspect") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("clm data "+sub, flag.ContinueOnError)
	src := corpusFlags(fs, "")
	validPath := fs.String("valid-path", "", "separate validation corpus of the same kind (default: a hash split of the corpus)")
	tok := fs.String("tokenizer", "", "tokenizer.json (or directory / vocab.json:merges.txt); required")
	ctxLen := fs.Int("context", 128, "chunk length in tokens")
	mult := fs.Float64("num-token-mult", 1, "take num-token-mult x 100000 training documents")
	validDocs := fs.Int("valid-docs", 2000, "validation documents")
	validFrac := fs.Float64("valid-fraction", 0.05, "share of documents held out for validation without -valid-path")
	seed := fs.Int64("seed", 0, "document shuffle seed")
	cache := fs.String("cache", "", "token cache directory (default under $CLM_CACHE)")
	workers := fs.Int("workers", 0, "tokenizing goroutines (default: all cores)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tok == "" {
		return fmt.Errorf("data %s: -tokenizer is required (train one with `clm tokenizer train -o tokenizer.json`)", sub)
	}
	o := data.Options{Train: src(), Tokenizer: *tok, ContextLength: *ctxLen, NumTokenMult: *mult, ValidDocs: *validDocs,
		ValidFraction: *validFrac, Seed: *seed, CacheDir: *cache, Workers: *workers, Log: os.Stderr}
	if *validPath != "" {
		v := o.Train
		v.Path = *validPath
		o.Valid = &v
	}
	var ds *data.Dataset
	var err error
	if sub == "inspect" {
		ds, err = data.Open(o)
	} else {
		ds, err = data.Prepare(context.Background(), o)
	}
	if err != nil {
		return err
	}
	defer ds.Close()
	fmt.Fprint(stdout, ds.Summary())
	return nil
}
