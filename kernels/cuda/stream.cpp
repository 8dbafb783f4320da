// Thread-local current-stream table (see stream.h).
#include "kernels/cuda/stream.h"

#include "core/error.h"

namespace coil::cuda {
namespace {

thread_local cudaStream_t t_current[kMaxDevices] = {};  // nullptr: the legacy default stream

void check_index(int device) {
  COIL_CHECK(device >= 0 && device < kMaxDevices, "CUDA device index ", device,
             " out of range (coil supports devices 0..", kMaxDevices - 1, ")");
}

}  // namespace

cudaStream_t current_stream(int device) {
  check_index(device);
  return t_current[device];
}

void set_current_stream(int device, cudaStream_t stream) {
  check_index(device);
  t_current[device] = stream;
}

StreamGuard::StreamGuard(int device, cudaStream_t stream)
    : device_(device), previous_(current_stream(device)) {
  set_current_stream(device, stream);
}

StreamGuard::~StreamGuard() { t_current[device_] = previous_; }

}  // namespace coil::cuda
