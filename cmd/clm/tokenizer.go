package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"clm/data"
	"clm/data/bpe"
	"clm/data/corpus"
)

func init() {
	register("tokenizer", "train a byte-level BPE tokenizer, or encode files with one", runTokenizer)
}

var tokenizerSubs = [][2]string{
	{"train", "train a byte-level BPE tokenizer on a corpus, as tokenizers' BpeTrainer does"},
	{"encode", "print the token ids of files (or stdin)"},
	{"decode", "print the text of token ids"},
}

func runTokenizer(args []string, stdout io.Writer) error {
	if len(args) == 0 || isHelp(args) {
		subcommands(stdout, "tokenizer", tokenizerSubs)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "train":
		return tokenizerTrain(args[1:], stdout)
	case "encode":
		return tokenizerEncode(args[1:], stdout)
	case "decode":
		return tokenizerDecode(args[1:], stdout)
	}
	return fmt.Errorf("tokenizer: unknown subcommand %q (want train, encode or decode; see clm tokenizer -h)", args[0])
}

// corpusFlags registers the flags that describe a corpus.Source.
func corpusFlags(fs *flag.FlagSet, prefix string) func() corpus.Source {
	kind := fs.String(prefix+"corpus", "stdlib", "corpus kind: stdlib (local Python standard library), dir (source tree), hf (dataset files) or hub (a Hub dataset)")
	path := fs.String(prefix+"path", "", "corpus directory or file (dir, hf; for stdlib, overrides the detected directory)")
	ext := fs.String(prefix+"ext", ".py", "comma-separated file extensions (dir, stdlib)")
	col := fs.String(prefix+"column", "content", "text column of dataset files (hf, hub)")
	repo := fs.String(prefix+"dataset", "", "dataset repository on the Hub (hub), e.g. "+data.PaperTrainDataset)
	rev := fs.String(prefix+"revision", "main", "its branch, tag or commit (hub)")
	split := fs.String(prefix+"split", "train", "its split (hub)")
	return func() corpus.Source {
		s := corpus.Source{Kind: *kind, Path: *path, Column: *col}
		if s.Kind == corpus.KindHub {
			s.Repo, s.Revision, s.Split = *repo, *rev, *split
		}
		for _, e := range strings.Split(*ext, ",") {
			if e = strings.TrimSpace(e); e != "" {
				s.Extensions = append(s.Extensions, e)
			}
		}
		return s
	}
}

func tokenizerTrain(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "tokenizer train", "clm tokenizer train [flags]",
		"Trains a byte-level BPE tokenizer (GPT-2's pre-tokenizer and byte map, Hugging Face's merge order) and writes tokenizer.json.",
		"clm tokenizer train -vocab-size 4096 -o stdlib-4096.json",
		"clm tokenizer train -corpus dir -path ~/src/myproject -ext .py,.go -o mine.json")
	src := corpusFlags(fs.FlagSet, "")
	vocab := fs.Int("vocab-size", 52000, "vocabulary size, special tokens and the 256 bytes included")
	minFreq := fs.Int64("min-frequency", 0, "pairs seen fewer times are not merged")
	special := fs.String("special", "<|endoftext|>", "comma-separated special tokens, first in the vocabulary")
	out := fs.String("o", "tokenizer.json", "output tokenizer.json")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := fs.atMost(pos, 0); err != nil {
		return err
	}
	s, err := src().Normalize()
	if err != nil {
		return err
	}
	if s, _, err = data.ResolveHub(context.Background(), (data.Options{Log: os.Stderr}).HubClient(), s); err != nil {
		return err
	}
	var specials []string
	for _, t := range strings.Split(*special, ",") {
		if t != "" {
			specials = append(specials, t)
		}
	}
	if specials == nil {
		specials = []string{}
	}
	tok, err := data.TrainTokenizer(context.Background(), s, bpe.TrainOptions{VocabSize: *vocab, MinFrequency: *minFreq, SpecialTokens: specials},
		data.DefaultProgress(os.Stderr), os.Stderr)
	if err != nil {
		return err
	}
	if err := tok.Save(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: vocabulary %d, %d merges\n", *out, tok.VocabSize(), tok.NumMerges())
	return nil
}

func tokenizerEncode(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "tokenizer encode", "clm tokenizer encode -tokenizer PATH [FILE...]",
		"Prints the token ids of each file (of stdin without files), one line per file.",
		"clm tokenizer encode -tokenizer stdlib-4096.json setup.py",
		"echo 'def f(x):' | clm tokenizer encode -tokenizer hub:huggingface-course/code-search-net-tokenizer")
	path := fs.String("tokenizer", "", "tokenizer.json, vocab.json:merges.txt, a directory holding them, or hub:org/name[@revision] (required)")
	files, err := fs.parse(args)
	if err != nil {
		return err
	}
	if *path == "" {
		return errors.New("tokenizer encode: -tokenizer is required")
	}
	tok, err := data.LoadTokenizer(context.Background(), *path, os.Stderr)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	enc := tok.NewEncoder()
	write := func(text []byte) {
		ids := enc.Encode(string(text))
		w.WriteByte('[')
		for i, id := range ids {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(strconv.Itoa(int(id)))
		}
		w.WriteString("]\n")
	}
	if len(files) == 0 {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("standard input: %w", err)
		}
		write(b)
		return w.Flush()
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		write(b)
	}
	return w.Flush()
}

func tokenizerDecode(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "tokenizer decode", "clm tokenizer decode -tokenizer PATH IDS...",
		"Prints the text of token ids (separated by spaces or commas, brackets allowed).",
		"clm tokenizer decode -tokenizer stdlib-4096.json 318 262 1003")
	path := fs.String("tokenizer", "", "tokenizer (required)")
	idArgs, err := fs.parse(args)
	if err != nil {
		return err
	}
	if *path == "" {
		return errors.New("tokenizer decode: -tokenizer is required")
	}
	tok, err := data.LoadTokenizer(context.Background(), *path, os.Stderr)
	if err != nil {
		return err
	}
	var ids []int32
	for i, a := range idArgs {
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == '[' || r == ']' || r == ' ' }) {
			v, err := strconv.ParseInt(f, 10, 32)
			if err != nil || v < 0 || int(v) >= tok.VocabSize() {
				return fmt.Errorf("tokenizer decode: argument %d: %q is not an id below %d", i+1, f, tok.VocabSize())
			}
			ids = append(ids, int32(v))
		}
	}
	_, err = io.WriteString(stdout, tok.Decode(ids))
	return err
}
