package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"clm/data"
	"clm/internal/testkit/pyref"
	"clm/model"
	"clm/safetensors"
	"clm/torch"
	"clm/torch/torchtest"
	"clm/train"
)

// exportExperiment is a micro run that trains a few steps, so that no
// weight is at its init when exported.
const exportExperiment = `
name = "export"
[model]
n_layer = 3
n_embd = 32
n_head = 2
context_length = 32
n_positions = 32
[train]
micro_batch = 4
accumulation = 1
max_steps = 8
lr = 3e-3
eval_every = 8
eval_batches = 1
log_every = 4
save_every = 8
threads = 1
[data]
tokenizer_vocab = 300
num_token_mult = 0.002
valid_docs = 20
`

// exportCode is the code that the exported tokenizer must encode as clm's.
const exportCode = "def fib(n):\n    \"\"\"Fibonacci.\"\"\"\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # ünïcode ✓\n\tx = {'a': [1, 2.5e-3]}\n"

// exportCase is one run exported and checked.
type exportCase struct {
	name   string
	sets   []string
	plain  bool
	maxNew int
}

var exportCases = []exportCase{
	{name: "default", sets: []string{"model.preset=default"}, maxNew: 40},
	{name: "default-parallel", sets: []string{"model.preset=default-parallel"}, maxNew: 40},
	{name: "skipless", sets: []string{"model.preset=skipless"}, maxNew: 40},
	{name: "skipless-parallel", sets: []string{"model.preset=skipless-parallel"}, maxNew: 40},
	{name: "op", sets: []string{"model.preset=op"}, maxNew: 40},
	{name: "value-skipinit", sets: []string{"model.preset=value-skipinit"}, maxNew: 40},
	// Eq. 6 with trained W_train, the tanh logit cap and post-norm.
	{name: "reparam-tanh-post", sets: []string{"model.preset=default", "model.value_skip_gain=1.0", "model.proj_skip_gain=1.0",
		"model.val_init_type=orth", "model.trainable_value_gains=true", "model.dot_norm_type=tanh", "model.norm_position=post"}, maxNew: 40},
	// The plain GPT-2: transformers' own GPT2LMHeadModel, without remote code.
	{name: "plain-gpt2", sets: []string{"model.preset=default", "model.norm_type=ln", "model.activation_function=gelu_new"},
		plain: true, maxNew: 24},
}

// exportJob is one case of scripts/reference/hf_export_check.py.
type exportJob struct {
	Name         string  `json:"name"`
	Dir          string  `json:"dir"`
	Remote       bool    `json:"remote"`
	CLM          string  `json:"clm"`
	PromptIDs    []int32 `json:"prompt_ids"`
	MaxNewTokens int     `json:"max_new_tokens"`
	Text         string  `json:"text"`
}

// exportResult is what the script reports of a case.
type exportResult struct {
	Name          string
	Class         string
	Missing       []string
	Unexpected    []string
	Dtype         string
	LogitsRel     float64 `json:"logits_rel"`
	LossDiff      float64 `json:"loss_diff"`
	Generated     []int32
	GeneratedText string  `json:"generated_text"`
	TextIDs       []int32 `json:"text_ids"`
	EOSToken      string  `json:"eos_token"`
	PadToken      string  `json:"pad_token"`
}

// TestExportTransformers trains every preset (and a plain GPT-2, and Eq. 6
// with tanh and post-norm) for a few steps, exports each, and opens the
// folders with transformers: fp32 logits and loss equal clm's forward on
// the same tokens (1e-5 relative), greedy generate() gives the tokens of
// clm's greedy generation and the text of `clm sample -temperature 0`
// (past the context length for the remote code, which cuts as clm does),
// AutoTokenizer encodes code as clm's tokenizer, and the plain GPT-2 opens
// as GPT2LMHeadModel without remote code.
func TestExportTransformers(t *testing.T) {
	pyref.Require(t)
	dir := t.TempDir()
	exp := write(t, filepath.Join(dir, "export.toml"), exportExperiment)
	var jobs []exportJob
	want := map[string]exportWant{}
	for _, c := range exportCases {
		args := []string{"-config", exp, "-run-dir", c.name}
		for _, s := range c.sets {
			args = append(args, "-set", s)
		}
		if _, stderr, code := clm(t, dir, args...); code != 0 {
			t.Fatalf("%s: training failed (%d):\n%s", c.name, code, stderr)
		}
		out := filepath.Join(dir, "hf-"+c.name)
		stdout, stderr, code := clm(t, dir, "export", c.name, "-o", out)
		if code != 0 || strings.Contains(stdout, "plain GPT2LMHeadModel") != c.plain {
			t.Fatalf("%s: clm export: exit %d\n%s%s", c.name, code, stdout, stderr)
		}
		checkWeightsFile(t, filepath.Join(out, "model.safetensors"))
		w, job := clmSide(t, dir, c)
		job.Dir = out
		jobs, want[c.name] = append(jobs, job), w
	}
	t.Logf("%v: runs trained and exported", time.Now().Format(time.StampMilli))
	var res struct{ Cases []exportResult }
	if err := json.Unmarshal(pyref.RunJobs(t, "hf_export_check.py", map[string]any{"cases": jobs}), &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: transformers checked", time.Now().Format(time.StampMilli))
	texts := 0
	for i, r := range res.Cases {
		checkExport(t, exportCases[i], r, want[r.Name])
		if utf8.ValidString(want[r.Name].sample) {
			texts++
		}
	}
	if texts == 0 {
		t.Error("no case sampled valid UTF-8: the generated text was compared nowhere")
	}
}

// checkWeightsFile: an export's weights are fp32 with the metadata
// transformers' PyTorch loader wants.
func checkWeightsFile(t *testing.T, path string) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m := f.Metadata(); m["format"] != "pt" || len(m) != 1 {
		t.Errorf("%s: metadata %v, want {format: pt}", path, m)
	}
	for _, n := range f.Names() {
		if info, _ := f.Info(n); info.DType != safetensors.F32 {
			t.Errorf("%s: %s is %s, not F32", path, n, info.DType)
		}
	}
}

// exportWant is clm's side of a case.
type exportWant struct {
	generated []int32
	sample    string
	textIDs   []int32
}

// clmSide runs clm on a case's run: the forward (saved for the script),
// greedy generation in process and by `clm sample`, and the tokenizer.
func clmSide(t *testing.T, dir string, c exportCase) (exportWant, exportJob) {
	torchtest.Guard(t)
	tr, err := train.OpenTrained(filepath.Join(dir, c.name), "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tok, err := data.LoadTokenizer(context.Background(), tr.Exp.Data.Tokenizer, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tr.Model.Config()
	r := rand.New(rand.NewPCG(7, uint64(len(c.name))))
	ids := make([]int64, 2*cfg.ContextLength)
	for i := range ids {
		ids[i] = r.Int64N(int64(cfg.VocabSize))
	}
	path := filepath.Join(dir, c.name+"-clm.safetensors")
	func() {
		s := torch.NewScope()
		defer s.Close()
		x := torch.FromInt64(ids, 2, int64(cfg.ContextLength))
		torch.NoGrad(func() {
			out := tr.Model.Forward(x, model.ForwardOptions{Labels: x})
			err = torch.SaveSafetensors(path, []torch.Named{{Name: "input_ids", Tensor: x},
				{Name: "logits", Tensor: out.Logits}, {Name: "loss", Tensor: out.Loss}}, nil)
		})
	}()
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "def "
	greedy, err := model.NewSampler(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	eos, _ := tok.ID("<|endoftext|>")
	gen, err := tr.Model.Generate(tok.Encode(prompt), c.maxNew, greedy, eos, nil)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := clm(t, dir, "sample", c.name, "-prompt", prompt, "-n", itoa(c.maxNew), "-temperature", "0")
	if code != 0 {
		t.Fatalf("%s: clm sample: %d\n%s", c.name, code, stderr)
	}
	sample := strings.TrimSuffix(stdout, "\n")
	if sample != prompt+tok.Decode(gen) {
		t.Errorf("%s: clm sample printed %q, greedy Generate gave %q", c.name, sample, prompt+tok.Decode(gen))
	}
	return exportWant{generated: gen, sample: sample, textIDs: tok.Encode(exportCode)},
		exportJob{Name: c.name, Remote: !c.plain, CLM: path, PromptIDs: tok.Encode(prompt), MaxNewTokens: c.maxNew, Text: exportCode}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// checkExport compares what transformers did with an export to clm.
func checkExport(t *testing.T, c exportCase, r exportResult, w exportWant) {
	t.Helper()
	class := map[bool]string{true: "GPT2LMHeadModel", false: "CLMForCausalLM"}[c.plain]
	if r.Class != class || len(r.Missing) > 0 || len(r.Unexpected) > 0 || r.Dtype != "torch.float32" {
		t.Errorf("%s: transformers built %s (%s), missing %v, unexpected %v; want %s, every key", c.name, r.Class, r.Dtype, r.Missing, r.Unexpected, class)
	}
	if !(r.LogitsRel <= 1e-5) || !(r.LossDiff <= 1e-5) || math.IsNaN(r.LossDiff) {
		t.Errorf("%s: logits differ from clm's by %.3g relative, the loss by %.3g", c.name, r.LogitsRel, r.LossDiff)
	}
	if !slices.Equal(r.Generated, w.generated) {
		t.Errorf("%s: generate() gave %v, clm %v", c.name, r.Generated, w.generated)
	}
	// Byte-level tokens can end inside a UTF-8 character, which the
	// tokenizers library decodes to U+FFFD and clm sample prints as bytes:
	// the tokens are compared above; the text where it is valid UTF-8.
	if utf8.ValidString(w.sample) && r.GeneratedText != w.sample {
		t.Errorf("%s: generate() decodes to %q, clm sample printed %q", c.name, r.GeneratedText, w.sample)
	}
	if !slices.Equal(r.TextIDs, w.textIDs) {
		t.Errorf("%s: AutoTokenizer encodes the code as %v, clm as %v", c.name, r.TextIDs, w.textIDs)
	}
	if r.EOSToken != "<|endoftext|>" || r.PadToken != "<|endoftext|>" {
		t.Errorf("%s: tokenizer eos %q pad %q, want <|endoftext|>", c.name, r.EOSToken, r.PadToken)
	}
}

// TestExportRefuses: export refuses, in one line, a run without a
// checkpoint, a missing -o, a Hugging Face model (a folder or hub:), and a
// non-empty folder unless -force; it writes
// nothing into the run and leaves no temporary folder.
func TestExportRefuses(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "good.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", good, "-run-dir", "run", "-set", "train.max_steps=4"); code != 0 {
		t.Fatalf("training the fixture run failed (%d):\n%s", code, stderr)
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty-run"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "taken", "keep.txt"), "mine")
	write(t, filepath.Join(dir, "hfmodel", "config.json"), `{"model_type": "gpt2"}`)
	write(t, filepath.Join(dir, "hfmodel", "model.safetensors"), "")
	before := listTree(t, filepath.Join(dir, "run"))
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"export", "empty-run", "-o", "out"}, "no checkpoint"},
		{[]string{"export", "run"}, "-o"},
		{[]string{"export", "run", "-o", "taken"}, "not empty"},
		{[]string{"export", "-o", "out"}, "which run"},
		{[]string{"export", "hfmodel", "-o", "out"}, "is a Hugging Face model already"},
		{[]string{"export", "hub:org/name", "-o", "out"}, "is a Hugging Face model already"},
	} {
		_, stderr, code := clm(t, dir, c.args...)
		if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, c.says) {
			t.Errorf("clm %v: exit %d, stderr %q: want one line saying %q", c.args, code, stderr, c.says)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "taken", "keep.txt")); err != nil || string(b) != "mine" {
		t.Errorf("a refused export changed taken/: %q %v", b, err)
	}
	if _, stderr, code := clm(t, dir, "export", "run", "-o", "taken", "-force"); code != 0 {
		t.Fatalf("export -force: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "taken", "config.json")); err != nil {
		t.Errorf("export -force did not replace taken/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "taken", "keep.txt")); err == nil {
		t.Errorf("export -force kept the old folder's file")
	}
	if after := listTree(t, filepath.Join(dir, "run")); !slices.Equal(before, after) {
		t.Errorf("export changed the run folder:\nbefore %v\nafter  %v", before, after)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".export-") {
			t.Errorf("export left %s behind", e.Name())
		}
	}
}

// listTree lists the files under root with their sizes and times.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, p+" "+info.ModTime().String()+" "+itoa(int(info.Size())))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
