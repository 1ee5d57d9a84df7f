package train

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"clm/internal/pyref"
	"clm/model"
	"clm/safetensors"
	"clm/torch"
)

// fixedBatches serves pre-made micro-batches; its cursor is the index.
type fixedBatches struct {
	rows [][][]int32
	pos  int
	// onNext, if set, runs before each batch (to interrupt a run).
	onNext func(pos int)
}

func (f *fixedBatches) Next() [][]int32 {
	if f.onNext != nil {
		f.onNext(f.pos)
	}
	b := f.rows[f.pos%len(f.rows)]
	f.pos++
	return b
}
func (f *fixedBatches) MarshalState() ([]byte, error) { return json.Marshal(f.pos) }
func (f *fixedBatches) UnmarshalState(b []byte) error { return json.Unmarshal(b, &f.pos) }

func makeBatches(n, B, T, V int, seed uint64) [][][]int32 {
	r := rand.New(rand.NewPCG(seed, 3))
	out := make([][][]int32, n)
	for i := range out {
		out[i] = make([][]int32, B)
		for b := range out[i] {
			row := make([]int32, T)
			// Learnable structure: runs of repeated tokens.
			for t := range row {
				if t%4 == 0 {
					row[t] = int32(r.IntN(V))
				} else {
					row[t] = row[t-1]
				}
			}
			out[i][b] = row
		}
	}
	return out
}

const smallModel = `
[model]
preset = "%s"
n_layer = 3
n_embd = 64
n_head = 4
context_length = 32
n_positions = 32
vocab_size = 512
`

func experiment(t *testing.T, preset, extra string) *Experiment {
	t.Helper()
	src := fmt.Sprintf(smallModel, preset) + extra
	e, err := Parse("test.toml", []byte(src), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newRun builds model (from weights, if given) and trainer in dir.
func newRun(t *testing.T, e *Experiment, dir string, weights string, batches Batches) (*model.Model, *Trainer) {
	t.Helper()
	m, err := model.New(e.Model, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	torch.ManualSeed(uint64(e.Train.Seed))
	if weights != "" {
		if err := loadWeightsFile(weights, m); err != nil {
			t.Fatal(err)
		}
	} else if err := m.Init(); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(Config{Experiment: e, Dir: dir, Model: m, Batches: batches, TotalSteps: TotalSteps(e, 0), PadID: -1})
	if err != nil {
		t.Fatal(err)
	}
	return m, tr
}

// seededModel builds cfg's model on dev, initialised from seed.
func seededModel(t testing.TB, cfg model.Config, dev torch.Device, seed uint64) *model.Model {
	t.Helper()
	m, err := model.New(cfg, model.Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	torch.ManualSeed(seed)
	if err := m.Init(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}

// trainedLosses trains m with e on the fixed batches in a fresh run folder
// and returns the logged per-step losses; prepare, if not nil, adjusts the
// trainer before Run.
func trainedLosses(t *testing.T, e *Experiment, m *model.Model, batches [][][]int32, padID int64, log io.Writer, prepare func(*Trainer)) []float64 {
	t.Helper()
	dir := t.TempDir()
	tr, err := NewTrainer(Config{Experiment: e, Dir: dir, Model: m, Batches: &fixedBatches{rows: batches}, TotalSteps: TotalSteps(e, 0), PadID: padID, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if prepare != nil {
		prepare(tr)
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, r := range readMetrics(t, dir, "train") {
		out = append(out, r["loss"].(float64))
	}
	return out
}

func readMetrics(t *testing.T, dir, kind string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m["kind"] == kind {
			out = append(out, m)
		}
	}
	return out
}

// TestTrajectoryParity: 20 optimizer steps of every preset, with
// accumulation 2, warmup and polynomial decay, and clipping active, give
// the per-step losses of scripts/reference/train.py to 1e-4 relative, for
// both optimizers, from the same weights and batches.
func TestTrajectoryParity(t *testing.T) {
	pyref.Require(t)
	const steps, accum, B, T = 20, 2, 4, 32
	batches := makeBatches(steps*accum, B, T, 512, 1)
	type run struct {
		name, dir, traj string
		e               *Experiment
		weights         string
	}
	var runs []run
	var jobs [][]string
	for _, preset := range model.PresetNames() {
		for _, opt := range []string{"adamw_hf", "adamw_torch"} {
			e := experiment(t, preset, fmt.Sprintf(`
[train]
micro_batch = %d
accumulation = %d
max_steps = %d
lr = 3e-3
warmup_ratio = 0.1
optimizer = %q
max_grad_norm = 0.25
log_every = 1
save_every = 1000
eval_every = 1000
[report]
every = 0
`, B, accum, steps, opt))
			dir := filepath.Join(t.TempDir(), preset+"-"+opt)
			os.MkdirAll(dir, 0o755)
			r := run{name: preset + "/" + opt, dir: dir, e: e, traj: filepath.Join(dir, "traj.json"),
				weights: filepath.Join(dir, "w0.safetensors")}
			// Initial weights from Go's init, shared with the reference.
			m, err := model.New(e.Model, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			torch.ManualSeed(3)
			m.Init()
			if err := torch.SaveSafetensors(r.weights, m.State(), nil); err != nil {
				t.Fatal(err)
			}
			m.Close()
			cfgJSON, _ := e.Model.JSON()
			cfgPath := filepath.Join(dir, "model.json")
			os.WriteFile(cfgPath, cfgJSON, 0o644)
			ids := make([]int64, 0, steps*accum*B*T)
			for _, mb := range batches {
				for _, row := range mb {
					for _, v := range row {
						ids = append(ids, int64(v))
					}
				}
			}
			bpath := filepath.Join(dir, "batches.safetensors")
			if err := safetensors.Write(bpath, []safetensors.Tensor{safetensors.NewTensor("input_ids", []int64{steps * accum, B, T}, ids)}, nil); err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, []string{"--config", cfgPath, "--weights", r.weights, "--batches", bpath,
				"--steps", fmt.Sprint(steps), "--accum", fmt.Sprint(accum), "--lr", "3e-3", "--warmup-ratio", "0.1",
				"--optimizer", opt, "--max-grad-norm", "0.25", "--out", r.traj})
			runs = append(runs, r)
		}
	}
	pyref.RunJobs(t, "train_jobs.py", jobs)

	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			before := torch.LiveTensors()
			m, tr := newRun(t, r.e, r.dir, r.weights, &fixedBatches{rows: batches})
			if err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr.Close()
			m.Close()
			if n := torch.LiveTensors(); n != before {
				t.Errorf("live tensors %d → %d", before, n)
			}
			var ref struct {
				Steps []struct {
					Step     int     `json:"step"`
					Loss     float64 `json:"loss"`
					LR       float64 `json:"lr"`
					GradNorm float64 `json:"grad_norm"`
				} `json:"steps"`
			}
			b, err := os.ReadFile(r.traj)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &ref); err != nil {
				t.Fatal(err)
			}
			got := readMetrics(t, r.dir, "train")
			if len(got) != steps || len(ref.Steps) != steps {
				t.Fatalf("%d Go steps, %d reference steps", len(got), len(ref.Steps))
			}
			worst, clipped := 0.0, 0
			for i, s := range ref.Steps {
				gl := got[i]["loss"].(float64)
				rel := math.Abs(gl-s.Loss) / math.Abs(s.Loss)
				worst = math.Max(worst, rel)
				if rel > 1e-4 {
					t.Errorf("step %d: loss %.8f, reference %.8f (rel %.2g)", s.Step, gl, s.Loss, rel)
				}
				if glr := got[i]["lr"].(float64); math.Abs(glr-s.LR) > 1e-12 {
					t.Errorf("step %d: lr %g, reference %g", s.Step, glr, s.LR)
				}
				if s.GradNorm > 0.25 {
					clipped++
				}
			}
			if clipped == 0 {
				t.Error("clipping never active")
			}
			t.Logf("%-28s 20 steps: worst loss rel err %.2g; loss %.4f → %.4f; clipped %d steps", r.name, worst,
				ref.Steps[0].Loss, ref.Steps[steps-1].Loss, clipped)
		})
	}
}
