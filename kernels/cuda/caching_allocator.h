// The CUDA caching allocator. Contract:
//  - Sizes are rounded up: requests of at most kSmallLimit (1 MiB) to a multiple of kSmallRound
//    (512 B), larger ones to a multiple of kLargeRound (2 MiB). Every block is one cudaMalloc of its
//    rounded size (no splitting yet), so pointers are 256-byte aligned.
//  - Pools are per (device, stream): a block belongs to the stream that was current on its device
//    when it was allocated, and is only handed out again on that stream. Work on that stream is
//    ordered, so a freed block may be reused at once, while kernels that used it are still queued.
//    A tensor used on another stream must be kept alive by the caller until that stream is done.
//  - allocate() takes the best fit among the cached free blocks of the same device and stream (the
//    smallest block >= the rounded size, accepted when it wastes at most a quarter of the request);
//    otherwise cudaMalloc. deallocate() returns the block to the cache, never to cudaFree.
//  - When cudaMalloc runs out of memory, every cached unused block of that device is freed and the
//    cudaMalloc retried once; if it fails again, coil::Error reports the requested size and the
//    device's current / peak / reserved statistics.
//  - Statistics per device: current_bytes (rounded sizes of the blocks handed out), peak_bytes,
//    reserved_bytes (cudaMalloc'ed and not yet cudaFree'd: in use + cached), num_allocs.
//  - empty_cache() cudaFrees every cached unused block of every device.
//  - Thread safe (one mutex). The allocator lives until the process exits (it is never destroyed, so
//    tensors freed during static destruction are still served).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/allocator.h"

namespace coil::cuda {

inline constexpr size_t kSmallLimit = size_t(1) << 20;  // requests up to 1 MiB are "small"
inline constexpr size_t kSmallRound = 512;              // small requests round to 512 B
inline constexpr size_t kLargeRound = size_t(2) << 20;  // large ones to the 2 MiB page of the driver

// Counters beyond MemoryStats, for tests and memory reports.
struct CacheCounters {
  int64_t device_mallocs = 0;  // successful cudaMalloc calls
  int64_t device_frees = 0;    // cudaFree calls
  int64_t cache_hits = 0;      // allocations served from the cache
  int64_t oom_retries = 0;     // times the cache was flushed after cudaMalloc ran out of memory
  int64_t cached_bytes = 0;    // free blocks held in the cache (reserved - current)
};

class CachingAllocator final : public Allocator {
 public:
  CachingAllocator();
  ~CachingAllocator() override;
  void* allocate(size_t nbytes, int device_index) override;
  void deallocate(void* ptr, size_t nbytes, int device_index) override;
  MemoryStats stats(int device_index) const override;
  void reset_peak(int device_index) override;
  void empty_cache() override;

  CacheCounters counters(int device_index) const;
  static size_t round_size(size_t nbytes);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The process-wide instance (installed as the CUDA allocator by this library).
CachingAllocator& caching_allocator();

}  // namespace coil::cuda
