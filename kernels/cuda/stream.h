// The current stream: per thread and per device, the stream that CUDA kernels, device copies and the
// caching allocator's pools use. It defaults to the legacy default stream (nullptr), which orders
// itself with every other blocking stream; StreamGuard switches it for a scope. Streams are not owned
// here: whoever creates one destroys it, after every tensor allocated on it is freed.
#pragma once

#include <cuda_runtime.h>

namespace coil::cuda {

// At most this many devices per process get a current-stream slot (more than any node has).
inline constexpr int kMaxDevices = 64;

cudaStream_t current_stream(int device);
void set_current_stream(int device, cudaStream_t stream);

// Sets the current stream of `device` for the guard's lifetime, then restores the previous one.
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t previous_;
};

}  // namespace coil::cuda
