package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clm/internal/version"
	"clm/torch"
	"clm/train"
)

// TestRunFolderIsWhatItSays walks the trap of `make fig2` after a smoke run:
// the figure's experiment into a folder that holds the smoke run is refused
// with the differences and the ways out; the same experiment again continues
// its run; -fresh moves the old run aside and starts the asked one.
func TestRunFolderIsWhatItSays(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "fig.toml"), microExperiment)
	smoke := []string{"-config", cfg, "-run-dir", "runs/fig", "-set", "model.n_layer=1", "-set", "train.max_steps=4"}
	if _, stderr, code := clm(t, dir, smoke...); code != 0 {
		t.Fatalf("smoke run: exit %d\n%s", code, stderr)
	}

	_, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "runs/fig")
	last := lastLine(stderr)
	for _, want := range []string{"run folder runs/fig holds another experiment", "model.n_layer: 1 in the run, 2 asked",
		"train.max_steps: 4 in the run, 12 asked", "clm -resume runs/fig", "-run-dir", "-fresh"} {
		if !strings.Contains(last, want) {
			t.Errorf("the figure's run over the smoke run: error lacks %q:\n%s", want, stderr)
		}
	}
	if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("exit %d, want 1 and one line:\n%s", code, stderr)
	}
	if st, _ := train.ReadState(mustLatest(t, filepath.Join(dir, "runs/fig"))); st.Step != 4 {
		t.Errorf("the refused start changed the smoke run: latest step %d", st.Step)
	}

	// The same experiment (a log key aside) continues its run: nothing to do.
	out, stderr, code := clm(t, dir, append(smoke, "-set", "train.log_every=1")...)
	if code != 0 || !strings.Contains(stderr, "holds this experiment: continuing it") || !strings.Contains(out, "done: 4 steps") {
		t.Errorf("the same experiment again: exit %d\n%s%s", code, out, stderr)
	}

	out, stderr, code = clm(t, dir, "-config", cfg, "-run-dir", "runs/fig", "-fresh")
	if code != 0 || !strings.Contains(out, "done: 12 steps") || !strings.Contains(stderr, "moved the old run aside: runs/fig.old-") {
		t.Fatalf("-fresh: exit %d\n%s%s", code, out, stderr)
	}
	olds, _ := filepath.Glob(filepath.Join(dir, "runs", "fig.old-*"))
	if len(olds) != 1 {
		t.Fatalf("-fresh left %v beside the new run", olds)
	}
	if st, err := train.ReadState(mustLatest(t, olds[0])); err != nil || st.Step != 4 {
		t.Errorf("the smoke run moved aside: step %d, %v", st.Step, err)
	}
	// Each start is recorded: the smoke run and its continuation in the old
	// folder, the fresh run in the new one.
	for _, c := range []struct {
		dir   string
		steps []int
	}{{olds[0], []int{0, 4}}, {filepath.Join(dir, "runs/fig"), []int{0}}} {
		b, err := os.ReadFile(filepath.Join(c.dir, train.StartsFile))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if err != nil || len(lines) != len(c.steps) {
			t.Fatalf("%s: %d starts recorded (%v), want %d", c.dir, len(lines), err, len(c.steps))
		}
		for i, l := range lines {
			var s train.Start
			if err := json.Unmarshal([]byte(l), &s); err != nil || s.Step != c.steps[i] || s.Libtorch != torch.Version() ||
				s.Clm.Release != version.Release || s.Device != "cpu" || s.Host == "" || len(s.Command) < 3 || s.Threads != 1 {
				t.Errorf("%s start %d: %v %+v", c.dir, i, err, s)
			}
		}
	}
	if _, _, code := clm(t, dir, "-resume", "runs/fig", "-fresh"); code == 0 {
		t.Errorf("-resume with -fresh was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "runs", "fig", "config.toml")); err != nil {
		t.Error(err)
	}
}
