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

// TestCPUCacheNeverRaisesThePeak: a miss first gives back at least the
// bytes it maps (the oldest cached blocks), and a trim gives back the
// blocks that no allocation took since the previous trim, keeping the
// ones in use.
func TestCPUCacheNeverRaisesThePeak(t *testing.T) {
	if !CPUCache().Enabled {
		t.Skip("CPU cache disabled (CLM_CPU_CACHE_MB=0)")
	}
	leakCheck(t)
	const mib = 1 << 20
	alloc := func(bytes int64) { // a tensor of bytes, freed at once
		WithScope(func(*Scope) { Full([]int64{bytes / 4}, 1, Float32, CPU).Sum(false).Item() })
	}
	EmptyCPUCache()
	alloc(mib)
	if c := CPUCache().CachedBytes; c != mib {
		t.Fatalf("cached %d bytes after freeing 1 MiB", c)
	}
	before := CPUCache()
	alloc(2 * mib) // a miss: the 1 MiB block goes first
	after := CPUCache()
	if after.Evicted-before.Evicted != 1 || after.CachedBytes != 2*mib {
		t.Errorf("after a 2 MiB miss: %d evicted, %d bytes cached; want 1 and 2 MiB", after.Evicted-before.Evicted, after.CachedBytes)
	}

	EmptyCPUCache()
	WithScope(func(*Scope) { // 1 MiB and 1.5 MiB cached
		Full([]int64{mib / 4}, 1, Float32, CPU)
		Full([]int64{3 * mib / 8}, 1, Float32, CPU)
	})
	TrimCPUCache() // both arrived after the last trim: kept
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
