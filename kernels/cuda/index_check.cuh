// Range checks of integer inputs (embedding ids, cross-entropy targets) on the GPU. A kernel that
// finds an out-of-range entry records its position with atomicMin into one device slot (so the
// reported position is the first bad one whatever the thread order); after the launch the host reads
// the slot back (this synchronises the stream) and, when set, reads the offending value and throws
// coil::Error with the same message as the CPU kernel.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/cuda/device.h"

namespace coil::cuda {

inline constexpr unsigned long long kNoBadIndex = ~0ull;

__device__ __forceinline__ void flag_bad_index(unsigned long long* slot, int64_t position) {
  atomicMin(slot, static_cast<unsigned long long>(position));
}

// One device slot, set to kNoBadIndex on construction (stream-ordered).
class BadIndexSlot {
 public:
  BadIndexSlot(Device device, cudaStream_t stream)
      : slot_(Tensor::empty({1}, DType::I64, device)), stream_(stream) {
    COIL_CUDA_CHECK(cudaMemsetAsync(slot_.data_ptr(), 0xff, sizeof(unsigned long long), stream_));
  }
  unsigned long long* ptr() const { return static_cast<unsigned long long*>(slot_.data_ptr()); }

  // Waits for the stream; -1 when no kernel flagged an entry, else the first flagged position.
  int64_t first_bad() const {
    unsigned long long host = kNoBadIndex;
    COIL_CUDA_CHECK(cudaMemcpyAsync(&host, ptr(), sizeof(host), cudaMemcpyDeviceToHost, stream_));
    COIL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host == kNoBadIndex ? -1 : int64_t(host);
  }

 private:
  Tensor slot_;  // (1) i64 scratch from the caching allocator
  cudaStream_t stream_;
};

// Element `i` of a device i32 tensor, read on the host (for error messages only).
inline int32_t read_i32(const Tensor& t, int64_t i, cudaStream_t stream) {
  int32_t v = 0;
  COIL_CUDA_CHECK(cudaMemcpyAsync(&v, t.data<int32_t>() + i, sizeof(v), cudaMemcpyDeviceToHost, stream));
  COIL_CUDA_CHECK(cudaStreamSynchronize(stream));
  return v;
}

}  // namespace coil::cuda
