// clm_alloc.cpp — a caching allocator for CPU tensors.
//
// A training step allocates and frees the same tensor sizes every step. With
// glibc, blocks above the mmap threshold are returned to the kernel on free
// and faulted in (and zeroed) page by page on the next allocation: on a
// CPU that is a fifth of the step time in the kernel. Like CUDA's caching
// allocator, this one keeps freed blocks of 64 KiB and more in per-size free
// lists (sizes rounded up to 1/8 of their power of two) and hands them out
// again; smaller blocks go straight to malloc.
//
// The cache must never raise the process's peak above what is live:
//  - A miss that would take live + cached bytes past the largest live
//    total so far first evicts cached blocks, least recently freed first,
//    until it would not: live + cached grows past that mark only when the
//    cache is empty, that is by live memory itself. (Evicting on every miss
//    instead thrashes: a step frees and takes the same sizes at different
//    moments, and re-mapping 124 blocks a step cost 10% of it.)
//  - clm_cpu_cache_trim() (after each training step) gives back the blocks
//    that no allocation took since the previous trim: whatever a step no
//    longer needs (an evaluation's sizes, a larger micro-batch's) leaves.
//  - Cached blocks are mmap'd directly, so that giving one back lowers the
//    resident set at once (glibc's heap would keep it).
// It holds at most CLM_CPU_CACHE_MB megabytes (default 4096; 0 disables the
// allocator) and clm_cpu_cache_empty() releases it all (and starts the
// live mark afresh).
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <torch/version.h>

#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clm_internal.h"

// Allocator::allocate lost its const and gained copy_data in 2.3.
#if CLM_TORCH_AT_LEAST(2, 3)
#define CLM_ALLOC_CONST
#else
#define CLM_ALLOC_CONST const
#endif

namespace {

constexpr size_t kMinCached = 64 * 1024;
constexpr size_t kAlign = 64;
// A cached block serves requests down to 1/kMaxFit of its size: the
// 1/8-of-a-power-of-two size classes make near sizes distinct, and a step
// takes many near sizes at different moments.
constexpr double kMaxFit = 1.25;

size_t roundSize(size_t n) {
  if (n < kMinCached) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

// mapBlock and unmapBlock hold the blocks of kMinCached bytes and more.
void *mapBlock(size_t sz) {
  void *p = mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmapBlock(void *p, size_t sz) { munmap(p, sz); }

// systemBlock is a new block of sz bytes from the system: mapped when the
// cache may keep it, from malloc otherwise (nullptr: out of memory).
void *systemBlock(size_t sz) {
  if (sz >= kMinCached) return mapBlock(sz);
  void *p = nullptr;
  return posix_memalign(&p, kAlign, sz) == 0 ? p : nullptr;
}

class CachingCPUAllocator final : public c10::Allocator {
 public:
  explicit CachingCPUAllocator(size_t limit) : limit_(limit) {}

  c10::DataPtr allocate(size_t n) CLM_ALLOC_CONST override {
    if (n == 0) return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    size_t sz = roundSize(n);
    void *p = sz >= kMinCached ? takeOrMap(sz, &sz) : systemBlock(sz);
    if (p == nullptr) {
      empty();  // give the cache back and try once more before reporting
      p = systemBlock(sz);
      TORCH_CHECK(p != nullptr, "CPU out of memory: tried to allocate ", sz, " bytes");
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[p] = sz;
      if (sz >= kMinCached) {
        live_ += sz;
        peak_live_ = std::max(peak_live_, live_);
      }
    }
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

#if CLM_TORCH_AT_LEAST(2, 3)
  void copy_data(void *dest, const void *src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif

  static void release(void *p) {
    if (p == nullptr) return;
    instance().put(p);
  }

  void put(void *p) {
    size_t sz;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sizes_.find(p);
      if (it == sizes_.end()) return;  // not ours (cannot happen): never free it
      sz = it->second;
      sizes_.erase(it);
      if (sz < kMinCached) {
        std::free(p);
        return;
      }
      live_ -= sz;
      if (cached_ + sz <= limit_) {
        lru_.push_back({p, sz});
        free_[sz].push_back(std::prev(lru_.end()));
        cached_ += sz;
        return;
      }
    }
    unmapBlock(p, sz);
  }

  // trim gives back the blocks no allocation took since the previous trim:
  // per size, the low-water mark of its free list.
  void trim() const {
    std::vector<std::pair<void *, size_t>> out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto &kv : free_) {
        auto &list = kv.second;
        size_t idle = std::min(low_[kv.first], list.size());
        // The oldest entries of the list are the ones that sat idle.
        for (size_t i = 0; i < idle; i++) {
          out.push_back(*list[i]);
          lru_.erase(list[i]);
          cached_ -= kv.first;
        }
        list.erase(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(idle));
      }
      low_.clear();
      for (auto &kv : free_) low_[kv.first] = kv.second.size();
    }
    for (auto &b : out) unmapBlock(b.first, b.second);
  }

  void empty() const {
    std::vector<std::pair<void *, size_t>> out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out.assign(lru_.begin(), lru_.end());
      lru_.clear();
      free_.clear();
      low_.clear();
      cached_ = 0;
      peak_live_ = live_;  // the live mark starts afresh
    }
    for (auto &b : out) unmapBlock(b.first, b.second);
  }

  void stats(int64_t *cached, int64_t *hits, int64_t *misses, int64_t *evicted) const {
    std::lock_guard<std::mutex> lock(mu_);
    *cached = static_cast<int64_t>(cached_);
    *hits = hits_;
    *misses = misses_;
    *evicted = evicted_;
  }

  static CachingCPUAllocator &instance();

 private:
  using Entry = std::pair<void *, size_t>;
  using LRU = std::list<Entry>;

  // takeOrMap serves sz from the cache, or evicts at least sz cached bytes
  // (oldest first) and maps a new block.
  void *takeOrMap(size_t sz, size_t *got) const {
    *got = sz;
    std::vector<Entry> out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The smallest cached size that fits, up to kMaxFit times sz.
      for (auto it = free_.lower_bound(sz); it != free_.end() && static_cast<double>(it->first) <= kMaxFit * static_cast<double>(sz); ++it) {
        if (it->second.empty()) continue;
        auto e = it->second.back();  // the most recently freed: warm in cache
        it->second.pop_back();
        void *p = e->first;
        *got = it->first;
        lru_.erase(e);
        cached_ -= it->first;
        hits_++;
        auto lw = low_.find(it->first);
        if (lw != low_.end()) lw->second = std::min(lw->second, it->second.size());
        return p;
      }
      misses_++;
      // Evict what live + cached + sz would exceed the live mark by.
      size_t mark = std::max(peak_live_, live_ + sz);
      size_t over = live_ + cached_ + sz > mark ? live_ + cached_ + sz - mark : 0;
      size_t freed = 0;
      while (freed < over && !lru_.empty()) {
        Entry b = lru_.front();
        auto &list = free_[b.second];
        // The oldest block of its size is the front of its list, and the
        // LRU's front is the oldest of all: it is that entry.
        list.erase(list.begin());
        auto lw = low_.find(b.second);
        if (lw != low_.end()) lw->second = std::min(lw->second, list.size());
        lru_.pop_front();
        cached_ -= b.second;
        freed += b.second;
        evicted_++;
        out.push_back(b);
      }
    }
    for (auto &b : out) unmapBlock(b.first, b.second);
    return systemBlock(sz);
  }

  size_t limit_;
  mutable std::mutex mu_;
  mutable LRU lru_;                                                    // cached blocks, oldest first
  mutable std::map<size_t, std::vector<LRU::iterator>> free_;  // per size, oldest first
  mutable std::unordered_map<size_t, size_t> low_;  // per size, the free list's low-water mark since the last trim
  mutable std::unordered_map<void *, size_t> sizes_;
  mutable size_t cached_ = 0;
  mutable size_t live_ = 0, peak_live_ = 0;  // bytes of cacheable blocks in use, and its largest value
  mutable int64_t hits_ = 0, misses_ = 0, evicted_ = 0;
};

size_t limitFromEnv() {
  const char *s = std::getenv("CLM_CPU_CACHE_MB");
  if (s == nullptr || *s == '\0') return size_t(4096) << 20;
  return static_cast<size_t>(std::strtoull(s, nullptr, 10)) << 20;
}

CachingCPUAllocator &CachingCPUAllocator::instance() {
  // Never destroyed: tensors may be freed during process exit.
  static auto *a = new CachingCPUAllocator(limitFromEnv());
  return *a;
}

bool installed = [] {
  if (limitFromEnv() == 0) return false;
  c10::SetAllocator(c10::DeviceType::CPU, &CachingCPUAllocator::instance(), /*priority=*/1);
  return true;
}();

}  // namespace

extern "C" {

int clm_cpu_cache_enabled(void) { return installed ? 1 : 0; }

void clm_cpu_cache_stats(int64_t *cached_bytes, int64_t *hits, int64_t *misses, int64_t *evicted) {
  CachingCPUAllocator::instance().stats(cached_bytes, hits, misses, evicted);
}

void clm_cpu_cache_empty(void) { CachingCPUAllocator::instance().empty(); }

void clm_cpu_cache_trim(void) { CachingCPUAllocator::instance().trim(); }

}  // extern "C"
