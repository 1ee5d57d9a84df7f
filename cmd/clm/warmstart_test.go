package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/train"
)

// TestWarmStart: train.init_from starts a new run from another run's
// weights with a new schedule: its step-0 evaluation is the source run's
// last, its config.toml names the checkpoint it started from, it continues
// like any run, and another architecture is refused.
func TestWarmStart(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "base"); code != 0 {
		t.Fatalf("base run: %d\n%s", code, stderr)
	}
	warm := []string{"-config", cfg, "-run-dir", "warm", "-set", `train.init_from="base"`, "-set", "train.max_steps=6", "-set", "train.lr=1e-4"}
	_, stderr, code := clm(t, dir, warm...)
	if code != 0 || !strings.Contains(stderr, "warm start: the weights of base/checkpoints/step-00000012") {
		t.Fatalf("warm start: exit %d\n%s", code, stderr)
	}
	base, got := readRecords(t, filepath.Join(dir, "base")), readRecords(t, filepath.Join(dir, "warm"))
	if b, w := base["eval@12"]["eval_loss"], got["eval@0"]["eval_loss"]; b == nil || b != w {
		t.Errorf("the warm start's step-0 eval loss %v, want the base run's last %v", w, b)
	}
	if lr := got["train@3"]["lr"]; lr == nil || lr.(float64) > 1e-4 {
		t.Errorf("the warm start's schedule: lr %v at step 3", lr)
	}
	exp, err := train.Load(filepath.Join(dir, "warm", "config.toml"), nil)
	if err != nil || exp.Train.InitFrom != filepath.Join("base", "checkpoints", "step-00000012") {
		t.Errorf("config.toml records init_from %q (%v)", exp.Train.InitFrom, err)
	}
	// The same experiment again continues the run (the folder asked was
	// resolved to its checkpoint); the warm run resumes as any run.
	out, stderr, code := clm(t, dir, warm...)
	if code != 0 || !strings.Contains(stderr, "holds this experiment") || !strings.Contains(out, "done: 6 steps") {
		t.Errorf("the warm experiment again: exit %d\n%s%s", code, out, stderr)
	}
	_, stderr, code = clm(t, dir, "-config", cfg, "-run-dir", "wide", "-set", `train.init_from="base"`, "-set", "model.n_embd=64")
	if code != 1 || !strings.Contains(lastLine(stderr), "train.init_from: base/checkpoints/step-00000012 is another model: model.n_embd 32 (checkpoint) vs 64") {
		t.Errorf("another architecture: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "wide")); err == nil {
		t.Errorf("the refused warm start left a run folder")
	}
}

// TestReadersChangeNothing: a crash between moving a re-saved checkpoint
// aside and installing its replacement leaves step-N.old alone; `clm
// sample` reads it where it lies and changes nothing in the run folder; the
// next training start (which holds the run lock) puts it back.
func TestReadersChangeNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "run"); code != 0 {
		t.Fatalf("run: %d\n%s", code, stderr)
	}
	final := filepath.Join(dir, "run", "checkpoints", "step-00000012")
	if err := os.Rename(final, final+".old"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "run", "quant.json"))
	before := treeListing(t, filepath.Join(dir, "run"))
	if out, stderr, code := clm(t, dir, "sample", "run", "-n", "3"); code != 0 || !strings.HasPrefix(out, "def ") {
		t.Fatalf("sample from the moved-aside checkpoint: exit %d\n%s%s", code, out, stderr)
	}
	if after := treeListing(t, filepath.Join(dir, "run")); after != before {
		t.Errorf("clm sample changed the run folder:\nbefore\n%s\nafter\n%s", before, after)
	}
	if _, stderr, code := clm(t, dir, "-resume", "run"); code != 0 {
		t.Fatalf("resume: %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(final, "state.json")); err != nil {
		t.Errorf("the training start did not put the checkpoint back: %v", err)
	}
}

// treeListing lists the files under dir with their sizes and times.
func treeListing(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + fi.ModTime().String() + "\n")
		return nil
	})
	return b.String()
}

// TestDamagedCheckpointWayOut: -resume of a run whose latest checkpoint is
// damaged names the checkpoint before it and the move that resumes from it;
// doing so finishes the run.
func TestDamagedCheckpointWayOut(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "run", "-set", "train.max_steps=20"); code != 0 {
		t.Fatalf("run: %d\n%s", code, stderr)
	}
	last := filepath.Join("run", "checkpoints", "step-00000020")
	os.WriteFile(filepath.Join(dir, last, "optimizer.safetensors"), []byte("damaged"), 0o644)
	_, stderr, code := clm(t, dir, "-resume", "run")
	want := "mv " + last + " " + last + ".damaged"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("resume of a damaged checkpoint: exit %d, want the way out %q:\n%s", code, want, stderr)
	}
	if err := os.Rename(filepath.Join(dir, last), filepath.Join(dir, last+".damaged")); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := clm(t, dir, "-resume", "run")
	if code != 0 || !strings.Contains(stderr, "resumed from run/checkpoints/step-00000016") || !strings.Contains(out, "done: 20 steps") {
		t.Errorf("the way out: exit %d\n%s%s", code, out, stderr)
	}
}
