// The CPU allocator (64-byte aligned, counts bytes) and the per-device-type tables of allocators and
// device hooks. The CPU entries are installed here; the CUDA backend installs its own when linked.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/error.h"

namespace coil {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, int) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
    void* p = std::aligned_alloc(64, rounded);
    COIL_CHECK(p != nullptr, "out of host memory allocating ", nbytes, " bytes");
    std::lock_guard<std::mutex> lock(mu_);
    stats_.current_bytes += int64_t(nbytes);
    stats_.reserved_bytes = stats_.current_bytes;
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    stats_.num_allocs++;
    return p;
  }
  void deallocate(void* p, size_t nbytes, int) override {
    if (!p) return;
    std::free(p);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.current_bytes -= int64_t(nbytes);
    stats_.reserved_bytes = stats_.current_bytes;
  }
  MemoryStats stats(int) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak(int) override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_bytes = stats_.current_bytes;
  }

 private:
  mutable std::mutex mu_;
  MemoryStats stats_;
};

class CpuHooks final : public DeviceHooks {
 public:
  void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n) override {
    COIL_INTERNAL_ASSERT(dst_dev.is_cpu() && src_dev.is_cpu());
    if (n) std::memcpy(dst, src, n);
  }
  void synchronize(int) override {}
  int device_count() const override { return 1; }
};

struct Tables {
  Allocator* allocators[kNumDeviceTypes] = {};
  DeviceHooks* hooks[kNumDeviceTypes] = {};
  Tables() {
    static CpuAllocator cpu_alloc;
    static CpuHooks cpu_hooks;
    allocators[int(DeviceType::CPU)] = &cpu_alloc;
    hooks[int(DeviceType::CPU)] = &cpu_hooks;
  }
};
Tables& tables() {
  static Tables t;
  return t;
}

const char* type_name(DeviceType t) { return t == DeviceType::CPU ? "cpu" : "cuda"; }

}  // namespace

Allocator& allocator_for(DeviceType t) {
  Allocator* a = tables().allocators[int(t)];
  COIL_CHECK(a != nullptr, "no allocator for device type ", type_name(t),
             " (was coil built with that backend?)");
  return *a;
}
void set_allocator(DeviceType t, Allocator* a) { tables().allocators[int(t)] = a; }

DeviceHooks& hooks_for(DeviceType t) {
  DeviceHooks* h = tables().hooks[int(t)];
  COIL_CHECK(h != nullptr, "no device support for ", type_name(t),
             " (was coil built with that backend?)");
  return *h;
}
void set_hooks(DeviceType t, DeviceHooks* h) { tables().hooks[int(t)] = h; }

bool device_type_available(DeviceType t) {
  DeviceHooks* h = tables().hooks[int(t)];
  return h != nullptr && h->device_count() > 0;
}

}  // namespace coil
