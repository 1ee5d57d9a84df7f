package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"clm/model"
	"clm/torch"
)

// setupExperiment is a run small enough to set up in a second: 2 layers,
// width 32, a 300-entry tokenizer trained on the standard library.
const setupExperiment = `
name = "setup"
[model]
preset = "skipless"
n_layer = 2
n_embd = 32
n_head = 2
context_length = 32
n_positions = 32
[train]
micro_batch = 4
accumulation = 2
max_steps = 6
seed = 11
threads = 1
[data]
tokenizer_vocab = 300
num_token_mult = 0.002
valid_docs = 20
`

// loadSetupExperiment writes setupExperiment with extra lines and loads it.
func loadSetupExperiment(t *testing.T, sets map[string]any) *Experiment {
	t.Helper()
	path := filepath.Join(t.TempDir(), "setup.toml")
	if err := os.WriteFile(path, []byte(setupExperiment), 0o644); err != nil {
		t.Fatal(err)
	}
	exp, err := Load(path, sets)
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

// TestSetup: a new run gets its config.toml, a vocabulary fitted to the
// tokenizer, the pad id of <|endoftext|> and the model that train.seed
// initialises; Close returns every tensor and the run folder's lock.
func TestSetup(t *testing.T) {
	t.Setenv("CLM_CACHE", t.TempDir())
	live := torch.LiveTensors()
	dir := filepath.Join(t.TempDir(), "run")
	exp := loadSetupExperiment(t, nil)
	r, err := Setup(context.Background(), exp, SetupOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.toml")); err != nil {
		t.Errorf("no config.toml: %v", err)
	}
	if v := r.Model.Config().VocabSize; v != r.ds.Tokenizer.VocabSize() {
		t.Errorf("vocab_size %d, tokenizer has %d", v, r.ds.Tokenizer.VocabSize())
	}
	if eos, _ := r.ds.Tokenizer.ID("<|endoftext|>"); r.pad != model.PadToken(int64(eos)) || r.Trainer.eng.pad != r.pad {
		t.Errorf("pad %v (trainer %v), want <|endoftext|> = %d", r.pad, r.Trainer.eng.pad, eos)
	}
	if _, err := LockRun(dir); err == nil {
		t.Error("the run folder was not locked while set up")
	}
	checkSeededInit(t, r.Model, exp.Train.Seed)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := torch.LiveTensors(); n != live {
		t.Errorf("live tensors %d → %d after Close", live, n)
	}
	l, err := LockRun(dir)
	if err != nil {
		t.Fatalf("the lock was not released: %v", err)
	}
	l.Release()
}

// checkSeededInit: m holds what model.Init draws from seed.
func checkSeededInit(t *testing.T, m *model.Model, seed int64) {
	t.Helper()
	ref, err := model.New(m.Config(), m.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	torch.ManualSeed(uint64(seed))
	if err := ref.Init(); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	for i, p := range m.Params().All() {
		got, want := p.T.Detach().ToDType(torch.Float64).Float64s(), ref.Params().All()[i].T.ToDType(torch.Float64).Float64s()
		if !slices.Equal(got, want) {
			t.Fatalf("%s differs from model.Init with seed %d", p.Name, seed)
		}
	}
}

// TestSetupRefuses: what Setup must refuse leaves no run folder behind and
// no tensor alive.
func TestSetupRefuses(t *testing.T) {
	t.Setenv("CLM_CACHE", t.TempDir())
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		sets map[string]any
		ctx  context.Context
		want string
	}{
		{"vocabulary smaller than the tokenizer's", map[string]any{"model.vocab_size": int64(100)}, context.Background(), "smaller than the tokenizer's vocabulary"},
		{"absent device", map[string]any{"train.device": "cuda:99"}, context.Background(), "train.device"},
		{"interrupted while preparing the data", nil, cancelled, ErrDataInterrupted.Error()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.ctx == cancelled {
				t.Setenv("CLM_CACHE", t.TempDir()) // nothing prepared yet
			}
			live := torch.LiveTensors()
			dir := filepath.Join(t.TempDir(), "run")
			exp := loadSetupExperiment(t, c.sets)
			r, err := Setup(c.ctx, exp, SetupOptions{Dir: dir})
			if err == nil {
				r.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("left the run folder behind (%v)", err)
			}
			if n := torch.LiveTensors(); n != live {
				t.Errorf("live tensors %d → %d", live, n)
			}
		})
	}
}

// TestSetupResume: a folder with checkpoints needs Resume; Resume restores
// the latest one.
func TestSetupResume(t *testing.T) {
	t.Setenv("CLM_CACHE", t.TempDir())
	dir := filepath.Join(t.TempDir(), "run")
	r, err := Setup(context.Background(), loadSetupExperiment(t, map[string]any{"train.max_steps": int64(2)}), SetupOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Trainer.Run(context.Background())
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(context.Background(), loadSetupExperiment(t, nil), SetupOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "clm -resume") {
		t.Errorf("a folder with checkpoints was set up afresh: %v", err)
	}
	exp, err := Load(filepath.Join(dir, "config.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err = Setup(context.Background(), exp, SetupOptions{Dir: dir, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st := r.Trainer.State(); st.Step != 2 {
		t.Errorf("resumed at step %d, want 2", st.Step)
	}
}

// TestSetupCPUMatmul: Setup makes train.cpu_matmul's engine the process's
// and records it in the run's starts: blas as asked, auto as
// torch.AutoCPUMatmul picks here, onednn where it is offered (else refused
// with the reason, before the run folder exists).
func TestSetupCPUMatmul(t *testing.T) {
	t.Setenv("CLM_CACHE", t.TempDir())
	useCPUMatmul(t, torch.CPUMatmulEngine()) // restored afterwards
	why := torch.OneDNNMatmulUnusable()
	auto, _ := torch.AutoCPUMatmul()
	for _, c := range []struct {
		setting string
		want    torch.CPUMatmul
		refused bool
	}{{"blas", torch.MatmulBLAS, false}, {"auto", auto, false}, {"onednn", torch.MatmulOneDNN, why != ""}} {
		t.Run(c.setting, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			r, err := Setup(context.Background(), loadSetupExperiment(t, map[string]any{"train.cpu_matmul": c.setting}), SetupOptions{Dir: dir})
			if c.refused {
				if err == nil || !strings.Contains(err.Error(), why) {
					t.Fatalf("onednn where %q: %v", why, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := torch.CPUMatmulEngine(); got != c.want {
				t.Errorf("engine %v, want %v", got, c.want)
			}
			b, err := os.ReadFile(filepath.Join(dir, StartsFile))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(`"cpu_matmul":%q`, c.want); !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %s:\n%s", StartsFile, want, b)
			}
		})
	}
}
