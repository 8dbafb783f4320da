// Storage owns one allocation from its device's allocator.
#include "core/storage.h"

namespace coil {

StorageImpl::StorageImpl(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(&allocator_for(device.type)) {
  data_ = allocator_->allocate(nbytes, device.index);
}

StorageImpl::~StorageImpl() { allocator_->deallocate(data_, nbytes_, device_.index); }

}  // namespace coil
