// Shared by the NCCL test binary: the MPI world, the NCCL world over it (null when this node has
// fewer GPUs than ranks) and the smallest GPU count of any rank's node, made by nccl_main.cpp.
#pragma once

#include <cuda_runtime.h>

#include "parallel/communicator.h"
#include "parallel/nccl_communicator.h"

namespace coil::nccl_test {
CommPtr& world();
CommPtr& nccl();
int& gpu_count();
}  // namespace coil::nccl_test

// Every NCCL test starts with this: skip (the only reason to) when there is no GPU per rank.
#define COIL_NEED_NCCL()                                                                         \
  do {                                                                                           \
    if (!::coil::nccl_test::nccl())                                                              \
      GTEST_SKIP() << "needs one GPU per rank: " << ::coil::nccl_test::gpu_count() << " GPU(s) for " \
                   << ::coil::nccl_test::world()->size() << " rank(s)";                          \
  } while (0)
