package train

import "testing"

// TestSameHubInit: a run warm-started from a hub: model records it pinned
// to its commit; asking for the same model again (at a branch, or
// unpinned) is the same experiment, another model is not.
func TestSameHubInit(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		asked, run string
		same       bool
	}{
		{"hub:org/gpt2", "hub:org/gpt2@" + commit, true},
		{"hub:org/gpt2", "hub:org/gpt2-large@" + commit, false},
		{"hub:org/gpt2@main", "hub:org/gpt2@" + commit, true},
		{"hub:org/gpt2@main", "hub:other/gpt2@" + commit, false},
		{"models/gpt2", "models/gpt2", false}, // equal as strings: no exception needed
		{"hub:org/gpt2", "hub:org/gpt2", false},
	} {
		if got := sameHubInit(tc.asked, tc.run); got != tc.same {
			t.Errorf("sameHubInit(%q, %q) = %v, want %v", tc.asked, tc.run, got, tc.same)
		}
	}
}
