package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileFlag: -profile N:M writes the time per op and a Chrome trace of
// those steps into the run folder and leaves the run's numbers as they are
// without it; a bad -profile is one line, and nothing is written.
func TestProfileFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	for _, run := range [][]string{{"-run-dir", "plain"}, {"-run-dir", "profiled", "-profile", "2:3"}} {
		if _, stderr, code := clm(t, dir, append([]string{"-config", cfg}, run...)...); code != 0 {
			t.Fatalf("clm %v: exit %d\n%s", run, code, stderr)
		}
	}
	table, err := os.ReadFile(filepath.Join(dir, "profiled", "profile", "steps-2-3.txt"))
	// The products: libtorch's mm, or oneDNN's where train.cpu_matmul's auto picks it.
	products := strings.Contains(string(table), "aten::mm") || strings.Contains(string(table), "clm::onednn_mm")
	if err != nil || !products || !strings.HasPrefix(string(table), "profile of steps 2-3 (2 steps") {
		t.Errorf("the table: %v\n%s", err, table)
	}
	var trace struct {
		TraceEvents []json.RawMessage `json:"traceEvents"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "profiled", "profile", "steps-2-3.trace.json")); err != nil || json.Unmarshal(b, &trace) != nil || len(trace.TraceEvents) == 0 {
		t.Errorf("the trace: %v, %d events", err, len(trace.TraceEvents))
	}
	if a, b := trainLosses(t, filepath.Join(dir, "plain")), trainLosses(t, filepath.Join(dir, "profiled")); a != b || a == "" {
		t.Errorf("profiling changed the losses: %s, without %s", b, a)
	}
	for _, tc := range []struct{ flag, want string }{
		{"0", `clm: -profile "0": want a step N or steps N:M, 1 ≤ N ≤ M`},
		{"3:2", `clm: -profile "3:2"`},
		{"x", `clm: -profile "x"`},
		{"5:99", "clm: profile: steps 5-99, but the run has 12 steps"},
	} {
		_, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "bad-"+tc.flag, "-profile", tc.flag)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("-profile %s: exit %d\n%s", tc.flag, code, stderr)
		}
		if tc.flag != "5:99" {
			if _, err := os.Stat(filepath.Join(dir, "bad-"+tc.flag)); err == nil {
				t.Errorf("-profile %s left a run folder", tc.flag)
			}
		}
	}
}

// trainLosses is the step and loss of every train record of a run.
func trainLosses(t *testing.T, run string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			Kind string  `json:"kind"`
			Step int     `json:"step"`
			Loss float64 `json:"loss"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Kind == "train" {
			out = append(out, fmt.Sprintf("%d:%v", r.Step, r.Loss))
		}
	}
	return strings.Join(out, " ")
}
