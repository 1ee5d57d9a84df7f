package torch

/*
#include "clm_torch.h"
*/
import "C"

// CPUCacheStats describes the caching allocator of CPU tensors (see
// torch/csrc/clm_alloc.cpp): bytes held for reuse, allocations served from
// the cache (hits) or from the system (misses), and cached blocks given
// back to make room for a miss (evicted).
type CPUCacheStats struct {
	Enabled               bool
	CachedBytes           int64
	Hits, Misses, Evicted int64
}

// CPUCache returns the allocator's statistics. The cache is on unless the
// environment sets CLM_CPU_CACHE_MB=0; its size limit is CLM_CPU_CACHE_MB
// megabytes (default 4096).
func CPUCache() CPUCacheStats {
	var cached, hits, misses, evicted C.int64_t
	C.clm_cpu_cache_stats(&cached, &hits, &misses, &evicted)
	return CPUCacheStats{Enabled: C.clm_cpu_cache_enabled() != 0, CachedBytes: int64(cached),
		Hits: int64(hits), Misses: int64(misses), Evicted: int64(evicted)}
}

// TrimCPUCache returns the cached blocks that no allocation took since the
// previous trim (the trainer trims after every step, so that what a step
// no longer uses leaves the process).
func TrimCPUCache() { C.clm_cpu_cache_trim() }

// EmptyCPUCache returns every cached CPU block to the system.
func EmptyCPUCache() { C.clm_cpu_cache_empty() }
