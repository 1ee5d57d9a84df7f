package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTraining starts the binary on a long micro run and returns once it
// trains (its stderr said so); the rest of stderr is drained into a buffer.
func startTraining(t *testing.T, dir string, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd, pipe := startClm(t, dir, nil, args...)
	var log strings.Builder
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		said := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !said && strings.Contains(sc.Text(), "training: step") {
				said = true
				started <- true
			}
		}
		if !said {
			started <- false
		}
	}()
	select {
	case ok := <-started:
		if !ok {
			cmd.Wait()
			t.Fatalf("the first run did not start training:\n%s", log.String())
		}
	case <-time.After(120 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the first run did not start within 2 minutes")
	}
	return cmd, &log
}

// TestOneWriterPerRunFolder: while a run trains, a second training into its
// folder and a -resume of it fail at once naming the first process; the
// first finishes normally; a lock left by a killed process blocks nothing.
func TestOneWriterPerRunFolder(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "long.toml"), strings.Replace(microExperiment, "max_steps = 12", "max_steps = 400", 1))
	first, log := startTraining(t, dir, "-config", cfg, "-run-dir", "run")
	pid := fmt.Sprint(first.Process.Pid)
	for _, args := range [][]string{{"-config", cfg, "-run-dir", "run"}, {"-resume", "run"}} {
		start := time.Now()
		_, stderr, code := clm(t, dir, args...)
		took := time.Since(start)
		last := lastLine(stderr)
		if code == 0 || !strings.Contains(last, "run folder run is in use by process "+pid) || !strings.HasPrefix(last, "clm: ") {
			t.Errorf("%v while the run trains: exit %d, %q", args, code, last)
		}
		if took > 2*time.Second {
			t.Errorf("%v took %v to refuse", args, took)
		}
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("the first run: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "step 400/400") {
		t.Errorf("the first run did not finish:\n%s", log.String())
	}

	// A killed run's lock does not block the next start.
	killed, _ := startTraining(t, dir, "-config", cfg, "-run-dir", "killed")
	killed.Process.Signal(syscall.SIGKILL)
	killed.Wait()
	if _, stderr, code := clm(t, dir, "-resume", "killed"); code != 0 {
		t.Errorf("resume after a kill: exit %d\n%s", code, stderr)
	}
}

// TestInterruptDuringDataPreparation: Ctrl-C while the tokenizer is being
// trained exits 130 saying what was kept, not promising a checkpoint, and
// leaves no run folder behind.
func TestInterruptDuringDataPreparation(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	// A cache of its own: the tokenizer is trained anew.
	cmd, pipe := startClm(t, dir, []string{"CLM_CACHE=" + filepath.Join(dir, "fresh-cache")}, "-config", cfg, "-run-dir", "run")
	var log strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "tokenizer: none given") {
			cmd.Process.Signal(syscall.SIGINT)
		}
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130\n%s", err, log.String())
	}
	out := log.String()
	if strings.Contains(out, "checkpoint") || !strings.Contains(out, "interrupted while preparing the data, before training") {
		t.Errorf("stderr:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
		t.Errorf("the interrupted start left a run folder")
	}
}
