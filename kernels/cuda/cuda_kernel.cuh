// What every CUDA kernel file shares: the storage <-> compute type mapping (bf16 is stored as
// __nv_bfloat16 and computed in fp32; f32 in fp32; f64 in fp64), bf16 rounding bit-identical to the
// host's (core/dtype.h), launch geometry for grid-stride loops, and the indexer that walks strided
// views (up to kMaxDims dims after merging). Each op family is kernel -> launcher -> registration.
#pragma once

#include <cuda_bf16.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "core/registry.h"
#include "core/tensor.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

// COIL_CUDA_FLOAT_KERNELS(Exp, unary_launch<ExpOp>) registers fn<float>, fn<double> and
// fn<__nv_bfloat16> for F32, F64 and BF16.
#define COIL_CUDA_FLOAT_KERNELS(op, fn)                     \
  COIL_REGISTER_KERNEL(CUDA, op, F32, fn<float>);           \
  COIL_REGISTER_KERNEL(CUDA, op, F64, fn<double>);          \
  COIL_REGISTER_KERNEL(CUDA, op, BF16, fn<::coil::cuda::bf16_t>)

namespace coil::cuda {

using bf16_t = __nv_bfloat16;

// --- types ------------------------------------------------------------------------------------------
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<bf16_t> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, bf16_t>) return DType::BF16;
  else if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  else {
    static_assert(std::is_same_v<T, int64_t>, "no coil dtype for this type");
    return DType::I64;
  }
}

// --- bf16 -------------------------------------------------------------------------------------------
// Round to nearest even, NaN to a quiet NaN: the same bits as coil::float_to_bf16 on the host, so
// casts on the GPU and the CPU agree exactly.
__device__ __forceinline__ bf16_t float_to_bf16_rne(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __ushort_as_bfloat16(uint16_t((u >> 16) | 0x40));
  u += 0x7fffu + ((u >> 16) & 1u);
  return __ushort_as_bfloat16(uint16_t(u >> 16));
}

// Host side: a bf16_t holding coil's host rounding of f.
inline bf16_t host_float_to_bf16(float f) {
  __nv_bfloat16_raw r;
  r.x = float_to_bf16(f).bits;
  return bf16_t(r);
}

template <typename T>
__device__ __forceinline__ compute_t<T> to_compute(T x) {
  if constexpr (std::is_same_v<T, bf16_t>) return __bfloat162float(x);
  else return x;
}
template <typename T>
__device__ __forceinline__ T from_compute(compute_t<T> x) {
  if constexpr (std::is_same_v<T, bf16_t>) return float_to_bf16_rne(x);
  else return x;
}

// --- launch geometry --------------------------------------------------------------------------------
// 256 threads (8 warps) per block: full occupancy on sm_90 for register-light elementwise kernels.
inline constexpr int kThreads = 256;
// Grid-stride loops cover any n; 65535 blocks of 256 threads is many waves on any GPU, and keeps the
// grid size within every dimension limit.
inline constexpr int64_t kMaxBlocks = 65535;

inline unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// The index of this thread in a 1-D grid, and the grid's stride, as int64 (n may exceed 2^31).
__device__ __forceinline__ int64_t grid_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

// --- strided views ----------------------------------------------------------------------------------
inline constexpr int kMaxDims = 8;  // dims left after merging; a CUDA kernel parameter stays small

// Offsets into N strided tensors of the element with row-major linear index i of a common shape.
// Dims are stored innermost first; dims of size 1 are dropped and neighbours that are contiguous with
// each other in every tensor are merged, so a contiguous tensor has rank <= 1.
template <int N>
struct StridedIndexer {
  int rank = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[N][kMaxDims] = {};

  __device__ __forceinline__ void offsets(int64_t i, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d >= rank) break;
      const int64_t q = i / size[d];
      const int64_t r = i - q * size[d];
      i = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += r * stride[k][d];
    }
  }

  // True when every tensor is contiguous over the shape (offset == linear index).
  bool contiguous() const {
    if (rank == 0) return true;
    if (rank > 1) return false;
    for (int k = 0; k < N; ++k)
      if (stride[k][0] != 1) return false;
    return true;
  }
};

template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedIndexer<N> ix;
  int64_t merged_size = 1;  // the dim being built (innermost first)
  int64_t merged_stride[N] = {};
  bool open = false;
  auto flush = [&] {
    COIL_CHECK(ix.rank < kMaxDims, "CUDA kernels handle views of at most ", kMaxDims,
               " non-mergeable dims, got shape ", shape_str(shape));
    ix.size[ix.rank] = merged_size;
    for (int k = 0; k < N; ++k) ix.stride[k][ix.rank] = merged_stride[k];
    ix.rank++;
  };
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (open) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k) mergeable &= (*strides[k])[d] == merged_stride[k] * merged_size;
      if (mergeable) {
        merged_size *= shape[d];
        continue;
      }
      flush();
    }
    merged_size = shape[d];
    for (int k = 0; k < N; ++k) merged_stride[k] = (*strides[k])[d];
    open = true;
  }
  if (open) flush();
  return ix;
}

// --- launcher helpers -------------------------------------------------------------------------------
inline void check_arity(const KernelArgs& a, size_t n_in, size_t n_out) {
  COIL_INTERNAL_ASSERT(a.in.size() == n_in && a.out.size() == n_out, op_name(a.op), " got ",
                       a.in.size(), " inputs and ", a.out.size(), " outputs, expected ", n_in,
                       " and ", n_out);
}

template <typename T>
void check_tensor(const Tensor& t) {
  COIL_INTERNAL_ASSERT(t.device().is_cuda(), "CUDA kernel got ", t.describe());
  COIL_INTERNAL_ASSERT(t.dtype() == dtype_of<T>(), "kernel for ", dtype_name(dtype_of<T>()), " got ",
                       t.describe());
}

// Makes a tensor's device current and names the stream its kernels launch on.
struct LaunchContext {
  explicit LaunchContext(const Tensor& t) : guard(t.device().index), stream(current_stream(t.device().index)) {}
  DeviceGuard guard;
  cudaStream_t stream;
};

}  // namespace coil::cuda
