package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"clm/model"
	"clm/torch"
)

func requireCUDA(tb testing.TB) torch.Device {
	tb.Helper()
	if !torch.CUDAAvailable() {
		tb.Skip("GPU test: no CUDA device (" + torch.Capabilities() + ")")
	}
	return torch.CUDA(0)
}

// trainLosses trains e on dev from weights for the fixed batches and returns
// the logged per-step losses.
func trainLosses(t *testing.T, e *Experiment, dev torch.Device, weights string, batches [][][]int32) []float64 {
	t.Helper()
	m, err := model.New(e.Model, model.Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := loadWeightsFile(weights, m); err != nil {
		t.Fatal(err)
	}
	return trainedLosses(t, e, m, batches, model.Pad{}, nil, nil)
}

// TestGPUStepMatchesCPU: the GPU training step at small size in fp32 gives
// the CPU's per-step losses (1e-4 relative), and bf16 autocast stays within
// 2% of fp32, for Pre-LN and SAS-P.
func TestGPUStepMatchesCPU(t *testing.T) {
	dev := requireCUDA(t)
	for _, preset := range []string{"default", "skipless-parallel"} {
		t.Run(preset, func(t *testing.T) {
			src := `
[train]
micro_batch = 8
accumulation = 2
max_steps = 8
lr = 3e-3
log_every = 1
eval_every = 1000
save_every = 1000
nan_check_every = 4
[report]
every = 0
`
			e := experiment(t, preset, src)
			m := seededModel(t, e.Model, torch.CPU, 1)
			weights := filepath.Join(t.TempDir(), "w.safetensors")
			torch.SaveSafetensors(weights, m.State(), nil)
			m.Close()
			batches := makeBatches(16, 8, 32, 512, 2)
			cpu := trainLosses(t, e, torch.CPU, weights, batches)
			gpu := trainLosses(t, e, dev, weights, batches)
			e.Train.Precision = "bf16"
			bf16 := trainLosses(t, e, dev, weights, batches)
			for i := range cpu {
				if rel := math.Abs(gpu[i]-cpu[i]) / cpu[i]; rel > 1e-4 {
					t.Errorf("step %d: GPU fp32 loss %.6f, CPU %.6f (rel %.2g)", i+1, gpu[i], cpu[i], rel)
				}
				if rel := math.Abs(bf16[i]-cpu[i]) / cpu[i]; rel > 0.02 {
					t.Errorf("step %d: GPU bf16 loss %.6f, fp32 %.6f (rel %.2g)", i+1, bf16[i], cpu[i], rel)
				}
			}
			t.Logf("%s: final loss CPU %.5f, GPU fp32 %.5f, GPU bf16 %.5f", preset, cpu[len(cpu)-1], gpu[len(gpu)-1], bf16[len(bf16)-1])
		})
	}
}

// TestGPUFitMicroBatch: on the GPU, micro-batch fitting runs each step's 16
// sequences (configured as 8 micro-batches of 2) as one forward, says so in
// the log, and trains to the per-step losses of the unfitted run (fp32, 1e-5
// relative); the trial steps leave no tensors behind.
func TestGPUFitMicroBatch(t *testing.T) {
	dev := requireCUDA(t)
	batches := makeBatches(32, 2, 32, 512, 5)
	run := func(fit bool) ([]float64, string) {
		e := experiment(t, "default", fmt.Sprintf(`resid_pdrop = 0
attn_pdrop = 0
embd_pdrop = 0
[train]
micro_batch = 2
accumulation = 8
fit_micro_batch = %v
max_steps = 4
precision = "fp32"
log_every = 1
eval_every = 1000
save_every = 1000
[report]
every = 0
`, fit))
		m := seededModel(t, e.Model, dev, 3)
		defer m.Close()
		var log strings.Builder
		return trainedLosses(t, e, m, batches, model.Pad{}, &log, nil), log.String()
	}
	live := torch.LiveTensors()
	plain, plainLog := run(false)
	fitted, fitLog := run(true)
	if !strings.Contains(fitLog, "16 sequences per forward, 1 per step") {
		t.Errorf("fitting log: %q, want 16 sequences per forward, 1 per step", fitLog)
	}
	if strings.Contains(plainLog, "micro-batch fitting") {
		t.Errorf("fit_micro_batch = false still fitted: %q", plainLog)
	}
	for i := range plain {
		if rel := math.Abs(fitted[i]-plain[i]) / plain[i]; rel > 1e-5 {
			t.Errorf("step %d: fitted loss %.7f, unfitted %.7f (rel %.2g)", i+1, fitted[i], plain[i], rel)
		}
	}
	if n := torch.LiveTensors(); n != live {
		t.Errorf("live tensors %d → %d", live, n)
	}
	t.Logf("%s; losses %v vs %v", strings.TrimSpace(fitLog), fitted, plain)
}

// BenchmarkGPUTrainStep times the paper's setting (18 layers, width 768,
// context 128, vocabulary 52000, 128 sequences per step) on the GPU for each
// preset in CLM_BENCH_PRESETS (default: all), with CLM_BENCH_PRECISION
// (bf16) and CLM_BENCH_MICRO (micro-batch, default 128: one micro-batch per
// step). It reports tokens/s, MFU against CLM_PEAK_TFLOPS (989, the H100/H200
// bf16 dense peak) and peak memory. CLM_BENCH_FUSED=0 runs the composite
// ops instead of the fused kernels; CLM_BENCH_GRAPHS=1 replays the step
// from a CUDA graph (train.cuda_graphs) and reports the replays.
func BenchmarkGPUTrainStep(b *testing.B) {
	dev := requireCUDA(b)
	presets := model.PresetNames()
	if s := os.Getenv("CLM_BENCH_PRESETS"); s != "" {
		presets = strings.Split(s, ",")
	}
	precision := envOr("CLM_BENCH_PRECISION", "bf16")
	micro, _ := strconv.Atoi(envOr("CLM_BENCH_MICRO", "128"))
	peak, _ := strconv.ParseFloat(envOr("CLM_PEAK_TFLOPS", "989"), 64)
	for _, preset := range presets {
		b.Run(preset, func(b *testing.B) {
			src := fmt.Sprintf(`
[model]
preset = %q
n_layer = 18
vocab_size = 52000
[train]
micro_batch = %d
accumulation = %d
max_steps = 1000000
precision = %q
fused_kernels = %v
cuda_graphs = %v
log_every = 1000000
eval_every = 1000000
save_every = 1000000
[report]
every = 0
`, preset, micro, 128/micro, precision, os.Getenv("CLM_BENCH_FUSED") != "0", os.Getenv("CLM_BENCH_GRAPHS") == "1")
			tr, done := benchTrainer(b, src, dev)
			defer done()
			e := tr.exp
			// Warm up kernels and the caching allocator (and, with
			// CLM_BENCH_GRAPHS=1, capture the step: train.cuda_graphs).
			for range graphWarmup + 2 {
				if err := tr.step(); err != nil {
					b.Fatal(err)
				}
			}
			torch.Synchronize(dev)
			torch.ResetCUDAPeak(dev)
			start := time.Now()
			n := 0
			for b.Loop() {
				if err := tr.step(); err != nil {
					b.Fatal(err)
				}
				n++
			}
			torch.Synchronize(dev)
			sec := time.Since(start).Seconds()
			_, peakMem, _ := torch.CUDAMemory(dev)
			tokens := float64(n * 128 * 128)
			total, _ := e.Model.ParamCount()
			flopsPerToken := 6*float64(total-int64(e.Model.NPositions*e.Model.NEmbd)) +
				12*float64(e.Model.NLayer*e.Model.ContextLength*e.Model.NEmbd)
			b.ReportMetric(tokens/sec, "tokens/s")
			b.ReportMetric(sec/float64(n)*1e3, "ms/step")
			b.ReportMetric(100*flopsPerToken*tokens/sec/(peak*1e12), "MFU%")
			b.ReportMetric(float64(peakMem)/(1<<30), "peakGiB")
			if tr.eng.graph != nil {
				b.ReportMetric(float64(tr.eng.graph.Replayed), "replays")
			}
			// The launch-bound floor: the same step on one sequence, where
			// the GPU's work is negligible and the time is the host's
			// dispatch of the step's kernels. Far below ms/step, CUDA graphs
			// could only remove the bubbles, not the compute.
			e.Train.MicroBatch, e.Train.Accumulation, tr.eng.fwdRows = 1, 1, 1
			tr.batches = &fixedBatches{rows: makeBatches(1, 1, e.Model.ContextLength, e.Model.VocabSize, 8)}
			floor := func() float64 {
				torch.Synchronize(dev)
				start := time.Now()
				for range 5 {
					if err := tr.step(); err != nil {
						b.Fatal(err)
					}
				}
				torch.Synchronize(dev)
				return time.Since(start).Seconds() / 5
			}
			floor() // warm up the one-sequence shapes
			b.ReportMetric(floor()*1e3, "floorms/step")
		})
	}
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// TestGPUCUDAGraphs: train.cuda_graphs on the GPU (3 eager steps, then the
// step captured and replayed) trains to the per-step losses of the same
// steps run eagerly (AdamW's graph mode both times), bit for bit, in fp32
// and under bf16 autocast, with dropout on; the graph leaves no tensors
// behind.
func TestGPUCUDAGraphs(t *testing.T) {
	dev := requireCUDA(t)
	batches := makeBatches(16, 8, 32, 512, 6)
	for _, precision := range []string{"fp32", "bf16"} {
		t.Run(precision, func(t *testing.T) {
			e := experiment(t, "default", fmt.Sprintf(`
[train]
micro_batch = 8
accumulation = 2
max_steps = 10
lr = 3e-3
precision = %q
log_every = 1
eval_every = 1000
save_every = 1000
nan_check_every = 5
[report]
every = 0
`, precision))
			run := func(capture captureFunc) []float64 {
				m := seededModel(t, e.Model, dev, 4)
				defer m.Close()
				return trainedLosses(t, e, m, batches, model.Pad{}, nil, func(tr *Trainer) {
					if err := tr.eng.enableGraphs(capture); err != nil {
						t.Fatal(err)
					}
				})
			}
			live := torch.LiveTensors()
			eager := run(func(torch.Device, func()) (replayer, error) { return nil, fmt.Errorf("eager by request") })
			var replayed *int
			graphed := run(func(d torch.Device, f func()) (replayer, error) {
				g, err := captureCUDA(d, f)
				n := 0
				replayed = &n
				if err != nil {
					return nil, err
				}
				return countingReplayer{g, &n}, nil
			})
			if n := torch.LiveTensors(); n != live {
				t.Errorf("live tensors %d → %d", live, n)
			}
			if replayed == nil || *replayed != 10-graphWarmup {
				t.Fatalf("replays: %v, want %d", replayed, 10-graphWarmup)
			}
			for i := range eager {
				if eager[i] != graphed[i] {
					t.Errorf("step %d: loss %.9g with CUDA graphs, %.9g eager", i+1, graphed[i], eager[i])
				}
			}
			t.Logf("%s: %d steps, %d replayed, losses bitwise the eager steps' (last %.6f)", precision, len(eager), *replayed, graphed[len(graphed)-1])
		})
	}
}

// countingReplayer counts a graph's replays.
type countingReplayer struct {
	replayer
	n *int
}

func (c countingReplayer) Replay() error {
	*c.n++
	return c.replayer.Replay()
}
