// The caching allocator's bookkeeping (contract in caching_allocator.h): per device, a set of cached
// free blocks ordered by (stream, size, address) for the best-fit search, and a map of the blocks
// handed out, so deallocate() finds a block's stream and rounded size from its pointer.
#include "kernels/cuda/caching_allocator.h"

#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

namespace coil::cuda {
namespace {

struct Block {
  void* ptr = nullptr;
  size_t size = 0;  // rounded size, as cudaMalloc'ed
  cudaStream_t stream = nullptr;
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return std::less<cudaStream_t>()(a->stream, b->stream);
    if (a->size != b->size) return a->size < b->size;
    return std::less<void*>()(a->ptr, b->ptr);
  }
};

struct DeviceState {
  std::set<Block*, BlockLess> cached;           // free blocks, reusable on their stream
  std::unordered_map<void*, Block*> active;     // handed out
  MemoryStats stats;
  CacheCounters counters;
};

// A cached block of `have` bytes may serve a request of `want` bytes when it wastes at most a quarter
// of the request (keeps a big cached block from being pinned by a much smaller tensor).
bool fits(size_t have, size_t want) { return have >= want && have - want <= want / 4; }

std::string bytes_str(int64_t n) {
  constexpr double kMiB = 1024.0 * 1024.0;
  return std::to_string(n) + " bytes (" + std::to_string(double(n) / kMiB) + " MiB)";
}

}  // namespace

struct CachingAllocator::State {
  mutable std::mutex mu;
  DeviceState devices[kMaxDevices];

  DeviceState& device(int index) {
    COIL_CHECK(index >= 0 && index < device_count(), "CUDA device cuda:", index,
               " is not available (this process sees ", device_count(), " CUDA devices)");
    return devices[index];
  }

  // cudaFree every cached block of one device. Caller holds mu.
  void release_cached(int index) {
    DeviceState& d = devices[index];
    if (d.cached.empty()) return;
    DeviceGuard guard(index);
    for (Block* b : d.cached) {
      COIL_CUDA_CHECK(cudaFree(b->ptr));
      d.stats.reserved_bytes -= int64_t(b->size);
      d.counters.device_frees++;
      delete b;
    }
    d.cached.clear();
  }
};

CachingAllocator::CachingAllocator() : state_(std::make_unique<State>()) {}
CachingAllocator::~CachingAllocator() = default;

size_t CachingAllocator::round_size(size_t nbytes) {
  if (nbytes <= kSmallLimit) return (nbytes + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (nbytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

void* CachingAllocator::allocate(size_t nbytes, int index) {
  if (nbytes == 0) return nullptr;
  // Keeps the rounding below from overflowing; far beyond any device's memory.
  constexpr size_t kMaxRequest = size_t(1) << 60;
  COIL_CHECK(nbytes <= kMaxRequest, "CUDA allocation of ", nbytes, " bytes is larger than any device");
  const size_t size = round_size(nbytes);
  const cudaStream_t stream = current_stream(index);

  std::lock_guard<std::mutex> lock(state_->mu);
  DeviceState& d = state_->device(index);
  Block key{nullptr, size, stream};
  Block* block = nullptr;
  auto it = d.cached.lower_bound(&key);
  if (it != d.cached.end() && (*it)->stream == stream && fits((*it)->size, size)) {
    block = *it;
    d.cached.erase(it);
    d.counters.cache_hits++;
  } else {
    DeviceGuard guard(index);
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // out of memory is not sticky: clear it, flush the cache, retry
      d.counters.oom_retries++;
      const int64_t flushed = d.stats.reserved_bytes - d.stats.current_bytes;
      state_->release_cached(index);
      err = cudaMalloc(&ptr, size);
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
        COIL_FAIL("CUDA out of memory on cuda:", index, ": tried to allocate ", bytes_str(int64_t(nbytes)),
                  ", rounded to ", size, " bytes, after freeing ", bytes_str(flushed),
                  " of cached blocks and retrying; allocator statistics: current ",
                  bytes_str(d.stats.current_bytes), ", peak ", bytes_str(d.stats.peak_bytes),
                  ", reserved ", bytes_str(d.stats.reserved_bytes), "; the device reports ",
                  bytes_str(int64_t(free_b)), " free of ", bytes_str(int64_t(total_b)));
      }
    }
    if (err != cudaSuccess) throw_cuda_error(err, "cudaMalloc(&ptr, size)", __FILE__, __LINE__);
    block = new Block{ptr, size, stream};
    d.stats.reserved_bytes += int64_t(size);
    d.counters.device_mallocs++;
  }
  d.active.emplace(block->ptr, block);
  d.stats.current_bytes += int64_t(block->size);
  d.stats.peak_bytes = std::max(d.stats.peak_bytes, d.stats.current_bytes);
  d.stats.num_allocs++;
  return block->ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes, int index) {
  if (ptr == nullptr) return;
  COIL_INTERNAL_ASSERT(index >= 0 && index < kMaxDevices, "CUDA deallocate on device ", index);
  std::lock_guard<std::mutex> lock(state_->mu);
  DeviceState& d = state_->devices[index];
  auto it = d.active.find(ptr);
  COIL_INTERNAL_ASSERT(it != d.active.end(), "CUDA deallocate of a pointer this allocator did not hand out"
                       " on cuda:", index, " (", nbytes, " bytes)");
  Block* block = it->second;
  d.active.erase(it);
  d.stats.current_bytes -= int64_t(block->size);
  d.cached.insert(block);
}

MemoryStats CachingAllocator::stats(int index) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->device(index).stats;
}

void CachingAllocator::reset_peak(int index) {
  std::lock_guard<std::mutex> lock(state_->mu);
  DeviceState& d = state_->device(index);
  d.stats.peak_bytes = d.stats.current_bytes;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(state_->mu);
  for (int i = 0; i < device_count() && i < kMaxDevices; ++i) state_->release_cached(i);
}

CacheCounters CachingAllocator::counters(int index) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  const DeviceState& d = state_->device(index);
  CacheCounters c = d.counters;
  c.cached_bytes = d.stats.reserved_bytes - d.stats.current_bytes;
  return c;
}

CachingAllocator& caching_allocator() {
  static CachingAllocator* instance = new CachingAllocator();  // never destroyed (see the contract)
  return *instance;
}

}  // namespace coil::cuda
