// CUDA device support: the check macros every CUDA runtime call goes through, the device count (0,
// never an error, on a machine without a driver or GPU) and a guard that makes a device current for a
// scope. The CUDA DeviceHooks and allocator are installed into core's tables by device.cpp at static
// initialisation, so linking this library is all it takes to make Device::cuda() usable.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

namespace coil::cuda {

// Throws coil::Error naming the failed call, the error's name and description. Clears the runtime's
// last-error slot first, so a later launch check does not report this error again.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);

// Checks that the kernel launches issued since the last check were accepted (bad configuration,
// no kernel image for this GPU, ...). With COIL_CUDA_SYNC_CHECK=1 in the environment it also
// synchronises the device, so asynchronous faults are reported at the launch that caused them.
void check_launch(const char* kernel, const char* file, int line);

// Number of CUDA devices; 0 when there is no driver, no device, or the runtime cannot start.
int device_count();

// Current device of the calling thread.
int current_device();

// Makes `index` the current device for the guard's lifetime (no CUDA call when it already is).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

}  // namespace coil::cuda

#define COIL_CUDA_CHECK(call)                                                           \
  do {                                                                                  \
    const cudaError_t coil_cuda_err_ = (call);                                          \
    if (coil_cuda_err_ != cudaSuccess) [[unlikely]]                                     \
      ::coil::cuda::throw_cuda_error(coil_cuda_err_, #call, __FILE__, __LINE__);         \
  } while (0)

// After a <<<...>>> launch: COIL_CUDA_CHECK_LAUNCH("fill_kernel");
#define COIL_CUDA_CHECK_LAUNCH(kernel_name) ::coil::cuda::check_launch(kernel_name, __FILE__, __LINE__)
