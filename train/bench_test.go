package train

import (
	"cmp"
	"fmt"
	"os"
	"testing"

	"clm/internal/testkit/benchenv"
	"clm/model"
	"clm/runlog"
	"clm/torch"
)

// midModel is the benchmarks' mid size (6 layers, width 256, vocabulary
// 8192) of a preset (%q).
const midModel = `
[model]
preset = %q
n_layer = 6
n_embd = 256
n_head = 8
context_length = 128
n_positions = 128
vocab_size = 8192
`

// benchTrainer builds an initialised model and a trainer for the
// experiment src on dev, with fixed batches of the experiment's shape, ready
// for tr.step(); done releases them.
func benchTrainer(b *testing.B, src string, dev torch.Device) (tr *Trainer, done func()) {
	b.Helper()
	e, err := Parse("bench.toml", []byte(src), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	attn := e.Train.Attention
	m, err := model.New(e.Model, model.Options{Device: dev, Attention: attn, FusedKernels: e.Train.FusedKernels})
	if err != nil {
		b.Fatal(err)
	}
	torch.ManualSeed(0)
	m.Init()
	t := e.Train
	fb := &fixedBatches{rows: makeBatches(t.Accumulation, t.MicroBatch, e.Model.ContextLength, e.Model.VocabSize, 7)}
	tr, err = NewTrainer(Config{Experiment: e, Dir: b.TempDir(), Model: m, Batches: fb, TotalSteps: TotalSteps(e, 0)})
	if err != nil {
		m.Close()
		b.Fatal(err)
	}
	if tr.metrics, err = runlog.Open(b.TempDir(), 0); err != nil {
		b.Fatal(err)
	}
	if err := tr.eng.fitForwardRows(tr.st.SchedStep == 0); err != nil { // as Run does (a no-op on the CPU)
		b.Fatal(err)
	}
	return tr, func() { tr.Close(); m.Close() }
}

// BenchmarkTrainStep is one optimizer step of the training loop (2
// micro-batches of 16 × 128 tokens, clipping, adamw_hf, schedule, the NaN
// check) at the mid size (6 layers, width 256, vocabulary 8192), for every
// preset; scripts/reference/bench_train.py times the reference loop.
// CLM_BENCH_FUSED=0 runs the composite ops instead of the fused kernels,
// CLM_BENCH_CHECKPOINT=block checkpoints the activations.
func BenchmarkTrainStep(b *testing.B) {
	attention := os.Getenv("CLM_BENCH_ATTENTION")
	if attention == "" {
		attention = "auto"
	}
	for _, preset := range model.PresetNames() {
		b.Run(preset, func(b *testing.B) {
			benchenv.SetThreads(b, torch.SetNumThreads)
			src := fmt.Sprintf(midModel, preset) + fmt.Sprintf(`
[train]
micro_batch = 16
accumulation = 2
max_steps = 1000000
warmup_ratio = 0.00001
log_every = 1000000
eval_every = 1000000
save_every = 1000000
attention = %q
fused_kernels = %v
checkpoint_activations = %q
[report]
every = 0
`, attention, os.Getenv("CLM_BENCH_FUSED") != "0", cmp.Or(os.Getenv("CLM_BENCH_CHECKPOINT"), "none"))
			tr, done := benchTrainer(b, src, torch.CPU)
			defer done()
			tr.step()
			for b.Loop() {
				if err := tr.step(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(2*16*128)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkOptimizerStep is one optimizer step alone (the gradients of one
// forward and backward, kept) of adamw_torch, SOAP and Muon over the
// default preset at the mid size (6 layers, width 256, vocabulary 8192):
// what each optimizer costs. SOAP keeps the identity on the vocabulary side
// of wte (max_precondition_dim 4096), as at the paper's size, where 52000
// exceeds the default 10000. Its Python side is
// scripts/reference/bench_optim.py (make bench-optim).
func BenchmarkOptimizerStep(b *testing.B) {
	for _, opt := range []string{"adamw_torch", "soap", "muon"} {
		b.Run(opt, func(b *testing.B) {
			benchenv.SetThreads(b, torch.SetNumThreads)
			src := fmt.Sprintf(midModel, "default") + fmt.Sprintf(`
[train]
micro_batch = 16
accumulation = 1
optimizer = %q
[train.optim]
max_precondition_dim = 4096
[report]
every = 0
`, opt)
			tr, done := benchTrainer(b, src, torch.CPU)
			defer done()
			if err := torch.Try(func() {
				s := torch.NewScope()
				defer s.Close()
				x := tr.eng.ids(tr.batches.Next())
				tr.eng.forward(x, model.ForwardOptions{Labels: x, LossOnly: true}).Loss.Backward()
			}); err != nil {
				b.Fatal(err)
			}
			tr.eng.opt.SetLR(1e-3)
			// A first step outside the timing, as the Python side's: it
			// allocates AdamW's moments and computes SOAP's first eigenbases.
			if err := torch.Try(tr.eng.opt.Step); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := torch.Try(tr.eng.opt.Step); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
