// Iteration over strided views: visit every element of a shape in row-major order while tracking the
// element offset of the same index in several tensors (each with its own strides; a broadcast dim has
// stride 0). Used by the ops whose contract says "strided": Fill, Copy, Add/Sub/Mul/Div, Concat.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace coil::cpu {

// Calls f(i, off) for the linear row-major indices i in [begin, end) of `shape`, where off[k] is the
// element offset of that index in tensor k (sum over dims of index * strides[k][dim]).
template <size_t N, typename F>
void strided_loop(const Shape& shape, const std::array<const Shape*, N>& strides, int64_t begin,
                  int64_t end, F&& f) {
  if (begin >= end) return;
  const int64_t rank = int64_t(shape.size());
  std::array<int64_t, N> off{};
  if (rank == 0) {
    f(int64_t(0), off);
    return;
  }
  // Unravel `begin` into a multi-index and the starting offsets.
  std::vector<int64_t> idx(rank);
  int64_t rest = begin;
  for (int64_t d = rank - 1; d >= 0; --d) {
    idx[d] = rest % shape[d];
    rest /= shape[d];
    for (size_t k = 0; k < N; ++k) off[k] += idx[d] * (*strides[k])[d];
  }
  for (int64_t i = begin; i < end; ++i) {
    f(i, off);
    // Increment the multi-index, carrying into outer dims.
    for (int64_t d = rank - 1; d >= 0; --d) {
      ++idx[d];
      for (size_t k = 0; k < N; ++k) off[k] += (*strides[k])[d];
      if (idx[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= idx[d] * (*strides[k])[d];
      idx[d] = 0;
    }
  }
}

// strided_loop over all elements, split into fixed chunks across OpenMP threads. f must only write
// to locations owned by index i, so the result does not depend on the thread count.
template <size_t N, typename F>
void parallel_strided_loop(const Shape& shape, const std::array<const Shape*, N>& strides, F&& f) {
  const int64_t numel = shape_numel(shape);
  constexpr int64_t kChunk = 1 << 15;  // elements per task: large enough to amortise the unravel
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 8)  // a team only pays off for large copies
  for (int64_t c = 0; c < chunks; ++c)
    strided_loop(shape, strides, c * kChunk, std::min(numel, (c + 1) * kChunk), f);
}

}  // namespace coil::cpu
