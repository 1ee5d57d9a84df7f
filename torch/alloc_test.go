package torch

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCPUCacheReusesBlocks: a freed large CPU tensor's block serves the next
// allocation of that size, and values are not carried over wrongly (the
// new tensor is fully written by the op that creates it).
func TestCPUCacheReusesBlocks(t *testing.T) {
	if !CPUCache().Enabled {
		t.Skip("CPU cache disabled (CLM_CPU_CACHE_MB=0)")
	}
	leakCheck(t)
	EmptyCPUCache()
	before := CPUCache()
	for i := 0; i < 5; i++ {
		WithScope(func(*Scope) {
			x := Full([]int64{1 << 18}, float64(i), Float32, CPU) // 1 MiB
			if v := x.Sum(false).Item(); v != float64(i)*(1<<18) {
				t.Fatalf("round %d: sum %v", i, v)
			}
		})
	}
	after := CPUCache()
	if hits := after.Hits - before.Hits; hits < 4 {
		t.Errorf("%d cache hits for 5 same-size allocations", hits)
	}
	if after.CachedBytes < 1<<20 {
		t.Errorf("cached %d bytes after freeing a 1 MiB tensor", after.CachedBytes)
	}
	EmptyCPUCache()
	if c := CPUCache().CachedBytes; c != 0 {
		t.Errorf("EmptyCPUCache left %d bytes", c)
	}
}

// TestCPUCacheNeverRaisesThePeak: a miss that would take live + cached
// bytes past the largest live total gives back the oldest cached blocks
// first, and one within it gives back nothing; a cached block serves
// requests down to 1/1.25 of its size; a trim gives back the blocks that
// no allocation took since the previous trim, keeping the ones in use.
func TestCPUCacheNeverRaisesThePeak(t *testing.T) {
	if !CPUCache().Enabled {
		t.Skip("CPU cache disabled (CLM_CPU_CACHE_MB=0)")
	}
	leakCheck(t)
	const mib = 1 << 20
	tensor := func(bytes int64) *Tensor { return Full([]int64{bytes / 4}, 1, Float32, CPU) }
	alloc := func(bytes int64) { // a tensor of bytes, freed at once
		WithScope(func(*Scope) { tensor(bytes).Sum(false).Item() })
	}
	step := func(what string, f func(), evicted, hits, cached int64) {
		t.Helper()
		before := CPUCache()
		f()
		after := CPUCache()
		if e, h := after.Evicted-before.Evicted, after.Hits-before.Hits; e != evicted || h != hits || after.CachedBytes != cached {
			t.Errorf("%s: %d evicted, %d hits, %d bytes cached; want %d, %d, %d", what, e, h, after.CachedBytes, evicted, hits, cached)
		}
	}
	EmptyCPUCache() // the live mark: what is live now
	step("4 MiB and 1 MiB live at once, then freed", func() {
		WithScope(func(*Scope) { tensor(4 * mib); tensor(mib) })
	}, 0, 0, 5*mib)
	step("2 MiB: past the mark by 2 MiB, the oldest (4 MiB) goes", func() { alloc(2 * mib) }, 1, 0, 3*mib)
	step("1.5 MiB: within the mark", func() { alloc(3 * mib / 2) }, 0, 0, 9*mib/2)
	step("0.875 MiB: served by the 1 MiB block", func() { alloc(7 * mib / 8) }, 0, 1, 9*mib/2)

	EmptyCPUCache()
	WithScope(func(*Scope) { tensor(mib); tensor(3 * mib / 2) }) // 1 MiB and 1.5 MiB cached
	TrimCPUCache()                                               // both arrived after the last trim: kept
	if c := CPUCache().CachedBytes; c != 5*mib/2 {
		t.Fatalf("first trim left %d bytes, want 2.5 MiB", c)
	}
	alloc(mib) // the 1 MiB block is taken (and returned); the 1.5 MiB one idles
	TrimCPUCache()
	if c := CPUCache().CachedBytes; c != mib {
		t.Errorf("second trim left %d bytes, want the 1 MiB block in use", c)
	}
	EmptyCPUCache()
}

// TestCPUCacheCanBeDisabled: CLM_CPU_CACHE_MB=0 keeps libtorch's own
// allocator (checked in a child process, where the setting applies at load).
func TestCPUCacheCanBeDisabled(t *testing.T) {
	if os.Getenv("CLM_CHILD_CACHE_CHECK") == "1" {
		if CPUCache().Enabled {
			t.Fatal("cache enabled despite CLM_CPU_CACHE_MB=0")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestCPUCacheCanBeDisabled$", "-test.v")
	cmd.Env = append(os.Environ(), "CLM_CHILD_CACHE_CHECK=1", "CLM_CPU_CACHE_MB=0")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
