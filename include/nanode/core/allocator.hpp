#pragma once
// Per-device allocators. Every tensor buffer goes through one of them, so live and
// peak bytes per device are exact numbers that tests and benchmarks read (the
// paper's activation-memory column comes from here).
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "nanode/core/device.hpp"
#include "nanode/core/device_backend.hpp"

namespace nanode {

struct MemoryStats {
  int64_t live_bytes = 0;   ///< bytes held by tensors right now
  int64_t peak_bytes = 0;   ///< most live bytes since the last reset
  int64_t allocations = 0;  ///< number of allocations since the last reset
};

class Allocator {
 public:
  explicit Allocator(Device device) : device_(device) {}
  /// Returns the cached host blocks at exit, so that a leak checker (LeakSanitizer)
  /// reports only real leaks; a block freed after this goes straight to free().
  ~Allocator() {
    empty_cache();
    std::lock_guard<std::mutex> lock(cache_mu_);
    closed_ = true;
  }
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  void* allocate(size_t bytes) {
    if (bytes == 0) bytes = 1;
    void* p = device_.is_cpu() ? cpu_alloc(bytes) : cuda_alloc(bytes);
    const int64_t live = live_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
    int64_t peak = peak_.load();
    while (live > peak && !peak_.compare_exchange_weak(peak, live)) {
    }
    allocations_.fetch_add(1);
    return p;
  }

  void deallocate(void* p, size_t bytes) {
    if (bytes == 0) bytes = 1;
    live_.fetch_sub(static_cast<int64_t>(bytes));
    if (device_.is_cpu()) {
      cpu_free(p, bytes);
    } else {
      device_memory().free_device(p, bytes, device_.index);
    }
  }

  MemoryStats stats() const { return {live_.load(), peak_.load(), allocations_.load()}; }
  /// Sets the peak to the current live bytes and zeroes the allocation count.
  void reset_peak() {
    peak_.store(live_.load());
    allocations_.store(0);
  }
  Device device() const { return device_; }

  /// Returns cached host blocks to the system (device caches: cuda::empty_cache).
  void empty_cache() {
    std::lock_guard<std::mutex> lock(cache_mu_);
    for (auto& [size, blocks] : cache_)
      for (void* p : blocks) std::free(p);
    cache_.clear();
    cached_bytes_ = 0;
  }
  /// Bytes held in the host cache (not counted as live).
  int64_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(cache_mu_);
    return cached_bytes_;
  }

 private:
  // Host blocks of 64 KiB and more are cached by rounded size and reused: fresh
  // large allocations come from mmap and page-fault on first touch, which costs
  // more than the arithmetic of a typical op. Small blocks go straight to malloc.
  static constexpr size_t kCacheMin = size_t{1} << 16;
  static constexpr size_t kCacheLimit = size_t{1} << 30;
  static size_t rounded(size_t bytes) { return bytes < kCacheMin ? (bytes + 63) / 64 * 64 : (bytes + 4095) / 4096 * 4096; }

  void* cpu_alloc(size_t bytes) {
    const size_t size = rounded(bytes);
    if (size >= kCacheMin) {
      std::lock_guard<std::mutex> lock(cache_mu_);
      auto it = cache_.find(size);
      if (it != cache_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= static_cast<int64_t>(size);
        return p;
      }
    }
    void* p = std::aligned_alloc(64, size);
    if (!p && size >= kCacheMin) {
      empty_cache();
      p = std::aligned_alloc(64, size);
    }
    NANODE_CHECK(p != nullptr, "allocator: out of host memory allocating ", bytes, " bytes");
    return p;
  }
  void cpu_free(void* p, size_t bytes) {
    const size_t size = rounded(bytes);
    if (size >= kCacheMin) {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (!closed_ && cached_bytes_ + static_cast<int64_t>(size) <= static_cast<int64_t>(kCacheLimit)) {
        cache_[size].push_back(p);
        cached_bytes_ += static_cast<int64_t>(size);
        return;
      }
    }
    std::free(p);
  }

  mutable std::mutex cache_mu_;
  std::map<size_t, std::vector<void*>> cache_;
  int64_t cached_bytes_ = 0;
  bool closed_ = false;
  void* cuda_alloc(size_t bytes) { return device_memory().malloc_device(bytes, device_.index); }

  Device device_;
  std::atomic<int64_t> live_{0}, peak_{0}, allocations_{0};
};

/// The allocator of `device` (one per device, created on first use).
inline Allocator& allocator(Device device) {
  static Allocator cpu(Device::cpu());
  if (device.is_cpu()) return cpu;
  static Allocator* cuda_allocs[kMaxCudaDevices] = {};
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  Allocator*& a = cuda_allocs[device.index];
  if (!a) a = new Allocator(device);  // lives for the program: tensors may outlive statics
  return *a;
}

inline MemoryStats memory_stats(Device device = Device::cpu()) { return allocator(device).stats(); }
inline void reset_peak_memory(Device device = Device::cpu()) { allocator(device).reset_peak(); }
/// Returns the allocator's cached free blocks of `device` to the system.
inline void empty_cache(Device device = Device::cpu()) {
  if (device.is_cpu()) {
    allocator(device).empty_cache();
    return;
  }
  if (device_backend()) device_backend()->empty_cache(device.index);
}

/// Measures the peak bytes allocated above the level at construction.
class PeakMemoryScope {
 public:
  explicit PeakMemoryScope(Device device = Device::cpu()) : device_(device) {
    reset_peak_memory(device_);
    base_ = memory_stats(device_).live_bytes;
  }
  /// Peak bytes above the starting level since construction.
  int64_t peak_above_start() const { return memory_stats(device_).peak_bytes - base_; }

 private:
  Device device_;
  int64_t base_ = 0;
};

}  // namespace nanode
