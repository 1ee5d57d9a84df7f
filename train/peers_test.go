package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"clm/internal/testkit/pyref"
)

// The step of `make bench-peers` (scripts/reference/bench_peers.py): the
// clm defaults with torch's AdamW, 6 steps of 2 micro-batches.
const peerSteps, peerAccum = 6, 2

// TestPeersTrainAsClm: the benchmark peers do the step clm does. From the
// same weights and batches, eager PyTorch (SDPA, the head only where the
// loss looks, no dropout modules, foreach AdamW and clipping) and
// torch.compile of it give clm's loss at the first step to 1e-5 relative
// and at every later step to 1e-4 (float32 rounding through AdamW), for
// the two presets the benchmarks time, and torch.compile's graph has no
// break (one made it run the model's forward eagerly before the peers
// skipped a .item()). bench_peers.py check holds the
// benchmarks' forward to the plain one in float64 (loss and gradients).
func TestPeersTrainAsClm(t *testing.T) {
	pyref.Require(t)
	pyref.Run(t, "bench_peers.py", "check")
	batches := makeBatches(peerSteps*peerAccum, 4, 32, 512, 5)
	bpath := writeTrajectoryBatches(t, batches)
	for _, preset := range []string{"default", "skipless-parallel"} {
		t.Run(preset, func(t *testing.T) {
			r := preparePeerRun(t, preset)
			m, tr := newRunDType(t, r.e, r.dir, r.weights, &fixedBatches{rows: batches}, r.dtype)
			if err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr.Close()
			m.Close()
			got := readMetrics(t, r.dir, "train")
			for _, mode := range []string{"eager", "compile"} {
				out := filepath.Join(r.dir, mode+".json")
				pyref.Run(t, "bench_peers.py", "trajectory", "--config", filepath.Join(r.dir, "model.json"),
					"--weights", r.weights, "--batches", bpath, "--steps", fmt.Sprint(peerSteps),
					"--accum", fmt.Sprint(peerAccum), "--mode", mode, "--out", out)
				comparePeer(t, mode, out, got)
			}
		})
	}
}

// preparePeerRun is a run of the benchmarks' settings (the clm defaults,
// adamw_torch) with its initial weights written for the peers.
func preparePeerRun(t *testing.T, preset string) trajectoryRun {
	t.Helper()
	e := experiment(t, preset, fmt.Sprintf(`
[train]
micro_batch = 4
accumulation = %d
max_steps = %d
optimizer = "adamw_torch"
log_every = 1
save_every = 1000
eval_every = 1000
[report]
every = 0
`, peerAccum, peerSteps))
	return prepareRun(t, e, preset)
}

// comparePeer compares a peer's trajectory file with clm's train records.
func comparePeer(t *testing.T, mode, path string, got []map[string]any) {
	t.Helper()
	var ref struct {
		refTrajectory
		GraphBreaks int `json:"graph_breaks"`
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &ref)
	}
	if err != nil || len(ref.Steps) != len(got) {
		t.Fatalf("%s: %v; %d peer steps, %d clm steps", mode, err, len(ref.Steps), len(got))
	}
	if ref.GraphBreaks != 0 {
		t.Errorf("%s: %d graph breaks: torch.compile runs part of the step eagerly, a weaker peer than a user would write", mode, ref.GraphBreaks)
	}
	worst := 0.0
	defer func() { t.Logf("%s: worst relative loss difference %.2g over %d steps", mode, worst, len(got)) }()
	for i, s := range ref.Steps {
		tol := 1e-4
		if i == 0 {
			tol = 1e-5
		}
		gl := got[i]["loss"].(float64)
		rel := math.Abs(gl-s.Loss) / math.Abs(s.Loss)
		worst = math.Max(worst, rel)
		if rel > tol {
			t.Errorf("%s step %d: loss %.8f, clm %.8f (rel %.2g > %g)", mode, s.Step, s.Loss, gl, rel, tol)
		}
	}
}
