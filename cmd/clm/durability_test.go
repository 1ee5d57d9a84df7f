package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"clm/safetensors"
	"clm/tensorboard"
	"clm/train"
)

// durableExperiment is microExperiment with a log record every step and
// frequent checkpoints, evaluations and statistics: many writes to kill.
var durableExperiment = strings.NewReplacer("max_steps = 12", "max_steps = 400", "eval_every = 6", "eval_every = 7",
	"log_every = 3", "log_every = 1", "save_every = 4", "save_every = 5", "every = 5", "every = 3").Replace(microExperiment)

// attempt is one start of the interrupted run and how it is stopped.
type attempt struct {
	fault string           // CLM_FAULT: SIGKILL at a point of the work
	after time.Duration    // else: this long after training starts,
	sigs  []syscall.Signal // send these (50 ms apart)
}

// TestRunFolderSurvivesKills kills a dropout-on run at 24 moments (after an
// update before its records, mid-way through a metrics line, at every stage
// of a checkpoint and of a re-saved one, at random times) and stops it with
// SIGINT, SIGTERM and a double SIGINT, resuming after each. The final
// weights and optimizer state are bit-identical to an uninterrupted run's,
// metrics.jsonl holds every (kind, step) record of that run exactly once
// with the same values (timings aside) and no broken line, and so do the
// TensorBoard events.
func TestRunFolderSurvivesKills(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "durable.toml"), durableExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "ref"); code != 0 {
		t.Fatalf("uninterrupted run: %d\n%s", code, stderr)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("random kill times from seed %d", seed)
	random := func() attempt { return attempt{after: time.Duration(rng.IntN(400)) * time.Millisecond} }
	// A graceful stop (SIGINT) just before "latest written" makes sure a
	// latest file exists, so that the next start saves that step again
	// (the exchange path of a re-saved folder).
	plan := []attempt{
		{fault: "train.step@3"}, {fault: "metrics.record@4"}, {fault: "checkpoint.written@1"},
		{fault: "checkpoint.renamed@1"}, {after: 100 * time.Millisecond, sigs: []syscall.Signal{syscall.SIGINT}},
		{fault: "checkpoint.latest written@1"}, {fault: "checkpoint.exchanged@1"}, {fault: "checkpoint.latest moved@1"},
		random(), {fault: "metrics.record@1"}, {fault: "train.step@1"}, random(), random(),
		{fault: "metrics.record@9"}, random(), {sigs: []syscall.Signal{syscall.SIGTERM}},
		{fault: "checkpoint.written@2"}, random(), {fault: "train.step@6"}, random(),
		{sigs: []syscall.Signal{syscall.SIGINT, syscall.SIGINT}}, {fault: "checkpoint.latest written@2"},
		random(), {fault: "metrics.record@20"}, random(), {fault: "checkpoint.renamed@2"}, random(),
	}
	killed := 0
	for i, a := range plan {
		args := []string{"-resume", "int"}
		if i == 0 {
			args = []string{"-config", cfg, "-run-dir", "int"}
		}
		code, log := runAndStop(t, dir, a, args)
		switch {
		case code == -1:
			killed++
		case a.fault != "":
			t.Fatalf("attempt %d never reached fault point %s (exit %d):\n%s", i, a.fault, code, tail(log, 6))
		case code == 130 && len(a.sigs) > 0:
			if !strings.Contains(log, "stopping after this step") {
				t.Errorf("attempt %d (%v): exit 130 without the stop message", i, a.sigs)
			}
		case code == 0:
			t.Logf("attempt %d (%+v) finished the run before its stop:\n%s", i, a, tail(log, 6))
		default:
			t.Fatalf("attempt %d (%+v): exit %d\n%s", i, a, code, log)
		}
	}
	if killed < 20 {
		t.Errorf("only %d of %d attempts were killed", killed, len(plan))
	}
	if _, stderr, code := clm(t, dir, "-resume", "int"); code != 0 {
		t.Fatalf("final resume: %d\n%s", code, stderr)
	}
	t.Logf("%d kills and 3 signals, then the run finished", killed)
	ref, got := filepath.Join(dir, "ref"), filepath.Join(dir, "int")
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		if a, b := tensors(t, train.CheckpointPath(ref, 400), f), tensors(t, train.CheckpointPath(got, 400), f); !reflect.DeepEqual(a, b) {
			t.Errorf("%s differs from the uninterrupted run's", f)
		}
	}
	compareRecords(t, readRecords(t, ref), readRecords(t, got))
	compareScalars(t, ref, got)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// runAndStop runs one attempt and returns its exit code (-1: killed by a
// signal) and stderr.
func runAndStop(t *testing.T, dir string, a attempt, args []string) (int, string) {
	t.Helper()
	cmd, pipe := startClm(t, dir, []string{"CLM_FAULT=" + a.fault}, args...)
	var log strings.Builder
	sc := bufio.NewScanner(pipe)
	started := false
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if !started && strings.Contains(sc.Text(), "training: step") && a.fault == "" {
			started = true
			go func() {
				time.Sleep(a.after)
				if len(a.sigs) == 0 {
					cmd.Process.Signal(syscall.SIGKILL)
				}
				for _, s := range a.sigs {
					cmd.Process.Signal(s)
					time.Sleep(50 * time.Millisecond)
				}
			}()
		}
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), log.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, log.String()
}

// tensors reads every tensor of a safetensors file of a checkpoint.
func tensors(t *testing.T, ckpt, file string) map[string]string {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(ckpt, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	for _, n := range f.Names() {
		b, _ := f.Bytes(n)
		out[n] = string(b)
	}
	return out
}

// timing fields differ between any two runs: measurements of the machine
// (the clock, the throughput, the peak memory), not of the training.
var timing = map[string]bool{"time": true, "tokens_per_s": true, "peak_memory": true}

// readRecords parses metrics.jsonl, failing on a broken line or a
// repeated (kind, step), and drops the timing fields.
func readRecords(t *testing.T, run string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s metrics.jsonl line %d is not JSON: %q", filepath.Base(run), i+1, line)
		}
		key := fmt.Sprintf("%v@%v", rec["kind"], rec["step"])
		if _, dup := out[key]; dup {
			t.Errorf("%s: record %s twice", filepath.Base(run), key)
		}
		for k := range timing {
			delete(rec, k)
		}
		out[key] = rec
	}
	return out
}

func compareRecords(t *testing.T, want, got map[string]map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("record %s lost", k)
		case !reflect.DeepEqual(w, g):
			t.Errorf("record %s differs:\n got  %v\n want %v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("record %s is not in the uninterrupted run", k)
		}
	}
	t.Logf("%d records compared", len(want))
}

// compareScalars checks the TensorBoard events the same way.
func compareScalars(t *testing.T, ref, got string) {
	t.Helper()
	read := func(run string) map[string]float32 {
		sc, err := tensorboard.ReadScalars(filepath.Join(run, "tb"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float32{}
		for _, s := range sc {
			if timing[filepath.Base(s.Tag)] {
				continue
			}
			key := fmt.Sprintf("%s@%d", s.Tag, s.Step)
			if _, dup := out[key]; dup {
				t.Errorf("%s: event %s twice", filepath.Base(run), key)
			}
			out[key] = s.Value
		}
		return out
	}
	want, have := read(ref), read(got)
	if !reflect.DeepEqual(want, have) {
		n := 0
		for k, v := range want {
			if hv, ok := have[k]; (!ok || hv != v) && n < 5 {
				t.Errorf("event %s: %v, want %v (present %v)", k, hv, v, ok)
				n++
			}
		}
		t.Errorf("TensorBoard events differ: %d vs %d scalars", len(have), len(want))
	}
}
