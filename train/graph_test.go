package train

import (
	"context"
	"errors"
	"strings"
	"testing"

	"clm/model"
	"clm/torch"
)

// rerun stands in for a CUDA graph on the CPU: its capture records f
// without running it (as a graph's capture launches nothing), and each
// replay runs f again. It exercises everything train.cuda_graphs does
// around the graph: the warm-up, the graph's input and output tensors, the
// split AdamW step, the schedule and the deferred checks.
type rerun struct{ f func() }

func (r *rerun) Replay() error { return torch.Try(r.f) }
func (r *rerun) Close()        {}

func captureRerun(_ torch.Device, f func()) (replayer, error) { return &rerun{f: f}, nil }

// graphedRun trains e to the end with captured steps (capture standing in
// for the CUDA graph), and returns the final weights, the train records,
// the graph's step counts and the log.
func graphedRun(t *testing.T, e *Experiment, batches [][][]int32, capture captureFunc) (map[string][]byte, []map[string]any, *graphStep, string) {
	t.Helper()
	dir := t.TempDir()
	m, tr := newRun(t, e, dir, "", &fixedBatches{rows: batches})
	defer m.Close()
	defer tr.Close()
	var log strings.Builder
	tr.log, tr.eng.log = &log, &log
	if err := tr.eng.enableGraphs(capture); err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	gs := *tr.eng.graph
	return finalWeights(t, m), readMetrics(t, dir, "train"), &gs, log.String()
}

// TestGraphStepsMatchEager: steps taken through train.cuda_graphs' path
// (3 eager, then one captured and replayed, then replays) train to the
// weights and losses of the plain loop, bit for bit, for every preset (so
// every preset's parameters all take a gradient each step, as AdamW's graph
// mode needs); so does a run whose capture fails after AdamW's host half
// ran (it goes on eagerly, and says so); and nothing is left allocated.
func TestGraphStepsMatchEager(t *testing.T) {
	batches := makeBatches(8, 4, 32, 512, 4)
	refuse := func(torch.Device, func()) (replayer, error) { return nil, errors.New("refused by the test") }
	type run struct {
		name, preset    string
		capture         captureFunc
		eager, replayed int
		log             string
	}
	var runs []run
	for _, p := range model.PresetNames() {
		runs = append(runs, run{p + "/replayed", p, captureRerun, graphWarmup, 12 - graphWarmup,
			"train.cuda_graphs: step 4 captured; replaying it from now on"})
	}
	runs = append(runs, run{"default/capture failed", "default", refuse, 12, 0,
		"the capture of step 4 failed, training on without graphs: refused by the test"})
	for _, c := range runs {
		t.Run(c.name, func(t *testing.T) {
			e := experiment(t, c.preset, strings.Replace(resumeTrain, "[report]", "nan_check_every = 4\n[report]", 1))
			want, wantLog := trainToEnd(t, e, batches)
			live := torch.LiveTensors()
			got, gotLog, gs, log := graphedRun(t, e, batches, c.capture)
			if n := torch.LiveTensors(); n != live {
				t.Errorf("live tensors %d → %d", live, n)
			}
			compareWeights(t, c.name, got, want)
			if len(gotLog) != len(wantLog) {
				t.Fatalf("%d train records, plain loop %d", len(gotLog), len(wantLog))
			}
			for i := range wantLog {
				if gotLog[i]["loss"] != wantLog[i]["loss"] || gotLog[i]["grad_norm"] != wantLog[i]["grad_norm"] || gotLog[i]["lr"] != wantLog[i]["lr"] {
					t.Errorf("record %d: %v, plain loop %v", i, gotLog[i], wantLog[i])
				}
			}
			if gs.Eager != c.eager || gs.Replayed != c.replayed {
				t.Errorf("%d eager and %d replayed steps, want %d and %d", gs.Eager, gs.Replayed, c.eager, c.replayed)
			}
			if !strings.Contains(log, c.log) {
				t.Errorf("log %q, want %q", log, c.log)
			}
			t.Logf("%s: %d eager + %d replayed steps, weights and %d records bitwise the plain loop's", c.name, gs.Eager, gs.Replayed, len(gotLog))
		})
	}
}

// TestGraphStepsRefused: train.cuda_graphs names what it needs.
func TestGraphStepsRefused(t *testing.T) {
	for _, c := range []struct{ name, train, want string }{
		{"soap", "optimizer = \"soap\"\nnan_check_every = 4", "an AdamW optimizer, not soap"},
		{"checked", "nan_check_every = 1", "deferred NaN checks"},
		{"skip on NaN", "nan_check_every = 4\non_nan = \"skip\"", "deferred NaN checks"},
		{"checkpointing", "nan_check_every = 4\ncheckpoint_activations = \"block\"", "checkpoint_activations = \"none\", not \"block\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := experiment(t, "default", strings.Replace(resumeTrain, "[report]", c.train+"\n[report]", 1))
			m, tr := newRun(t, e, t.TempDir(), "", &fixedBatches{rows: makeBatches(2, 4, 32, 512, 1)})
			defer m.Close()
			defer tr.Close()
			err := tr.eng.enableGraphs(captureRerun)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "train.cuda_graphs needs ") {
				t.Fatalf("enableGraphs: %v, want train.cuda_graphs needs … %q", err, c.want)
			}
			t.Log(err)
		})
	}
	e := experiment(t, "default", strings.Replace(resumeTrain, "[report]", "cuda_graphs = true\nnan_check_every = 4\n[report]", 1))
	m := seededModel(t, e.Model, torch.CPU, 1)
	defer m.Close()
	_, err := NewTrainer(Config{Experiment: e, Dir: t.TempDir(), Model: m, Batches: &fixedBatches{rows: makeBatches(2, 4, 32, 512, 1)}, TotalSteps: 12})
	if err == nil || err.Error() != "train.cuda_graphs needs a CUDA device; this run is on cpu" {
		t.Fatalf("cuda_graphs on the CPU: %v", err)
	}
	t.Log(err)
}
