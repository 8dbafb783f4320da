// Shared by the MPI test binary: the world communicator made by main (mpi_main.cpp) and small helpers.
#pragma once

#include <cmath>
#include <vector>

#include "parallel/communicator.h"

namespace coil::testing {

CommPtr& world();

// max |a - b| / max |b|: the error relative to the tensor's scale (element-wise ratios blow up on
// entries that cancel to ~0).
inline double max_rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(a[i] - b[i]));
    m = std::max(m, std::abs(b[i]));
  }
  return d / std::max(m, 1e-30);
}

}  // namespace coil::testing
