// Allocator contract: allocate(n) returns n bytes aligned to at least 64 bytes on the allocator's
// device (nullptr only for n == 0); deallocate takes back exactly what allocate gave. Every allocator
// keeps current and peak byte counts of memory handed out. One allocator per device type is
// installed in a process-wide table: the CPU one by core, the CUDA caching allocator by the CUDA
// backend when it is linked. Device copies go through DeviceHooks of the same table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace coil {

struct MemoryStats {
  int64_t current_bytes = 0;  // handed out and not yet returned
  int64_t peak_bytes = 0;     // max of current_bytes since the last reset_peak()
  int64_t reserved_bytes = 0; // held from the system (>= current for caching allocators)
  int64_t num_allocs = 0;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, int device_index) = 0;
  virtual void deallocate(void* ptr, size_t nbytes, int device_index) = 0;
  virtual MemoryStats stats(int device_index) const = 0;
  virtual void reset_peak(int device_index) = 0;
  // Return cached blocks to the system (no-op for non-caching allocators).
  virtual void empty_cache() {}
};

// Per device type: copies and synchronisation. CPU hooks are memcpy; the CUDA backend installs its own.
struct DeviceHooks {
  virtual ~DeviceHooks() = default;
  // Copy nbytes between any two devices where one side is this hook's device type (or both).
  virtual void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) = 0;
  virtual void synchronize(int device_index) = 0;
  virtual int device_count() const = 0;
};

Allocator& allocator_for(DeviceType t);             // throws coil::Error if none is installed
void set_allocator(DeviceType t, Allocator* a);     // takes no ownership; a must outlive its use
DeviceHooks& hooks_for(DeviceType t);               // throws coil::Error if none is installed
void set_hooks(DeviceType t, DeviceHooks* h);
bool device_type_available(DeviceType t);           // hooks installed and device_count() > 0

}  // namespace coil
