package torch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProfiler: the profiler sees the ops of a forward and backward on this
// thread, writes a Chrome trace that parses, and refuses a stop without a
// start and a second start.
func TestProfiler(t *testing.T) {
	leakCheck(t)
	if _, err := StopProfiler(""); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("stop without start: %v", err)
	}
	if err := StartProfiler(false); err != nil {
		t.Fatal(err)
	}
	if err := StartProfiler(false); err == nil {
		t.Error("a second start was accepted")
	}
	WithScope(func(*Scope) {
		x := Ones([]int64{64, 64}, Float32, CPU).SetRequiresGrad(true)
		x.Matmul(x).Relu().Sum(false).Backward()
	})
	trace := filepath.Join(t.TempDir(), "trace.json")
	p, err := StopProfiler(trace)
	if err != nil {
		t.Fatal(err)
	}
	ops := p.ByOp()
	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.Name
		if o.Self < 0 || o.Self > o.Total {
			t.Errorf("%s: self %d ns, total %d ns", o.Name, o.Self, o.Total)
		}
	}
	for _, want := range []string{"aten::mm", "aten::relu", "aten::sum"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s among the profiled ops %v", want, names)
		}
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TraceEvents []json.RawMessage `json:"traceEvents"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.TraceEvents) == 0 {
		t.Errorf("trace: %v, %d events", err, len(doc.TraceEvents))
	}
	if tab := ops.Table(5); !strings.Contains(tab, "self time on the CPU") || strings.Count(tab, "\n") != 7 {
		t.Errorf("table:\n%s", tab)
	}
}

// TestProfileSelfTimes: self time is an op's duration less that of the ops
// nested in it on the same thread; CUDA kernels stand alone.
func TestProfileSelfTimes(t *testing.T) {
	p := Profile{
		{Name: "A", Start: 0, Dur: 100, Thread: 1},
		{Name: "B", Start: 10, Dur: 30, Thread: 1},
		{Name: "C", Start: 20, Dur: 10, Thread: 1},
		{Name: "D", Start: 50, Dur: 10, Thread: 1},
		{Name: "E", Start: 5, Dur: 50, Thread: 2},
		{Name: "k", Start: 12, Dur: 7, Thread: 1, CUDA: true},
		{Name: "D", Start: 200, Dur: 5, Thread: 1},
	}
	want := map[string]OpTime{
		"A": {Name: "A", Calls: 1, Self: 60, Total: 100},
		"B": {Name: "B", Calls: 1, Self: 20, Total: 30},
		"C": {Name: "C", Calls: 1, Self: 10, Total: 10},
		"D": {Name: "D", Calls: 2, Self: 15, Total: 15},
		"E": {Name: "E", Calls: 1, Self: 50, Total: 50},
		"k": {Name: "k", Calls: 1, Self: 7, Total: 7, CUDA: true},
	}
	ops := p.ByOp()
	if len(ops) != len(want) {
		t.Fatalf("ops %v", ops)
	}
	for i, o := range ops {
		if o != want[o.Name] {
			t.Errorf("%s: %+v, want %+v", o.Name, o, want[o.Name])
		}
		if i > 0 && o.Self > ops[i-1].Self {
			t.Errorf("not sorted by self time: %v", ops)
		}
	}
}
