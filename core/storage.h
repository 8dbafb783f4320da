// Storage: a reference-counted block of device memory obtained from the device's allocator. Views of a
// tensor share one Storage. The version counter lives here, so an in-place write through any view is
// seen by every tensor saved for backward that shares the memory.
#pragma once

#include <cstdint>
#include <memory>

#include "core/allocator.h"

namespace coil {

class StorageImpl {
 public:
  StorageImpl(size_t nbytes, Device device);
  ~StorageImpl();
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  uint64_t version_ = 0;
};

using Storage = std::shared_ptr<StorageImpl>;

}  // namespace coil
