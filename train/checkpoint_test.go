package train

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"clm/model"
	"clm/safetensors"
)

type crash struct{ stage string }

// TestCheckpointReplacementIsAtomic saves a step whose folder already
// exists (a resumed finished run saves its last step again) and stops the
// save, as a crash would, at every stage of the replacement, with the
// atomic exchange and with its fallback: the step folder is always whole,
// old or new, and the next save cleans up.
func TestCheckpointReplacementIsAtomic(t *testing.T) {
	e := experiment(t, "default", "")
	m, tr := newRun(t, e, t.TempDir(), "", &fixedBatches{})
	defer m.Close()
	defer tr.Close()
	save := func(dir string, tokens int64) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(crash); !ok {
					panic(r)
				}
				err = os.ErrDeadlineExceeded // stands for "the process died here"
			}
		}()
		_, err = SaveCheckpoint(dir, m, tr.Optimizer(), State{Step: 5, TotalSteps: 9, Tokens: tokens}, nil)
		return err
	}
	exchange := renameExchange
	point := crashPoint
	defer func() { renameExchange, crashPoint = exchange, point }()
	for _, path := range []struct {
		name   string
		stages []string
		swap   func(a, b string) error
	}{
		{"exchange", []string{"written", "exchanged", "latest written", "latest moved"}, exchange},
		{"fallback", []string{"written", "old moved aside", "renamed", "latest written", "latest moved"},
			func(string, string) error { return unix.EINVAL }},
	} {
		for _, stage := range path.stages {
			t.Run(path.name+"/"+stage, func(t *testing.T) {
				dir := t.TempDir()
				renameExchange, crashPoint = path.swap, func(string) {}
				if err := save(dir, 111); err != nil {
					t.Fatal(err)
				}
				hit := false
				crashPoint = func(s string) {
					if s == stage {
						hit = true
						panic(crash{s})
					}
				}
				save(dir, 222)
				crashPoint = func(string) {}
				if !hit {
					t.Fatalf("the save never reached stage %q", stage)
				}
				// A reader finds a whole step 5 and changes nothing; the
				// next training start repairs, under the run lock.
				checkWhole(t, dir, 111, 222, true)
				RepairCheckpoints(dir)
				checkWhole(t, dir, 111, 222, false)
				if err := save(dir, 333); err != nil {
					t.Fatal(err)
				}
				if tok := checkWhole(t, dir, 333, 333, false); tok != 333 {
					t.Errorf("after a clean save: tokens %d", tok)
				}
				ents, _ := os.ReadDir(filepath.Join(dir, checkpointDir))
				for _, en := range ents {
					if n := en.Name(); n != "step-00000005" && n != latestFile {
						t.Errorf("left behind: %s", n)
					}
				}
			})
		}
	}
}

// checkWhole asserts that the latest checkpoint of dir is step 5, complete
// and readable, holding one of the two saves; it returns its tokens. aside:
// it may still lie where a crash moved it (step-00000005.old).
func checkWhole(t *testing.T, dir string, a, b int64, aside bool) int64 {
	t.Helper()
	ck, err := LatestCheckpoint(dir)
	if err != nil || (ck != CheckpointPath(dir, 5) && !(aside && ck == CheckpointPath(dir, 5)+".old")) {
		t.Fatalf("latest checkpoint %q (%v), want step 5", ck, err)
	}
	st, err := ReadState(ck)
	if err != nil || (st.Tokens != a && st.Tokens != b) {
		t.Fatalf("state %+v (%v): neither save", st, err)
	}
	cfg, err := ReadModelConfig(ck)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := model.New(cfg, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := LoadWeights(ck, m2); err != nil {
		t.Fatalf("weights: %v", err)
	}
	f, err := safetensors.Open(filepath.Join(ck, optimFile))
	if err != nil {
		t.Fatalf("optimizer state: %v", err)
	}
	f.Close()
	return st.Tokens
}
