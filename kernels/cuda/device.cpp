// CUDA error checks, the device count and guard, and the CUDA DeviceHooks. A static initialiser at
// the bottom installs the hooks and the caching allocator into core's per-device-type tables.
// Copies run on the current stream; a copy whose result the host can see (to or from host memory, or
// between two devices) is synchronised before returning, a copy within one device is not.
#include "kernels/cuda/device.h"

#include <cstdlib>
#include <cstring>

#include "core/allocator.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/stream.h"

namespace coil::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear non-sticky errors so they are reported once
  throw Error(detail::str_cat("CUDA error: ", call, " failed with ", cudaGetErrorName(err), " (",
                              cudaGetErrorString(err), ")"),
              file, line);
}

namespace {
bool sync_check_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("COIL_CUDA_SYNC_CHECK");
    return v != nullptr && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return enabled;
}
}  // namespace

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_check_enabled()) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    const std::string call = std::string("launch of ") + kernel;
    throw_cuda_error(err, call.c_str(), file, line);
  }
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device: CUDA is simply not available
      return 0;
    }
    return n;
  }();
  return count;
}

int current_device() {
  int d = 0;
  COIL_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

DeviceGuard::DeviceGuard(int index) {
  const int cur = current_device();
  if (cur != index) {
    COIL_CUDA_CHECK(cudaSetDevice(index));
    previous_ = cur;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
}

namespace {

class CudaHooks final : public DeviceHooks {
 public:
  void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n) override {
    if (n == 0) return;
    COIL_INTERNAL_ASSERT(dst_dev.is_cuda() || src_dev.is_cuda(), "CUDA copy hook asked to copy ",
                         device_name(src_dev), " -> ", device_name(dst_dev));
    if (src_dev.is_cpu()) {  // host -> device
      DeviceGuard g(dst_dev.index);
      cudaStream_t s = current_stream(dst_dev.index);
      COIL_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
      // The host buffer may be reused as soon as we return (pinned buffers are read by the DMA
      // engine after cudaMemcpyAsync returns), so wait.
      COIL_CUDA_CHECK(cudaStreamSynchronize(s));
    } else if (dst_dev.is_cpu()) {  // device -> host
      DeviceGuard g(src_dev.index);
      cudaStream_t s = current_stream(src_dev.index);
      COIL_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
      COIL_CUDA_CHECK(cudaStreamSynchronize(s));
    } else if (src_dev.index == dst_dev.index) {  // within one device: stream-ordered, no wait
      DeviceGuard g(src_dev.index);
      COIL_CUDA_CHECK(
          cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, current_stream(src_dev.index)));
    } else {  // between devices: ordered after the source's work, finished before the destination's
      DeviceGuard g(src_dev.index);
      cudaStream_t s = current_stream(src_dev.index);
      COIL_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, n, s));
      COIL_CUDA_CHECK(cudaStreamSynchronize(s));
    }
  }

  void synchronize(int device_index) override {
    DeviceGuard g(device_index);
    COIL_CUDA_CHECK(cudaDeviceSynchronize());
  }

  int device_count() const override { return cuda::device_count(); }
};

// Installs the CUDA entries of core's tables when this library is linked (whole-archive). Neither
// the hooks nor the allocator touch the CUDA runtime until first used.
struct Installer {
  Installer() {
    static CudaHooks* hooks = new CudaHooks();  // never destroyed, like the allocator
    set_hooks(DeviceType::CUDA, hooks);
    set_allocator(DeviceType::CUDA, &caching_allocator());
  }
};
const Installer g_installer;

}  // namespace
}  // namespace coil::cuda
