package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"clm/train"
)

// longEvalExperiment is microExperiment whose evaluations take seconds:
// the whole validation set, one sequence per forward.
var longEvalExperiment = strings.NewReplacer("eval_batches = 2", "eval_batches = 0\neval_batch = 1",
	"valid_docs = 20", "valid_docs = 100", "log_every = 3", "log_every = 6").Replace(microExperiment)

// TestInterruptDuringEvaluation: Ctrl-C during a long evaluation stops the
// run within 2 s with the checkpoint of the step reached; the resumed run
// does that evaluation first and ends with the uninterrupted run's weights
// and records.
func TestInterruptDuringEvaluation(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "long-eval.toml"), longEvalExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "straight"); code != 0 {
		t.Fatalf("uninterrupted run: %d\n%s", code, stderr)
	}
	if _, ok := readRecords(t, filepath.Join(dir, "straight"))["eval@12"]; !ok {
		t.Fatal("the uninterrupted run recorded no evaluation at step 12")
	}

	cmd, pipe := startClm(t, dir, nil, "-config", cfg, "-run-dir", "stopped")
	var stderr strings.Builder
	var signalled time.Time
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		// The log line of step 6 comes just before its evaluation starts.
		if signalled.IsZero() && strings.Contains(sc.Text(), "step 6/12  loss") {
			time.Sleep(200 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGINT)
			signalled = time.Now()
		}
	}
	err := cmd.Wait()
	took := time.Since(signalled)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130\n%s", err, stderr.String())
	}
	if signalled.IsZero() || took > 2*time.Second {
		t.Errorf("exited %v after Ctrl-C during the evaluation, want under 2 s\n%s", took, stderr.String())
	}
	if !strings.Contains(stderr.String(), "evaluation interrupted") {
		t.Fatalf("the signal did not land in the evaluation:\n%s", stderr.String())
	}
	st, err := train.ReadState(mustLatest(t, filepath.Join(dir, "stopped")))
	if err != nil || st.Step != 6 || !st.PendingEval {
		t.Fatalf("checkpoint after the interrupted evaluation: step %d, pending %v (%v)", st.Step, st.PendingEval, err)
	}
	t.Logf("stopped %v after Ctrl-C, at step %d with the evaluation pending", took.Round(time.Millisecond), st.Step)

	// A copy is killed after the resumed run recorded the pending
	// evaluation and before it cleared the mark: the next resume must not
	// record it twice (readRecords fails on a repeated record).
	copyDir(t, filepath.Join(dir, "stopped"), filepath.Join(dir, "killed"))
	if _, _, code := runClm(t, dir, []string{"CLM_CACHE=" + cacheDir(t), "CLM_FAULT=train.pending eval recorded@1"}, "-resume", "killed"); code != -1 {
		t.Fatalf("the resume to kill exited %d: the fault point was not reached", code)
	}
	for _, run := range []string{"stopped", "killed"} {
		if _, stderr, code := clm(t, dir, "-resume", run); code != 0 {
			t.Fatalf("resume %s: %d\n%s", run, code, stderr)
		}
		if st, _ := train.ReadState(train.CheckpointPath(filepath.Join(dir, run), 6)); st.PendingEval {
			t.Errorf("%s: the checkpoint of step 6 still has its evaluation pending", run)
		}
		want, got := weights(t, train.CheckpointPath(filepath.Join(dir, "straight"), 12)), weights(t, train.CheckpointPath(filepath.Join(dir, run), 12))
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: tensor %s differs from the uninterrupted run", run, k)
			}
		}
		compareRecords(t, readRecords(t, filepath.Join(dir, "straight")), readRecords(t, filepath.Join(dir, run)))
	}
}

// TestPipedRunSpeaks: with its output piped (tee, Slurm, docker logs), a
// run quiet in a long evaluation still writes a line within 30 s, saying
// where it is.
func TestPipedRunSpeaks(t *testing.T) {
	dir := t.TempDir()
	// Step 0's evaluation: the whole held-out share, one sequence a forward
	// (longer than the test waits).
	cfg := write(t, filepath.Join(dir, "quiet.toml"), strings.NewReplacer("eval_batches = 2", "eval_batches = 0\neval_batch = 1",
		"valid_docs = 20", "valid_docs = 2000\nvalid_fraction = 0.5").Replace(microExperiment))
	cmd, pipe := startClm(t, dir, nil, "-config", cfg, "-run-dir", "quiet")
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(pipe)
	var last time.Time
	for sc.Scan() {
		line := sc.Text()
		now := time.Now()
		if strings.Contains(line, "eval at step 0") {
			gap := now.Sub(last)
			if gap > 31*time.Second || !strings.Contains(line, "so far") {
				t.Errorf("%q came %v after the previous line, want within 30 s", line, gap.Round(time.Millisecond))
			}
			t.Logf("%q, %v after the previous line", line, gap.Round(time.Millisecond))
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
		if strings.Contains(line, "eval_loss") {
			t.Fatalf("the evaluation ended before it was quiet for 30 s: %q", line)
		}
		last = now
	}
	for sc.Scan() {
	}
	if err := cmd.Wait(); err == nil {
		t.Errorf("the interrupted run exited 0")
	}
}
