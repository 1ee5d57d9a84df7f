package torch

// #include "clm_torch.h"
// #include <stdlib.h>
import "C"

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// ProfileEvent is one op (or CUDA kernel) that libtorch's profiler saw.
type ProfileEvent struct {
	Name   string
	Start  int64 // ns, on the profiler's clock
	Dur    int64 // ns
	Thread uint64
	CUDA   bool // a kernel on the GPU, not an op on the CPU
}

// Profile is the events of one profiled span, in the profiler's order.
type Profile []ProfileEvent

// StartProfiler starts libtorch's profiler (Kineto) on the calling OS
// thread, which must stay locked until StopProfiler: the CPU ops, and with
// cuda the CUDA kernels too.
func StartProfiler(cuda bool) error {
	c := C.int(0)
	if cuda {
		c = 1
	}
	if e := takeErr("profiler", C.clm_profiler_start(c)); e != nil {
		return e
	}
	return nil
}

// StopProfiler stops the profiler, writes its Chrome trace (chrome://tracing,
// Perfetto) to trace unless trace is "", and returns its events.
func StopProfiler(trace string) (Profile, error) {
	path := C.CString(trace)
	defer C.free(unsafe.Pointer(path))
	var out *C.char
	if e := takeErr("profiler", C.clm_profiler_stop(path, &out)); e != nil {
		return nil, e
	}
	text := C.GoString(out)
	C.clm_free_string(out)
	return parseProfile(text)
}

func parseProfile(text string) (Profile, error) {
	var p Profile
	for line := range strings.Lines(text) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("profiler: event line %q", line)
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		dur, err2 := strconv.ParseInt(f[2], 10, 64)
		thread, err3 := strconv.ParseUint(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("profiler: event line %q", line)
		}
		p = append(p, ProfileEvent{Name: f[0], Start: start, Dur: dur, Thread: thread, CUDA: f[4] == "cuda"})
	}
	return p, nil
}

// OpTime is the time of one op name over a profile, as
// torch.profiler's key_averages: Self excludes the ops it called (on the
// same thread), Total includes them.
type OpTime struct {
	Name        string
	Calls       int
	Self, Total int64 // ns
	CUDA        bool
}

// OpTimes are a profile summed per op, the most self time first.
type OpTimes []OpTime

// ByOp sums the profile per op name, the most self time first. Self time is
// an op's duration less that of the ops nested in it on its thread.
func (p Profile) ByOp() OpTimes {
	self := p.selfTimes()
	sums := map[string]*OpTime{}
	var order []string
	for i, e := range p {
		key := e.Name
		if e.CUDA {
			key = "cuda:" + e.Name
		}
		s := sums[key]
		if s == nil {
			s = &OpTime{Name: e.Name, CUDA: e.CUDA}
			sums[key] = s
			order = append(order, key)
		}
		s.Calls++
		s.Self += self[i]
		s.Total += e.Dur
	}
	out := make(OpTimes, 0, len(order))
	for _, k := range order {
		out = append(out, *sums[k])
	}
	slices.SortStableFunc(out, func(a, b OpTime) int { return cmp.Compare(b.Self, a.Self) })
	return out
}

// selfTimes is each event's duration less its children's: the events of a
// thread nest (an op's callees start and end inside it), so a stack of the
// open events finds each one's parent. CUDA kernels have no children.
func (p Profile) selfTimes() []int64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ea, eb := p[a], p[b]
		return cmp.Or(cmp.Compare(ea.Thread, eb.Thread), cmp.Compare(ea.Start, eb.Start), cmp.Compare(eb.Dur, ea.Dur))
	})
	self := make([]int64, len(p))
	var stack []int
	for n, i := range idx {
		e := p[i]
		self[i] = e.Dur
		if n > 0 && p[idx[n-1]].Thread != e.Thread {
			stack = stack[:0]
		}
		for len(stack) > 0 && p[stack[len(stack)-1]].Start+p[stack[len(stack)-1]].Dur <= e.Start {
			stack = stack[:len(stack)-1]
		}
		if e.CUDA {
			continue
		}
		if len(stack) > 0 {
			self[stack[len(stack)-1]] -= e.Dur
		}
		stack = append(stack, i)
	}
	return self
}

// Table is the top rows as text: op, calls, self and total milliseconds,
// and the self time's share of all self time on the CPU (or on the GPU, for
// kernels).
func (ops OpTimes) Table(top int) string {
	var cpu, gpu int64
	for _, o := range ops {
		if o.CUDA {
			gpu += o.Self
		} else {
			cpu += o.Self
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-52s %7s %10s %7s %10s\n", "op", "calls", "self ms", "self %", "total ms")
	for i, o := range ops {
		if i == top {
			break
		}
		all, name := cpu, o.Name
		if o.CUDA {
			all, name = gpu, "[cuda] "+name
		}
		name = shortOpName(name)
		fmt.Fprintf(&b, "%-52s %7d %10.2f %6.1f%% %10.2f\n", name, o.Calls, float64(o.Self)/1e6,
			100*float64(o.Self)/float64(max(all, 1)), float64(o.Total)/1e6)
	}
	fmt.Fprintf(&b, "self time on the CPU: %.2f ms", float64(cpu)/1e6)
	if gpu > 0 {
		fmt.Fprintf(&b, ", on the GPU: %.2f ms", float64(gpu)/1e6)
	}
	b.WriteString("\n")
	return b.String()
}

// Span is the wall time from the first event's start to the last one's
// end, in ns.
func (p Profile) Span() int64 {
	if len(p) == 0 {
		return 0
	}
	first, last := p[0].Start, p[0].Start+p[0].Dur
	for _, e := range p {
		first, last = min(first, e.Start), max(last, e.Start+e.Dur)
	}
	return last - first
}

// shortOpName fits an op's name in the table's column: the shim's autograd
// nodes lose their namespaces (CppNode<LeakyReLUFn>), other long names keep
// their start.
func shortOpName(name string) string {
	if rest, ok := strings.CutPrefix(name, "torch::autograd::CppNode<"); ok {
		rest = strings.TrimPrefix(rest, "(anonymous namespace)::")
		name = "CppNode<" + rest
	}
	if rest, ok := strings.CutPrefix(name, "autograd::engine::evaluate_function: "); ok {
		name = "evaluate " + rest // the engine's call of a node, beside the node's own row
	}
	if len(name) > 52 {
		name = name[:49] + "..."
	}
	return name
}
