package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"clm/data"
	"clm/data/bpe"
	"clm/data/corpus"
	"clm/hub"
	"clm/hub/hubtest"
	"clm/internal/testkit/pyref"
	"clm/runlog"
	"clm/train"
)

// hfModel is a transformers-made GPT2LMHeadModel (random, every weight and
// bias moved off its init) in a folder and on a test Hub, with the corpus
// it is evaluated on.
type hfModel struct {
	dir, corpus, work string
	srv               *hubtest.Server
	commit            string
	env               []string // the Hub's environment for the binary
}

const hfRepo = "tester/gpt2-tiny"

func newHFModel(t *testing.T) *hfModel {
	t.Helper()
	pyref.Require(t)
	root, err := corpus.StdlibDir()
	if err != nil {
		t.Skip(err)
	}
	work := t.TempDir()
	m := &hfModel{dir: filepath.Join(work, "gpt2-tiny"), corpus: filepath.Join(work, "corpus"), work: work}
	var names []string
	filepath.WalkDir(filepath.Join(root, "json"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".py") {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	if len(names) < 4 {
		t.Skipf("only %d files in the standard library's json package", len(names))
	}
	os.MkdirAll(m.corpus, 0o755)
	for i, p := range names {
		b, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(m.corpus, fmt.Sprintf("%02d.py", i)), b, 0o644)
	}
	tok, err := data.TrainTokenizer(context.Background(), corpus.Source{Kind: corpus.KindDir, Path: m.corpus}, bpe.TrainOptions{VocabSize: 400}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokPath := filepath.Join(work, "tok.json")
	if err := tok.Save(tokPath); err != nil {
		t.Fatal(err)
	}
	pyref.Run(t, "hf_gpt2_make.py", "make", "--tokenizer", tokPath, "--out", m.dir)
	m.srv = hubtest.New()
	t.Cleanup(m.srv.Close)
	files := map[string]hubtest.File{}
	entries, _ := os.ReadDir(m.dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(m.dir, e.Name()))
		files[e.Name()] = hubtest.File{Content: b, LFS: strings.HasSuffix(e.Name(), ".safetensors")}
	}
	m.srv.Repo(hub.TypeModel, hfRepo, hubtest.Public)
	m.commit = m.srv.Commit(hub.TypeModel, hfRepo, "main", files)
	m.env = []string{"HF_ENDPOINT=" + m.srv.URL, "HF_HUB_CACHE=" + filepath.Join(work, "hub"), "HF_HOME=" + filepath.Join(work, "hf"),
		"HF_TOKEN=", "HF_HUB_OFFLINE=0", "CLM_CACHE=" + cacheDir(t)}
	return m
}

// clm runs the binary in the model's work folder with the Hub's environment.
func (m *hfModel) clm(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runClm(t, m.work, m.env, args...)
}

// corpusSets are the -set flags of the evaluation corpus.
func (m *hfModel) corpusSets() []string {
	return []string{"-set", "data.source=dir", "-set", "data.path=" + m.corpus}
}

// rows writes token rows as JSON for the reference and returns the path.
func writeRows(t *testing.T, path string, rows [][]int32) string {
	t.Helper()
	b, _ := json.Marshal(rows)
	return write(t, path, string(b))
}

// prepared is the model's corpus with its tokenizer and its 64 positions,
// as the commands read it; close it before they run (a cache in use is
// not rebuilt).
func (m *hfModel) prepared(t *testing.T) *data.Dataset {
	t.Helper()
	e := train.Defaults()
	e.Model.ContextLength = 64
	e.Data.Source, e.Data.Path, e.Data.Tokenizer = "dir", m.corpus, filepath.Join(m.dir, "tokenizer.json")
	t.Setenv("CLM_CACHE", cacheDir(t))
	ds, err := train.PrepareData(context.Background(), &e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestHFModelIn: a transformers GPT2LMHeadModel, as a folder and as
// hub:org/name, opens in clm eval, clm quant and clm sample with
// transformers' own losses (to 1e-5) and greedy tokens, changing nothing
// but the Hub cache; train.init_from continues training it from
// transformers' loss; what does not map is refused by key.
func TestHFModelIn(t *testing.T) {
	m := newHFModel(t)
	ds := m.prepared(t)
	var valid [][]int32
	for i := 0; i < ds.Valid.Len(); i++ {
		valid = append(valid, ds.Valid.Chunk(i, nil))
	}
	b, err := data.NewBatcher(ds.Train, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	validPath := writeRows(t, filepath.Join(m.work, "valid.json"), valid)
	firstPath := writeRows(t, filepath.Join(m.work, "first.json"), b.Next())
	ds.Close()
	var ref []struct {
		Loss      float64 `json:"loss"`
		Sequences int     `json:"sequences"`
	}
	out := pyref.Run(t, "hf_gpt2_make.py", "loss", "--model", m.dir, "--job", validPath+":4", "--job", validPath+":32", "--job", firstPath+":4")
	if err := json.Unmarshal(out, &ref); err != nil || len(ref) != 3 {
		t.Fatalf("reference losses %q: %v", out, err)
	}
	var greedy struct {
		Hex string  `json:"hex"`
		IDs []int32 `json:"ids"`
	}
	out = pyref.Run(t, "hf_gpt2_make.py", "generate", "--model", m.dir, "--prompt", "def f(x):", "--n", "24")
	if err := json.Unmarshal(out, &greedy); err != nil || len(greedy.IDs) == 0 {
		t.Fatalf("reference generation %q: %v", out, err)
	}
	text, err := hex.DecodeString(greedy.Hex)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, m.dir)
	for _, src := range []string{m.dir, "hub:" + hfRepo} {
		m.checkReaders(t, src, ref[0].Loss, ref[1].Loss, len(valid), string(text))
	}
	if after := snapshot(t, m.dir); after != before {
		t.Errorf("the readers wrote in the model folder")
	}
	// Offline, the Hub cache serves the model.
	off := append(append([]string(nil), m.env...), "HF_HUB_OFFLINE=1", "HF_ENDPOINT=http://127.0.0.1:1")
	if out, stderr, code := runClm(t, m.work, off, "sample", "hub:"+hfRepo, "-device", "cpu", "-prompt", "def f(x):", "-n", "24"); code != 0 || out != string(text)+"\n" {
		t.Errorf("clm sample offline from the Hub cache: exit %d, %q\n%s", code, out, stderr)
	}
	snap := filepath.Join(m.work, "hub", "models--tester--gpt2-tiny", "snapshots", m.commit)
	if _, err := os.Stat(filepath.Join(snap, "quant.json")); err == nil {
		t.Errorf("clm quant wrote in the Hub cache's snapshot")
	}
	m.checkWarmStart(t, ref[1].Loss, ref[2].Loss)
	m.checkRefusals(t)
}

// checkReaders runs clm eval, quant and sample on src: loss4 and loss32
// are transformers' losses on the n validation chunks in batches of 4 and
// of 32 (the default eval_batch), text its greedy continuation.
func (m *hfModel) checkReaders(t *testing.T, src string, loss4, loss32 float64, n int, text string) {
	t.Helper()
	out, stderr, code := m.clm(t, append([]string{"eval", src, "-device", "cpu", "-eval-batches", "0", "-batch", "4"}, m.corpusSets()...)...)
	var rec evalRecord
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil {
		t.Fatalf("clm eval %s: exit %d, %q\n%s", src, code, out, stderr)
	}
	if math.Abs(rec.EvalLoss-loss4) > 1e-5 || rec.Sequences != n {
		t.Errorf("clm eval %s: loss %v on %d sequences; transformers %v on %d", src, rec.EvalLoss, rec.Sequences, loss4, n)
	}
	if hub := "hub:" + hfRepo + "@" + m.commit; strings.HasPrefix(src, "hub:") && rec.Checkpoint != hub {
		t.Errorf("clm eval %s: checkpoint %q, want %q", src, rec.Checkpoint, hub)
	}
	args := append([]string{"quant", src, "-device", "cpu", "-weights", "none,per_channel", "-acts", "none", "-json", "-eval-batches", "0", "-calib-batches", "1"}, m.corpusSets()...)
	if strings.HasPrefix(src, "hub:") {
		args = append(args, "-batch", "4") // the batches of the folder's eval
	}
	out, stderr, code = m.clm(t, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("clm quant %s: exit %d, %q\n%s", src, code, out, stderr)
	}
	for i, line := range lines {
		var q runlog.Quant
		if err := json.Unmarshal([]byte(line), &q); err != nil {
			t.Fatalf("clm quant %s: %q: %v", src, line, err)
		}
		want := loss32
		if q.Batch == 4 {
			want = loss4
		}
		if math.Abs(q.FP.Loss-want) > 1e-5 || q.Sequences != n || (i == 1) != (q.Int8.Loss != q.FP.Loss) {
			t.Errorf("clm quant %s %v: fp loss %v, int8 %v on %d sequences in batches of %d; transformers %v", src, q.Scheme, q.FP.Loss, q.Int8.Loss, q.Sequences, q.Batch, want)
		}
	}
	out, stderr, code = m.clm(t, "sample", src, "-device", "cpu", "-prompt", "def f(x):", "-n", "24")
	if code != 0 || out != text+"\n" {
		t.Errorf("clm sample %s at temperature 0: exit %d\n%q\ntransformers' greedy generate()\n%q\n%s", src, code, out, text+"\n", stderr)
	}
}

// hfWarmExperiment is the experiment of the model: the default preset with
// GPT-2's LayerNorm and gelu_new at its sizes.
const hfWarmExperiment = `
name = "warm"
[model]
preset = "default"
norm_type = "ln"
activation_function = "gelu_new"
n_layer = 2
n_embd = 64
n_head = 4
n_positions = 64
context_length = 64
[train]
micro_batch = 4
accumulation = 1
max_steps = 3
eval_every = 3
log_every = 1
save_every = 3
threads = 1
device = "cpu"
[data]
source = "dir"
`

// checkWarmStart: train.init_from, a folder or hub:, starts from
// transformers' losses (the step-0 evaluation; the first batch) and trains
// on; another architecture is refused naming the key.
func (m *hfModel) checkWarmStart(t *testing.T, valid32, first float64) {
	t.Helper()
	cfg := write(t, filepath.Join(m.work, "warm.toml"), hfWarmExperiment+fmt.Sprintf("path = %q\n", m.corpus))
	for i, from := range []string{m.dir, "hub:" + hfRepo} {
		run := filepath.Join(m.work, fmt.Sprintf("warm-%d", i))
		args := []string{"-config", cfg, "-run-dir", run, "-set", fmt.Sprintf("train.init_from=%q", from)}
		_, stderr, code := m.clm(t, args...)
		if code != 0 || !strings.Contains(stderr, "warm start: the weights of") || !strings.Contains(stderr, "stay frozen") {
			t.Fatalf("init_from %s: exit %d\n%s", from, code, stderr)
		}
		if i == 0 {
			_, stderr, code := m.clm(t, "-config", cfg, "-run-dir", run+"-biases", "-set", fmt.Sprintf("train.init_from=%q", from),
				"-set", "model.trainable_biases=true")
			if code != 0 || strings.Contains(stderr, "stay frozen") || !strings.Contains(stderr, "warm start: the weights of") {
				t.Errorf("init_from %s with trainable biases: exit %d\n%s", from, code, stderr)
			}
		}
		recs := readRecords(t, run)
		e0, _ := recs["eval@0"]["eval_loss"].(float64)
		l1, _ := recs["train@1"]["loss"].(float64)
		e3, _ := recs["eval@3"]["eval_loss"].(float64)
		if math.Abs(e0-valid32) > 1e-5 || math.Abs(l1-first) > 1e-5 || e3 == 0 || e3 >= e0 {
			t.Errorf("init_from %s: step-0 eval loss %v (transformers %v), first batch %v (transformers %v), step-3 eval %v",
				from, e0, valid32, l1, first, e3)
		}
		exp, err := train.Load(filepath.Join(run, "config.toml"), nil)
		if want := "hub:" + hfRepo + "@" + m.commit; err != nil || (strings.HasPrefix(from, "hub:") && (exp.Train.InitFrom != want || exp.Data.Tokenizer != want)) {
			t.Errorf("init_from %s: config.toml records init_from %q, tokenizer %q (%v)", from, exp.Train.InitFrom, exp.Data.Tokenizer, err)
		}
		if _, stderr, code := m.clm(t, args...); code != 0 || !strings.Contains(stderr, "holds this experiment") {
			t.Errorf("init_from %s again: exit %d\n%s", from, code, stderr)
		}
	}
	for _, tc := range []struct{ set, want string }{
		{`model.norm_type="rmsnorm"`, "model.norm_type ln (checkpoint) vs rmsnorm"},
		{"model.n_layer=3", "model.n_layer 2 (checkpoint) vs 3"},
	} {
		_, stderr, code := m.clm(t, "-config", cfg, "-run-dir", filepath.Join(m.work, "refused"), "-set", "train.init_from="+fmt.Sprintf("%q", m.dir), "-set", tc.set)
		if code != 1 || !strings.Contains(lastLine(stderr), "train.init_from: "+m.dir+" is another model: "+tc.want) {
			t.Errorf("init_from with %s: exit %d\n%s", tc.set, code, stderr)
		}
	}
}

// checkRefusals: a folder whose config.json does not map, or that holds
// PyTorch pickles, is refused by every reader with one line that names the
// key or the way out; a model without a corpus too.
func (m *hfModel) checkRefusals(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(m.dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name, key string
		value     any
		want      string
	}{
		{"inverse layer scaling", "scale_attn_by_inverse_layer_idx", true, "scale_attn_by_inverse_layer_idx = true: clm computes only false"},
		{"unscaled attention", "scale_attn_weights", false, "scale_attn_weights = false: clm computes only true"},
		{"untied head", "tie_word_embeddings", false, "tie_word_embeddings = false"},
		{"cross-attention", "add_cross_attention", true, "add_cross_attention = true"},
		{"activation", "activation_function", "relu6", `activation_function = "relu6" has no clm equivalent`},
		{"another model", "model_type", "llama", `model_type "llama" is neither`},
		{"MLP width", "n_inner", 0, "n_inner = 0: want a positive MLP width"},
		{"heads", "n_head", 5, "model.n_embd: 64 is not divisible by n_head 5"},
		{"unknown key", "attn_mat_resid_gian", 1, "model.attn_mat_resid_gian: unknown key"},
	} {
		var c map[string]any
		json.Unmarshal(raw, &c)
		c[tc.key] = tc.value
		dir := filepath.Join(m.work, "bad-"+strings.ReplaceAll(tc.name, " ", "-"))
		copyDir(t, m.dir, dir)
		b, _ := json.Marshal(c)
		write(t, filepath.Join(dir, "config.json"), string(b))
		cmd := [][]string{{"sample", dir}, {"eval", dir, "-set", "data.source=stdlib"}, {"quant", dir, "-set", "data.source=stdlib"}}[i%3]
		_, stderr, code := m.clm(t, cmd...)
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, filepath.Join(dir, "config.json")+": ") ||
			!strings.Contains(stderr, tc.want) {
			t.Errorf("%s: clm %v: exit %d, stderr %q, want one line with %q", tc.name, cmd, code, stderr, tc.want)
		}
	}
	pickled := filepath.Join(m.work, "pickled")
	copyDir(t, m.dir, pickled)
	os.Rename(filepath.Join(pickled, "model.safetensors"), filepath.Join(pickled, "pytorch_model.bin"))
	if _, stderr, code := m.clm(t, "sample", pickled); code != 1 || !strings.Contains(stderr, "save_pretrained") {
		t.Errorf("pytorch_model.bin: exit %d\n%s", code, stderr)
	}
	for _, cmd := range []string{"eval", "quant"} {
		if _, stderr, code := m.clm(t, cmd, m.dir); code != 1 || !strings.Contains(stderr, "-set data.source=") {
			t.Errorf("clm %s without a corpus: exit %d\n%s", cmd, code, stderr)
		}
	}
}

// TestHFExportIn: clm's own exports open again, in both of their forms
// (the remote-code clm model of a skipless run; the plain GPT-2 of a
// Pre-LN LayerNorm run) and as the original code's checkpoint (the clm
// export's config.json with model_type gpt2 and no remote code): clm eval
// and clm sample give what they give on the run, and train.init_from
// starts from the run's last evaluation.
func TestHFExportIn(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	data := []string{"-set", "data.num_token_mult=0.002", "-set", "data.valid_docs=20"}
	for _, tc := range []struct {
		name     string
		sets     []string
		original bool
		format   string
	}{
		{"skipless", nil, false, "clm"},
		{"skipless-original", nil, true, "original"},
		{"plain", []string{"-set", `model.preset="default"`, "-set", `model.norm_type="ln"`, "-set", `model.activation_function="gelu_new"`}, false, "gpt2"},
	} {
		run, out := filepath.Join(dir, "run-"+tc.name), filepath.Join(dir, "hf-"+tc.name)
		if _, stderr, code := clm(t, dir, append([]string{"-config", cfg, "-run-dir", run}, tc.sets...)...); code != 0 {
			t.Fatalf("%s: training: %d\n%s", tc.name, code, stderr)
		}
		if _, stderr, code := clm(t, dir, "export", run, "-o", out); code != 0 {
			t.Fatalf("%s: export: %d\n%s", tc.name, code, stderr)
		}
		if tc.original {
			asOriginal(t, out)
		}
		evalOf := func(src string, sets ...string) float64 {
			o, stderr, code := clm(t, dir, append([]string{"eval", src, "-device", "cpu", "-eval-batches", "2"}, sets...)...)
			var rec evalRecord
			if code != 0 || json.Unmarshal([]byte(o), &rec) != nil {
				t.Fatalf("%s: clm eval %s: exit %d %q\n%s", tc.name, src, code, o, stderr)
			}
			return rec.EvalLoss
		}
		if a, b := evalOf(run), evalOf(out, append(data, "-set", "data.source=stdlib")...); math.Abs(a-b) > 1e-6 {
			t.Errorf("%s: clm eval: %v on the run, %v on its export", tc.name, a, b)
		}
		sample := func(src string) string {
			o, stderr, code := clm(t, dir, "sample", src, "-device", "cpu", "-prompt", "def f(", "-n", "12")
			if code != 0 {
				t.Fatalf("%s: clm sample %s: exit %d\n%s", tc.name, src, code, stderr)
			}
			return o
		}
		if a, b := sample(run), sample(out); a != b {
			t.Errorf("%s: clm sample: %q on the run, %q on its export", tc.name, a, b)
		}
		warm := filepath.Join(dir, "warm-"+tc.name)
		args := append([]string{"-config", cfg, "-run-dir", warm, "-set", fmt.Sprintf("train.init_from=%q", out), "-set", "train.max_steps=2"}, tc.sets...)
		if _, stderr, code := clm(t, dir, args...); code != 0 || !strings.Contains(stderr, "(Hugging Face, "+tc.format+")") {
			t.Fatalf("%s: init_from the export: exit %d, want format %s\n%s", tc.name, code, tc.format, stderr)
		}
		base, got := readRecords(t, run), readRecords(t, warm)
		if b, w := base["eval@12"]["eval_loss"], got["eval@0"]["eval_loss"]; b == nil || b != w {
			t.Errorf("%s: init_from the export: step-0 eval loss %v, the run's last %v", tc.name, w, b)
		}
	}
}

// asOriginal makes a clm export look like a checkpoint of the original
// code: model_type gpt2 with the model yaml's keys, no remote code.
func asOriginal(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(raw, &c)
	c["model_type"], c["architectures"] = "gpt2", []string{"myGPT2LMHeadModel"}
	for _, k := range []string{"auto_map", "clm_preset", "clm_version"} {
		delete(c, k)
	}
	b, _ := json.Marshal(c)
	write(t, path, string(b))
	os.Remove(filepath.Join(dir, "modeling_clm.py"))
	os.Remove(filepath.Join(dir, "configuration_clm.py"))
}
