// Shared by the CUDA test files: every CUDA test starts with REQUIRE_CUDA(), which skips it when this
// process sees no CUDA device (the only reason a coil test may skip itself).
#pragma once

#include <gtest/gtest.h>

#include "core/allocator.h"

#define REQUIRE_CUDA()                                             \
  do {                                                             \
    if (!::coil::device_type_available(::coil::DeviceType::CUDA))  \
      GTEST_SKIP() << "no CUDA device in this process";            \
  } while (0)
