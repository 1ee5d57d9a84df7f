package bpe

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"clm/internal/testkit/pyref"
)

// corpusFiles lists the files of a real corpus: "stdlib" (all .py files of
// the reference Python's standard library, site-packages excluded) or "gosrc"
// (all .go files under the Go toolchain's src/). Files that are not UTF-8 are
// returned separately, as Hugging Face cannot take them as str.
func corpusFiles(tb testing.TB, which string) (files []string, skipped int, size int64) {
	tb.Helper()
	var root, ext string
	switch which {
	case "stdlib":
		py := pyref.Require(tb)
		out, err := exec.Command(py, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])").Output()
		if err != nil {
			tb.Fatalf("asking %s for its standard library: %v", py, err)
		}
		root, ext = strings.TrimSpace(string(out)), ".py"
	case "gosrc":
		out, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			tb.Fatalf("go env GOROOT: %v", err)
		}
		root, ext = filepath.Join(strings.TrimSpace(string(out)), "src"), ".go"
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (d.Name() == "site-packages" || d.Name() == "dist-packages") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ext) {
			b, err := os.ReadFile(p)
			if err != nil || !utf8.Valid(b) {
				skipped++
				return nil
			}
			files = append(files, p)
			size += int64(len(b))
		}
		return nil
	})
	if err != nil || len(files) == 0 {
		tb.Fatalf("listing %s under %s: %v (%d files)", which, root, err, len(files))
	}
	slices.Sort(files)
	return files, skipped, size
}

func writeList(tb testing.TB, files []string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "files.txt")
	if err := os.WriteFile(p, []byte(strings.Join(files, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// readIDs reads the output of tokenizer_encode.py / write_ids.
func readIDs(tb testing.TB, path string) [][]int32 {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]int32
	for len(b) > 0 {
		n := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
		b = b[4*n:]
		out = append(out, ids)
	}
	return out
}

type pyTiming struct {
	Files   int     `json:"files"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MBPerS  float64 `json:"mb_per_s"`
}

// hfEncode encodes files with Hugging Face (spec as tokenizer_common.py).
func hfEncode(tb testing.TB, spec string, files []string, env ...string) ([][]int32, pyTiming) {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "ids.bin")
	stdout := pyref.RunEnv(tb, env, "tokenizer_encode.py", spec, writeList(tb, files), out)
	var tm pyTiming
	if err := json.Unmarshal(lastLine(stdout), &tm); err != nil {
		tb.Fatalf("tokenizer_encode.py output %q: %v", stdout, err)
	}
	ids := readIDs(tb, out)
	if len(ids) != len(files) {
		tb.Fatalf("reference encoded %d files, want %d", len(ids), len(files))
	}
	return ids, tm
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// encodeAll encodes files with tok on all cores.
func encodeAll(tb testing.TB, tok *Tokenizer, files []string) [][]int32 {
	tb.Helper()
	out := make([][]int32, len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := tok.NewEncoder()
			for i := range next {
				b, err := os.ReadFile(files[i])
				if err != nil {
					panic(err)
				}
				out[i] = enc.Encode(string(b))
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// compareCorpus encodes files with tok and checks ids and round trip against want.
func compareCorpus(t *testing.T, name string, tok *Tokenizer, files []string, skipped int, size int64, want [][]int32) {
	t.Helper()
	got := encodeAll(t, tok, files)
	same, round, tokens := 0, 0, 0
	var firstBad []string
	for i, f := range files {
		tokens += len(got[i])
		if slices.Equal(got[i], want[i]) {
			same++
		} else if len(firstBad) < 5 {
			firstBad = append(firstBad, fmt.Sprintf("%s: %s", f, firstDiff(tok, got[i], want[i])))
		}
		b, _ := os.ReadFile(f)
		if tok.Decode(got[i]) == string(b) {
			round++
		}
	}
	t.Logf("%s: %d files (%d non-UTF-8 skipped), %.1f MB, %d tokens: ids identical to HF for %d/%d, decode(encode(x)) == x for %d/%d",
		name, len(files), skipped, float64(size)/1e6, tokens, same, len(files), round, len(files))
	fmt.Printf("PARITY %s: %d/%d identical ids, %d/%d round trips, %d tokens, %d non-UTF-8 skipped\n", name, same, len(files), round, len(files), tokens, skipped)
	for _, b := range firstBad {
		t.Errorf("mismatch %s", b)
	}
	if round != len(files) {
		t.Errorf("%s: round trip failed for %d files", name, len(files)-round)
	}
}

func firstDiff(tok *Tokenizer, got, want []int32) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-3)
	show := func(ids []int32) string {
		var s []string
		for _, id := range ids[lo:min(len(ids), i+4)] {
			s = append(s, fmt.Sprintf("%d:%q", id, tok.Token(id)))
		}
		return strings.Join(s, " ")
	}
	return fmt.Sprintf("first difference at token %d (len %d vs HF %d)\n  go: %s\n  hf: %s", i, len(got), len(want), show(got), show(want))
}

func gpt2Dir(tb testing.TB) string {
	return filepath.Dir(pyref.RequireAsset(tb, "gpt2/vocab.bpe"))
}

// TestEncodeParityGPT2 encodes the Python standard library and the Go source
// tree with GPT-2's vocabulary and compares every file's ids with Hugging
// Face tokenizers.
func TestEncodeParityGPT2(t *testing.T) {
	pyref.Require(t)
	dir := gpt2Dir(t)
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{"stdlib", "gosrc"} {
		files, skipped, size := corpusFiles(t, which)
		want, _ := hfEncode(t, "gpt2:"+dir, files)
		compareCorpus(t, "gpt2/"+which, tok, files, skipped, size, want)
	}
}

// TestEncodeParityTrained does the same with a tokenizer that Hugging Face
// trained on code (train_new_from_iterator from GPT-2 on Python files).
func TestEncodeParityTrained(t *testing.T) {
	path := hfTrainedTokenizer(t)
	tok, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{"stdlib", "gosrc"} {
		files, skipped, size := corpusFiles(t, which)
		want, _ := hfEncode(t, path, files)
		compareCorpus(t, "hf-trained/"+which, tok, files, skipped, size, want)
	}
}
