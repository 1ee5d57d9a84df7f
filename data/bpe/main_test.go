package bpe

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"clm/internal/testkit/pyref"
)

var sharedDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "clm-bpe-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// Training parity corpus: every 7th .py file of the standard library
// (about 6 MB), trained to a vocabulary of trainVocab.
const trainVocab = 8000

func trainCorpus(tb testing.TB) []string {
	files, _, _ := corpusFiles(tb, "stdlib")
	var out []string
	for i := 6; i < len(files); i += 7 {
		out = append(out, files[i])
	}
	return out
}

var hfTrained struct {
	once   sync.Once
	path   string
	timing hfTrainTiming
	err    string
}

type hfTrainTiming struct {
	Seconds float64 `json:"seconds"`
	Merges  int     `json:"merges"`
	Vocab   int     `json:"vocab"`
	Bytes   int64   `json:"bytes"`
}

// hfTrainedTokenizer returns the tokenizer.json that Hugging Face trains on
// trainCorpus (once per test binary).
func hfTrainedTokenizer(tb testing.TB) string {
	tb.Helper()
	pyref.Require(tb)
	dir := gpt2Dir(tb)
	hfTrained.once.Do(func() {
		files := trainCorpus(tb)
		list := filepath.Join(sharedDir, "train-files.txt")
		writeListTo(tb, list, files)
		out := filepath.Join(sharedDir, "hf-trained.json")
		stdout := pyref.Run(tb, "tokenizer_train.py", dir, list, out, fmt.Sprint(trainVocab))
		if err := json.Unmarshal(lastLine(stdout), &hfTrained.timing); err != nil {
			hfTrained.err = fmt.Sprintf("tokenizer_train.py output %q: %v", stdout, err)
			return
		}
		hfTrained.path = out
	})
	if hfTrained.path == "" {
		tb.Fatalf("no HF-trained tokenizer: %s", hfTrained.err)
	}
	return hfTrained.path
}

func writeListTo(tb testing.TB, path string, files []string) {
	tb.Helper()
	b := []byte{}
	for _, f := range files {
		b = append(b, f...)
		b = append(b, '\n')
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}
