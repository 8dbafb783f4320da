// Shared by the MPI test binary: the world communicator made by main (mpi_main.cpp) and small helpers.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "layers/config.h"
#include "parallel/communicator.h"
#include "trainer/model_yaml.h"

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

// configs/models/NAME-tiny.yaml with chunks of 4, so the chunked scans pass states inside a shard too.
inline ModelConfig tiny_chunked_config(const std::string& name) {
  ModelConfig c = load_model_config(std::string(COIL_SOURCE_DIR) + "/configs/models/" + name + "-tiny.yaml");
  c.linear.chunk_size = 4;
  c.mamba2.chunk_size = 4;
  return c;
}

// (B, T) i32 token ids, uniform over [0, V), from Generator(seed).
inline Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(size_t(B * T));
  for (auto& x : v) x = int64_t(g.next_uniform() * double(V)) % V;
  return Tensor::from_ints(v, {B, T});
}

}  // namespace coil::testing
