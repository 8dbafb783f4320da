// Deterministic warp / block reductions and the row-launch geometry shared by the row kernels (norms,
// softmax, cross-entropy, reductions). Every reduction is a fixed tree: an xor-butterfly inside each
// warp (all lanes end with the same bits, since a + b == b + a in IEEE arithmetic), then the warp
// results in warp order. The same input and block size give the same bits on every run and GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace coil::cuda {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;

struct SumOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};

// Max that propagates NaN (as the CPU's `beats`): a NaN on either side wins.
struct NanMaxOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    if (a != a) return a;
    if (b != b) return b;
    return b > a ? b : a;
  }
};

template <typename A, typename Op>
__device__ __forceinline__ A warp_allreduce(A v, Op op) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o /= 2) v = op(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Reduction of v over the block (blockDim.x a multiple of 32, at most 1024, 1-D); every thread gets
// the result. Safe to call several times in a row in one kernel (it synchronises on entry).
template <typename A, typename Op>
__device__ __forceinline__ A block_allreduce(A v, Op op, A identity) {
  __shared__ A warp_vals[kWarpSize];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_allreduce(v, op);
  __syncthreads();  // a previous call's readers are done with warp_vals
  if (lane == 0) warp_vals[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / kWarpSize;
  v = lane < warps ? warp_vals[lane] : identity;
  return warp_allreduce(v, op);
}

// Threads per block for a kernel that gives one block to each row of n elements: about 8 elements
// per thread, a power of two in [32, 1024] (so block_allreduce's tree has the same shape for a given
// n on every GPU).
inline int row_block_threads(int64_t n) {
  int t = kWarpSize;
  while (t < 1024 && int64_t(t) * 8 < n) t *= 2;
  return t;
}

// Grid of one block per row when rows fit the grid's x limit; kernels loop over rows with a
// block-stride so any row count works.
inline unsigned row_grid(int64_t rows) {
  constexpr int64_t kMaxGridX = 2147483647;
  return unsigned(rows < 1 ? 1 : (rows > kMaxGridX ? kMaxGridX : rows));
}

}  // namespace coil::cuda
