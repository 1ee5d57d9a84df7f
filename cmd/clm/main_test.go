package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/safetensors"
	"clm/train"
)

var clmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clm-test-")
	if err != nil {
		panic(err)
	}
	clmBin = filepath.Join(dir, "clm")
	if out, err := exec.Command("go", "build", "-o", clmBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building clm: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// clm runs the binary in dir and returns stdout, stderr and the exit code.
func clm(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	return runClm(t, dir, []string{"CLM_CACHE=" + cacheDir(t)}, args...)
}

// runClm runs the binary in dir with extra environment variables.
func runClm(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(clmBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// cacheDir is a per-process cache (tokenizers, token shards) shared by the
// tests of this package.
var sharedCache string

func cacheDir(t *testing.T) string {
	if sharedCache == "" {
		sharedCache = filepath.Join(os.TempDir(), fmt.Sprintf("clm-test-cache-%d", os.Getpid()))
	}
	return sharedCache
}

// microExperiment is a model and run small enough for several processes per
// test: 2 layers, width 32, tokenizer of 300 entries trained on the stdlib.
const microExperiment = `
name = "micro"
[model]
preset = "skipless"
n_layer = 2
n_embd = 32
n_head = 2
context_length = 32
n_positions = 32
resid_pdrop = 0.1
[train]
micro_batch = 4
accumulation = 2
max_steps = 12
eval_every = 6
eval_batches = 2
log_every = 3
save_every = 4
threads = 1
[data]
tokenizer_vocab = 300
num_token_mult = 0.002
valid_docs = 20
[report]
every = 5
`

func write(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sampleCount reads the count `clm sample` reports on stderr.
var sampleCount = regexp.MustCompile(`clm sample: (\d+) tokens(, stopped at <\|endoftext\|>)?`)

// checkSample is a positive check of `clm sample` on the fixture run: the
// output continues the prompt with as many tokens as asked, unless the
// model ended the text first, greedy or sampled; not every run ends at once.
func checkSample(t *testing.T, dir string) {
	t.Helper()
	generated := false
	for _, flags := range [][]string{{"-temperature", "0.7"}, {"-top-k", "3", "-temperature", "1.5", "-seed", "9"}, {}} {
		args := append([]string{"sample", "-ckpt", "run", "-prompt", "def f(", "-n", "5"}, flags...)
		out, stderr, code := clm(t, dir, args...)
		m := sampleCount.FindStringSubmatch(stderr)
		if code != 0 || !strings.HasPrefix(out, "def f(") || m == nil {
			t.Fatalf("clm %v: exit %d, output %q\n%s", args, code, out, stderr)
		}
		n, stopped := m[1], m[2] != ""
		if n != "5" && !stopped || n != "0" && len(strings.TrimSpace(out)) <= len("def f(") {
			t.Errorf("clm %v: %s tokens, stopped %v, output %q", args, n, stopped, out)
		}
		generated = generated || n != "0"
	}
	if !generated {
		t.Error("clm sample generated no token in any setting")
	}
}

// brokenRuns are copies of a finished run, each broken in one way, and a
// corpus with no Python files, for TestBadInput.
type brokenRuns struct {
	corrupt     string // its weights file is not a safetensors file
	misshapen   string // its weights do not have the shapes its config says
	wrongTok    string // its tokenizer is larger than the model's vocabulary
	emptyCorpus string // a folder holding no .py file
}

// makeBrokenRuns breaks copies of the finished run dir/run, and writes an
// empty corpus, under dir.
func makeBrokenRuns(t *testing.T, dir string) brokenRuns {
	t.Helper()
	run := filepath.Join(dir, "run")
	b := brokenRuns{
		corrupt:     filepath.Join(dir, "corrupt"),
		misshapen:   filepath.Join(dir, "misshapen"),
		wrongTok:    filepath.Join(dir, "wrong-tokenizer"),
		emptyCorpus: filepath.Join(dir, "empty-corpus"),
	}
	copyDir(t, run, b.corrupt)
	ck, _ := train.LatestCheckpoint(b.corrupt)
	os.WriteFile(filepath.Join(ck, "model.safetensors"), []byte("not a safetensors file at all"), 0o644)
	// A checkpoint whose weights do not have the shapes its config says.
	copyDir(t, run, b.misshapen)
	reshapeConfig(t, mustLatest(t, b.misshapen), `"n_embd": 32`, `"n_embd": 48`)
	// A run whose config names a tokenizer larger than the model's
	// vocabulary: ids past the embedding fail inside the generation loop.
	copyDir(t, run, b.wrongTok)
	useTokenizer(b.wrongTok, pyref.RequireAsset(t, "gpt2"))
	os.MkdirAll(b.emptyCorpus, 0o755)
	os.WriteFile(filepath.Join(b.emptyCorpus, "notes.txt"), []byte("no python here"), 0o644)
	return b
}

// useTokenizer rewrites the tokenizer line of run's config.toml to name
// tokenizer.
func useTokenizer(run, tokenizer string) {
	cfgText, _ := os.ReadFile(filepath.Join(run, "config.toml"))
	var lines []string
	for _, l := range strings.Split(string(cfgText), "\n") {
		if strings.HasPrefix(l, "tokenizer = ") {
			l = fmt.Sprintf("tokenizer = %q", tokenizer)
		}
		lines = append(lines, l)
	}
	os.WriteFile(filepath.Join(run, "config.toml"), []byte(strings.Join(lines, "\n")), 0o644)
}

// badInputCase is one refused command line of TestBadInput.
type badInputCase struct {
	name string
	args []string
	file string // written to dir/bad.toml when not empty
	want string // fragment of the error line
}

// badInputCases are the refused command lines, given the good experiment
// file and the broken runs.
func badInputCases(good string, b brokenRuns) []badInputCase {
	return []badInputCase{
		{"missing config", []string{"-config", "nope.toml"}, "", "nope.toml"},
		{"syntax error", []string{"-config", "bad.toml"}, "name = \"x\"\n[train\nlr = 1\n", "table name"},
		{"unknown key", []string{"-config", "bad.toml"}, "[train]\nlr = 1e-3\nlearning_rate = 1\n", `bad.toml:3: unknown key "train.learning_rate"`},
		{"unknown model key", []string{"-config", "bad.toml"}, "[model]\nn_layers = 3\n", `bad.toml:2: model.n_layers: unknown key (did you mean "model.n_layer"?)`},
		{"empty name", []string{"-config", "bad.toml"}, "name = \"\"\n", `name: "" cannot name a run folder`},
		{"name with a slash", []string{"-config", good, "-set", `name="a/b"`}, "", `name: "a/b" cannot name a run folder`},
		{"table typo", []string{"-config", "bad.toml"}, "name = \"x\"\n[trian]\nlr = 1\nwarmup_ratio = 0\n", `bad.toml:2: unknown key "trian" (did you mean "train"?)`},
		{"wrong type", []string{"-config", "bad.toml"}, "[train]\nlr = \"fast\"\n", "bad.toml"},
		{"bad -set syntax", []string{"-config", good, "-set", "train.lr"}, "", `-set "train.lr": want key=value`},
		{"bad -set key", []string{"-config", good, "-set", "train.nope=1"}, "", "nope"},
		{"-set typo", []string{"-config", good, "-set", "train.lrr=1"}, "", `-set train.lrr: unknown key "train.lrr" (did you mean "train.lr"?)`},
		{"-set model value of the wrong type", []string{"-config", good, "-set", "model.n_layer=four"}, "", "-set model.n_layer=four: model.n_layer: want int, not string"},
		{"cuda graphs on the CPU", []string{"-config", good, "-set", "train.cuda_graphs=true", "-set", "train.device=cpu", "-run-dir", "r4"}, "", "train.cuda_graphs needs a CUDA device; this run is on cpu"},
		{"bad -set section", []string{"-config", good, "-set", "optim.lr=1"}, "", "optim"},
		{"invalid model", []string{"-config", good, "-set", "model.n_embd=30", "-set", "model.n_head=4"}, "", "model.n_embd: 30 is not divisible by n_head 4"},
		{"invalid train value", []string{"-config", good, "-set", "train.precision=fp8"}, "", "train.precision"},
		{"missing corpus", []string{"-config", good, "-set", "data.source=dir", "-set", "data.path=/no/such/corpus", "-run-dir", "r1"}, "", "/no/such/corpus"},
		{"empty corpus", []string{"-config", good, "-set", "data.source=dir", "-set", "data.path=" + b.emptyCorpus, "-run-dir", "r2"}, "", "empty"},
		{"missing tokenizer", []string{"-config", good, "-set", "data.tokenizer=/no/tokenizer.json", "-run-dir", "r3"}, "", "/no/tokenizer.json"},
		{"existing run of another experiment", []string{"-config", good, "-run-dir", "run", "-set", "model.n_layer=3"}, "", "holds another experiment (model.n_layer: 2 in the run, 3 asked); continue that run as it was with `clm -resume run`"},
		{"not a run folder", []string{"-resume", "nowhere"}, "", "nowhere"},
		{"corrupt checkpoint", []string{"-resume", b.corrupt}, "", "model.safetensors"},
		{"corrupt checkpoint, the way out", []string{"-resume", b.corrupt}, "", "checkpoints/step-00000008, is there: move the damaged one aside (mv "},
		{"incompatible resume", []string{"-resume", "run", "-set", "model.n_layer=3"}, "", "differs"},
		{"incompatible schedule", []string{"-resume", "run", "-set", "train.max_steps=20"}, "", "schedule"},
		{"hub without a dataset", []string{"-config", good, "-set", "data.source=hub"}, "", "data.dataset"},
		{"bad hub dataset", []string{"-config", good, "-set", "data.source=hub", "-set", "data.dataset=a/b/c"}, "", `data.dataset: hub: repository id "a/b/c"`},
		{"bad hub tokenizer", []string{"-config", good, "-set", "data.tokenizer=hub:x/../y"}, "", "data.tokenizer"},
		{"negative data seed", []string{"-config", good, "-set", "data.seed=-1"}, "", "data.seed: -1 must not be negative"},
		{"unknown data source", []string{"-config", good, "-set", "data.source=ftp"}, "", "want stdlib, dir, hf or hub"},
		{"unknown command", []string{"fly"}, "", `unknown command "fly"`},
		{"config and resume", []string{"-config", good, "-resume", "run"}, "", "not both"},
		{"sample without checkpoint", []string{"sample", "-ckpt", "nowhere"}, "", "nowhere"},
		{"sample corrupt checkpoint", []string{"sample", "-ckpt", b.corrupt}, "", "model.safetensors"},
		{"sample misshapen checkpoint", []string{"sample", "-ckpt", b.misshapen}, "", "shape"},
		{"sample op error", []string{"sample", "-ckpt", b.wrongTok, "-prompt", "def hello_world(self):", "-n", "3"}, "", "index out of range"},
	}
}

// checkBadInput runs c in dir (writing its file to dir/bad.toml first) and
// checks that it fails with a one-line `clm: ` error containing c.want and
// no crash trace.
func checkBadInput(t *testing.T, dir string, c badInputCase) {
	t.Helper()
	if c.file != "" {
		write(t, filepath.Join(dir, "bad.toml"), c.file)
	}
	_, stderr, code := clm(t, dir, c.args...)
	if code == 0 {
		t.Fatalf("exit code 0; stderr:\n%s", stderr)
	}
	for _, bad := range []string{"goroutine ", "panic:", "runtime/debug", "terminate called"} {
		if strings.Contains(stderr, bad) {
			t.Fatalf("stderr shows a crash (%q):\n%s", bad, stderr)
		}
	}
	last := lastLine(stderr)
	if !strings.Contains(last, c.want) {
		t.Errorf("last stderr line %q lacks %q", last, c.want)
	}
	// A refused start leaves no run folder behind.
	for i, a := range c.args {
		if a == "-run-dir" && i+1 < len(c.args) && c.args[i+1] != "run" {
			if _, err := os.Stat(filepath.Join(dir, c.args[i+1])); err == nil {
				t.Errorf("the refused start left %s behind", c.args[i+1])
			}
		}
	}
	if !strings.HasPrefix(last, "clm: ") {
		t.Errorf("error line %q does not start with \"clm: \"", last)
	}
}

// TestBadInput: every kind of bad input ends with a one-line error naming
// the file, key or line, a non-zero exit code, and no Go panic trace.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "good.toml"), microExperiment)
	// A finished run to resume and to corrupt.
	if _, stderr, code := clm(t, dir, "-config", good, "-run-dir", "run"); code != 0 {
		t.Fatalf("training the fixture run failed (%d):\n%s", code, stderr)
	}
	checkSample(t, dir)
	broken := makeBrokenRuns(t, dir)
	for _, c := range badInputCases(good, broken) {
		t.Run(c.name, func(t *testing.T) { checkBadInput(t, dir, c) })
	}
}

// reshapeConfig rewrites the model config stored in a checkpoint's weights
// (replacing old with new in its JSON), leaving the tensors as they are.
func reshapeConfig(t *testing.T, ckpt, old, new string) {
	t.Helper()
	path := filepath.Join(ckpt, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		x, err := f.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		x.Data = append([]byte(nil), x.Data...) // the file is mapped until Close
		ts = append(ts, x)
	}
	meta := f.Metadata()
	if !strings.Contains(meta["config"], old) {
		t.Fatalf("checkpoint config lacks %s", old)
	}
	meta["config"] = strings.Replace(meta["config"], old, new, 1)
	f.Close()
	if err := safetensors.Write(path, ts, meta); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// TestExperimentsParse: every shipped experiment file loads and validates.
func TestExperimentsParse(t *testing.T) {
	files, _ := filepath.Glob("../../experiments/*.toml")
	if len(files) < 10 {
		t.Fatalf("only %d experiment files", len(files))
	}
	for _, f := range files {
		e, err := train.Load(f, nil)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		total, _ := e.Model.ParamCount()
		t.Logf("%-40s preset %-18s %2d layers %7.1fM params", filepath.Base(f), e.Preset, e.Model.NLayer, float64(total)/1e6)
	}
}

// weights returns every tensor of a checkpoint's weights by name.
func weights(t *testing.T, ckpt string) map[string]string {
	return tensors(t, ckpt, "model.safetensors")
}

// startClm starts the binary in dir with the shared cache and extra
// environment variables, and returns its stderr to read.
func startClm(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(clmBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CLM_CACHE="+cacheDir(t)), env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, pipe
}

// TestResumeAfterSignals: `clm` interrupted by SIGINT (checkpoint on the
// way out), or killed by SIGKILL after a periodic checkpoint, and resumed
// with `clm -resume`, ends with weights bit-identical to an uninterrupted
// run.
func TestResumeAfterSignals(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), strings.Replace(microExperiment, "max_steps = 12", "max_steps = 40", 1))
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "straight"); code != 0 {
		t.Fatalf("uninterrupted run: %d\n%s", code, stderr)
	}
	want := weights(t, train.CheckpointPath(filepath.Join(dir, "straight"), 40))

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			run := "run-" + strings.ReplaceAll(sig.String(), " ", "")
			cmd, pipe := startClm(t, dir, nil, "-config", cfg, "-run-dir", run)
			// Signal as soon as the first periodic checkpoint is reported;
			// the run has 36 more steps to go.
			var stderr strings.Builder
			sc := bufio.NewScanner(pipe)
			signalled := false
			for sc.Scan() {
				stderr.WriteString(sc.Text() + "\n")
				if !signalled && strings.Contains(sc.Text(), "checkpoint ") {
					cmd.Process.Signal(sig)
					signalled = true
				}
			}
			err := cmd.Wait()
			st, _ := train.ReadState(mustLatest(t, filepath.Join(dir, run)))
			t.Logf("%v: exit %v, latest checkpoint at step %d", sig, err, st.Step)
			if sig == syscall.SIGINT {
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
					t.Errorf("SIGINT: exit %v, want 130\n%s", err, stderr.String())
				}
				if !strings.Contains(stderr.String(), "saving a checkpoint") {
					t.Errorf("SIGINT: no message about the checkpoint:\n%s", stderr.String())
				}
			}
			if st.Step >= 40 {
				t.Skipf("the run finished before the signal (step %d)", st.Step)
			}
			if _, stderr, code := clm(t, dir, "-resume", run); code != 0 {
				t.Fatalf("resume: %d\n%s", code, stderr)
			}
			got := weights(t, train.CheckpointPath(filepath.Join(dir, run), 40))
			diff := 0
			for k, v := range want {
				if got[k] != v {
					diff++
				}
			}
			if diff > 0 {
				t.Errorf("%d of %d tensors differ from the uninterrupted run", diff, len(want))
			} else {
				t.Logf("resumed from step %d: all %d tensors bit-identical to the uninterrupted run", st.Step, len(want))
			}
		})
	}
}

func mustLatest(t *testing.T, dir string) string {
	ck, err := train.LatestCheckpoint(dir)
	if err != nil || ck == "" {
		t.Fatalf("no checkpoint in %s: %v", dir, err)
	}
	return ck
}
