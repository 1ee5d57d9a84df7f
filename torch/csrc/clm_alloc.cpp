// clm_alloc.cpp — a caching allocator for CPU tensors.
//
// A training step allocates and frees the same tensor sizes every step. With
// glibc, blocks above the mmap threshold are returned to the kernel on free
// and faulted in (and zeroed) page by page on the next allocation: on a
// CPU that is a fifth of the step time in the kernel. Like CUDA's caching
// allocator, this one keeps freed blocks of 64 KiB and more in per-size free
// lists (sizes rounded up to 1/8 of their power of two) and hands them out
// again; smaller blocks go straight to malloc. The cache holds at most
// CLM_CPU_CACHE_MB megabytes (default 4096; 0 disables the allocator) and
// clm_cpu_cache_empty() releases it.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
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

size_t roundSize(size_t n) {
  if (n < kMinCached) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

class CachingCPUAllocator final : public c10::Allocator {
 public:
  explicit CachingCPUAllocator(size_t limit) : limit_(limit) {}

  c10::DataPtr allocate(size_t n) CLM_ALLOC_CONST override {
    if (n == 0) return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    size_t sz = roundSize(n);
    void *p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (sz >= kMinCached) {
        auto it = free_.find(sz);
        if (it != free_.end() && !it->second.empty()) {
          p = it->second.back();
          it->second.pop_back();
          cached_ -= sz;
          hits_++;
        }
      }
      if (p == nullptr) misses_++;
    }
    if (p == nullptr) {
      if (posix_memalign(&p, kAlign, sz) != 0 || p == nullptr) {
        // Give the cache back and try once more before reporting.
        empty();
        if (posix_memalign(&p, kAlign, sz) != 0 || p == nullptr)
          TORCH_CHECK(false, "CPU out of memory: tried to allocate ", sz, " bytes");
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[p] = sz;
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
      if (it == sizes_.end()) {
        // Not ours (cannot happen); never free what we did not allocate.
        return;
      }
      sz = it->second;
      sizes_.erase(it);
      if (sz >= kMinCached && cached_ + sz <= limit_) {
        free_[sz].push_back(p);
        cached_ += sz;
        return;
      }
    }
    std::free(p);
  }

  void empty() const {
    std::vector<void *> blocks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto &kv : free_)
        for (void *p : kv.second) blocks.push_back(p);
      free_.clear();
      cached_ = 0;
    }
    for (void *p : blocks) std::free(p);
  }

  void stats(int64_t *cached, int64_t *hits, int64_t *misses) const {
    std::lock_guard<std::mutex> lock(mu_);
    *cached = static_cast<int64_t>(cached_);
    *hits = hits_;
    *misses = misses_;
  }

  static CachingCPUAllocator &instance();

 private:
  size_t limit_;
  mutable std::mutex mu_;
  mutable std::unordered_map<size_t, std::vector<void *>> free_;
  mutable std::unordered_map<void *, size_t> sizes_;
  mutable size_t cached_ = 0;
  mutable int64_t hits_ = 0, misses_ = 0;
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

void clm_cpu_cache_stats(int64_t *cached_bytes, int64_t *hits, int64_t *misses) {
  CachingCPUAllocator::instance().stats(cached_bytes, hits, misses);
}

void clm_cpu_cache_empty(void) { CachingCPUAllocator::instance().empty(); }

}  // extern "C"
