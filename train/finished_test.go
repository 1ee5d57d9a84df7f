package train

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestFinished: a run has finished when its latest checkpoint is of the
// schedule's last step with no evaluation pending; a folder without a
// checkpoint has no state.
func TestFinished(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   State
		want bool
	}{
		{"last step", State{Step: 12, TotalSteps: 12}, true},
		{"mid-way", State{Step: 8, TotalSteps: 12}, false},
		{"last step, its evaluation interrupted", State{Step: 12, TotalSteps: 12, PendingEval: true}, false},
		{"no schedule", State{}, false},
	} {
		dir := t.TempDir()
		if _, ok, err := LatestState(dir); ok || err != nil {
			t.Fatalf("empty folder: ok %v, %v", ok, err)
		}
		ck := CheckpointPath(dir, tc.st.Step)
		if err := os.MkdirAll(ck, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(tc.st)
		if err := os.WriteFile(filepath.Join(ck, stateFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		st, ok, err := LatestState(dir)
		if !ok || err != nil || st.Step != tc.st.Step || st.Finished() != tc.want {
			t.Errorf("%s: state %+v ok %v (%v), finished %v, want %v", tc.name, st, ok, err, st.Finished(), tc.want)
		}
	}
}
