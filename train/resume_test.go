package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"clm/torch"
)

const resumeTrain = `
[train]
micro_batch = 4
accumulation = 2
max_steps = 12
lr = 3e-3
warmup_ratio = 0.2
log_every = 2
save_every = 4
eval_every = 100
[report]
every = 3
`

// finalWeights trains e in dir with the interruption hook and returns the
// weights at the end as bytes by name.
func finalWeights(t *testing.T, m interface{ State() []torch.Named }) map[string][]byte {
	out := map[string][]byte{}
	for _, n := range m.State() {
		out[n.Name] = n.Tensor.Bytes()
	}
	return out
}

// TestExactResume: a run interrupted at step 6 (context cancelled, as
// SIGINT does) and resumed, and a run that dies after its step-8
// checkpoint and resumes from it, both reach bit-identical weights at step
// 12 to an uninterrupted run, with dropout active (generator state
// restored) and the data cursor restored; for every optimizer (SOAP
// refreshing its eigenbases every 3 steps, so the resumed steps straddle
// refreshes).
func TestExactResume(t *testing.T) {
	for _, opt := range []string{"adamw_hf", "soap", "muon"} {
		t.Run(opt, func(t *testing.T) {
			extra := fmt.Sprintf("optimizer = %q\n[train.optim]\nprecondition_frequency = 3\n", opt)
			testExactResume(t, strings.Replace(resumeTrain, "[report]", extra+"[report]", 1))
		})
	}
}

// testExactResume is TestExactResume for the [train] table trainTOML.
func testExactResume(t *testing.T, trainTOML string) {
	leak := torch.LiveTensors()
	defer func() {
		if n := torch.LiveTensors(); n != leak {
			t.Errorf("live tensors %d → %d", leak, n)
		}
	}()
	e := experiment(t, "skipless", trainTOML+"\n") // dropout below
	e.Model.ResidPdrop, e.Model.EmbdPdrop = 0.1, 0.1
	batches := makeBatches(17, 4, 32, 512, 9) // not a multiple of 2: the cursor wraps mid-step

	train := func(dir string, hook func(pos int), cancelAt int) (map[string][]byte, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fb := &fixedBatches{rows: batches}
		m, tr := newRun(t, e, dir, "", fb)
		defer m.Close()
		defer tr.Close()
		if resumed, err := tr.Resume(); err != nil {
			t.Fatal(err)
		} else if resumed {
			t.Logf("%s: resumed at step %d", filepath.Base(dir), tr.State().Step)
		}
		fb.onNext = func(pos int) {
			if hook != nil {
				hook(pos)
			}
			if cancelAt > 0 && pos == cancelAt*2-1 { // during step cancelAt
				cancel()
			}
		}
		err := tr.Run(ctx)
		return finalWeights(t, m), err
	}

	want, err := train(filepath.Join(t.TempDir(), "straight"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	// SIGINT at step 6: the step finishes, a checkpoint is written, Run
	// returns ErrInterrupted; a new process resumes.
	dir := filepath.Join(t.TempDir(), "sigint")
	if _, err := train(dir, nil, 6); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run returned %v", err)
	}
	got, err := train(dir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	compareWeights(t, "sigint", got, want)

	// Death after the step-8 checkpoint (in the middle of step 10): no
	// checkpoint of its own; resume from step 8.
	dir = filepath.Join(t.TempDir(), "killed")
	func() {
		defer func() {
			if r := recover(); r != "killed" {
				panic(r)
			}
		}()
		train(dir, func(pos int) {
			if pos == 19 {
				panic("killed")
			}
		}, 0)
	}()
	got, err = train(dir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	compareWeights(t, "killed", got, want)
	if n := len(readMetrics(t, dir, "train")); n != 6 {
		t.Errorf("killed run: %d train log lines after resume, want 6 (no duplicates)", n)
	}
}

func compareWeights(t *testing.T, name string, got, want map[string][]byte) {
	t.Helper()
	diff := 0
	for k, w := range want {
		if string(got[k]) != string(w) {
			diff++
			if diff <= 3 {
				t.Errorf("%s: %s differs from the uninterrupted run", name, k)
			}
		}
	}
	if diff == 0 {
		t.Logf("%s: all %d tensors bit-identical to the uninterrupted run", name, len(want))
	} else {
		t.Errorf("%s: %d of %d tensors differ", name, diff, len(want))
	}
}

// trainToEnd trains e on the fixed batches in a fresh run folder and
// returns the final weights and the train records.
func trainToEnd(t *testing.T, e *Experiment, batches [][][]int32) (map[string][]byte, []map[string]any) {
	t.Helper()
	dir := t.TempDir()
	m, tr := newRun(t, e, dir, "", &fixedBatches{rows: batches})
	defer m.Close()
	defer tr.Close()
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return finalWeights(t, m), readMetrics(t, dir, "train")
}

// TestDeferredChecksMatchPerStep: the step loop without per-step host
// synchronisation (nan_check_every 5, as on a GPU) trains to bit-identical
// weights and logs the same losses as the per-step loop.
func TestDeferredChecksMatchPerStep(t *testing.T) {
	batches := makeBatches(8, 4, 32, 512, 4)
	run := func(every int) (map[string][]byte, []map[string]any) {
		e := experiment(t, "default", strings.Replace(resumeTrain, "[report]", fmt.Sprintf("nan_check_every = %d\n[report]", every), 1))
		return trainToEnd(t, e, batches)
	}
	w1, log1 := run(1)
	w5, log5 := run(5)
	compareWeights(t, "nan_check_every 5", w5, w1)
	for i := range log1 {
		if log1[i]["loss"] != log5[i]["loss"] {
			t.Errorf("log line %d: loss %v with per-step checks, %v deferred", i, log1[i]["loss"], log5[i]["loss"])
		}
	}
}

// TestNaNStops: a NaN loss stops the run with an error naming the step and
// the last checkpoint, before the update with per-step checks; deferred
// checks name the window.
func TestNaNStops(t *testing.T) {
	for _, every := range []int{1, 3} {
		t.Run(fmt.Sprint(every), func(t *testing.T) {
			e := experiment(t, "default", strings.Replace(resumeTrain, "[report]", fmt.Sprintf("nan_check_every = %d\n[report]", every), 1))
			dir := t.TempDir()
			m, tr := newRun(t, e, dir, "", &fixedBatches{rows: makeBatches(4, 4, 32, 512, 5)})
			defer m.Close()
			defer tr.Close()
			m.Params().Lookup("transformer.ln_f.weight").T.Fill(math.NaN()) // the loss is NaN from step 1
			err := tr.Run(context.Background())
			var ne *NaNError
			if !errors.As(err, &ne) {
				t.Fatalf("got %v, want a NaNError", err)
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), "last checkpoint") {
				t.Errorf("message lacks the last checkpoint: %v", err)
			}
		})
	}
}

// TestFP16LossScaling: with fp16 autocast and an initial loss scale that
// overflows, steps are skipped without advancing the schedule and the scale
// halves until updates go through (torch.amp.GradScaler semantics).
func TestFP16LossScaling(t *testing.T) {
	e := experiment(t, "default", strings.Replace(resumeTrain, "[report]", "precision = \"fp16\"\n[report]", 1))
	dir := t.TempDir()
	m, tr := newRun(t, e, dir, "", &fixedBatches{rows: makeBatches(8, 4, 32, 512, 6)})
	defer m.Close()
	defer tr.Close()
	tr.st.LossScale = 1 << 30 // overflows fp16 gradients at first
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := tr.State()
	if st.SkippedSteps == 0 {
		t.Fatal("no step was skipped")
	}
	if st.SchedStep != st.Step-st.SkippedSteps {
		t.Errorf("schedule at %d after %d steps with %d skipped", st.SchedStep, st.Step, st.SkippedSteps)
	}
	if st.SkippedSteps == st.Step {
		t.Fatalf("all %d steps skipped: the scale never recovered (now %g)", st.Step, st.LossScale)
	}
	if want := float64(1<<30) / math.Pow(2, float64(st.SkippedSteps)); st.LossScale != want {
		t.Errorf("loss scale %g, want %g", st.LossScale, want)
	}
	t.Logf("%d of %d steps skipped for overflow; loss scale now %g; schedule at step %d", st.SkippedSteps, st.Step, st.LossScale, st.SchedStep)
}
