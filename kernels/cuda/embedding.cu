// Embedding and its deterministic backward on CUDA (kernels/cpu/loss.cpp's contracts). ids are i32;
// an id outside [0, V) is flagged on the device (index_check.cuh) and raised on the host after the
// launch as the CPU's coil::Error (naming the id, its position and V); this reads one value back, so
// it synchronises the stream once per call.
// EmbeddingBackward without atomics: the (id, position) pairs are sorted by id with
// cub::DeviceRadixSort (stable, so positions stay ascending within an id); the first sorted slot of
// each id's run then sums that run's rows of dy in position order (the CPU's order), in fp32 (fp64 for
// f64), and writes the table row once. Rows no id touches are zero (one memset first). Cost: a sort of
// M keys over ceil(log2 V) bits plus one pass over dy, independent of V except for the memset.
#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/index_check.cuh"

namespace coil::cuda {
namespace {

[[noreturn]] void throw_bad_id(const Tensor& ids, int64_t pos, int64_t V, cudaStream_t stream) {
  const int32_t id = read_i32(ids, pos, stream);
  COIL_FAIL("embedding: id ", id, " at position ", pos, " is out of range for a table of ", V,
            " rows (expected 0 <= id < ", V, ")");
}

// --- Embedding: table (V, C), ids (M) -> out (M, C) = table[ids] -----------------------------------------
template <typename T>
__global__ void embedding_kernel(const T* table, const int32_t* ids, T* out, int64_t M, int64_t V, int64_t C,
                                 unsigned long long* bad) {
  for (int64_t row = blockIdx.x; row < M; row += gridDim.x) {
    const int64_t id = ids[row];
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0) flag_bad_index(bad, row);
      continue;
    }
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) out[row * C + c] = table[id * C + c];
  }
}

template <typename T>
void embedding_launch(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& table = a.in[0];
  const Tensor& ids = a.in[1];
  const Tensor& out = a.out[0];
  check_tensor<T>(table);
  check_tensor<T>(out);
  check_tensor<int32_t>(ids);
  COIL_INTERNAL_ASSERT(table.dim() == 2 && table.is_contiguous() && ids.is_contiguous() && out.is_contiguous() &&
                           out.numel() == ids.numel() * table.size(1),
                       "embedding table ", table.describe(), ", ids ", ids.describe(), " -> ", out.describe());
  const int64_t V = table.size(0), C = table.size(1), M = ids.numel();
  if (M == 0) return;
  LaunchContext ctx(table);
  BadIndexSlot bad(table.device(), ctx.stream);
  embedding_kernel<T><<<row_grid(M), row_block_threads(C), 0, ctx.stream>>>(table.data<T>(), ids.data<int32_t>(),
                                                                out.data<T>(), M, V, C, bad.ptr());
  COIL_CUDA_CHECK_LAUNCH("embedding_kernel");
  const int64_t pos = bad.first_bad();
  if (pos >= 0) throw_bad_id(ids, pos, V, ctx.stream);
}

// --- EmbeddingBackward: dy (M, C), ids (M) -> dtable (V, C) ----------------------------------------------
// Range check, and the positions 0..M-1 the sort carries along.
__global__ void check_ids_kernel(const int32_t* ids, int64_t M, int64_t V, int32_t* positions,
                                 unsigned long long* bad) {
  for (int64_t i = grid_index(); i < M; i += grid_stride()) {
    if (ids[i] < 0 || ids[i] >= V) flag_bad_index(bad, i);
    positions[i] = int32_t(i);
  }
}

// Block s handles sorted slot s when it starts a run of equal ids: row keys[s] of dtable becomes the
// sum, in position order, of the rows of dy at the run's positions.
template <typename T>
__global__ void embedding_backward_kernel(const T* dy, const int32_t* keys, const int32_t* positions, T* dtable,
                                          int64_t M, int64_t C) {
  using A = compute_t<T>;
  for (int64_t s = blockIdx.x; s < M; s += gridDim.x) {
    const int32_t id = keys[s];
    if (s > 0 && keys[s - 1] == id) continue;
    int64_t e = s + 1;
    while (e < M && keys[e] == id) ++e;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      A acc = A(0);
#pragma unroll 4
      for (int64_t q = s; q < e; ++q) acc += to_compute(dy[int64_t(positions[q]) * C + c]);
      dtable[int64_t(id) * C + c] = from_compute<T>(acc);
    }
  }
}

template <typename T>
void embedding_backward_launch(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& dy = a.in[0];
  const Tensor& ids = a.in[1];
  const Tensor& dtable = a.out[0];
  check_tensor<T>(dy);
  check_tensor<T>(dtable);
  check_tensor<int32_t>(ids);
  COIL_INTERNAL_ASSERT(dtable.dim() == 2 && dy.is_contiguous() && ids.is_contiguous() && dtable.is_contiguous() &&
                           dy.numel() == ids.numel() * dtable.size(1),
                       "embedding_backward dy ", dy.describe(), ", ids ", ids.describe(), " -> ", dtable.describe());
  const int64_t V = dtable.size(0), C = dtable.size(1), M = ids.numel();
  COIL_CHECK(M < INT_MAX, "embedding_backward: ", M, " ids exceed the int32 positions of the sort");
  LaunchContext ctx(dtable);
  if (dtable.numel() > 0)
    COIL_CUDA_CHECK(cudaMemsetAsync(dtable.data_ptr(), 0, size_t(dtable.numel()) * sizeof(T), ctx.stream));
  if (M == 0) return;
  const Device dev = dtable.device();
  Tensor positions = Tensor::empty({M}, DType::I32, dev);  // (M) 0..M-1, then sorted with the ids
  Tensor keys_sorted = Tensor::empty({M}, DType::I32, dev);
  Tensor positions_sorted = Tensor::empty({M}, DType::I32, dev);
  {
    BadIndexSlot bad(dev, ctx.stream);
    check_ids_kernel<<<grid_for(M), kThreads, 0, ctx.stream>>>(ids.data<int32_t>(), M, V,
                                                              positions.data<int32_t>(), bad.ptr());
    COIL_CUDA_CHECK_LAUNCH("check_ids_kernel");
    const int64_t pos = bad.first_bad();
    if (pos >= 0) throw_bad_id(ids, pos, V, ctx.stream);
  }
  // Every key is now in [0, V): sorting only the bits V - 1 needs is enough.
  int end_bit = 1;
  while (end_bit < 31 && (int64_t(1) << end_bit) < V) ++end_bit;
  size_t temp_bytes = 0;
  COIL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids.data<int32_t>(),
                                                  keys_sorted.data<int32_t>(), positions.data<int32_t>(),
                                                  positions_sorted.data<int32_t>(), int(M), 0, end_bit,
                                                  ctx.stream));
  Tensor temp = Tensor::empty({int64_t(temp_bytes / 4 + 1)}, DType::I32, dev);  // >= temp_bytes bytes
  COIL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, ids.data<int32_t>(),
                                                  keys_sorted.data<int32_t>(), positions.data<int32_t>(),
                                                  positions_sorted.data<int32_t>(), int(M), 0, end_bit,
                                                  ctx.stream));
  embedding_backward_kernel<T><<<row_grid(M), row_block_threads(C), 0, ctx.stream>>>(
      dy.data<T>(), keys_sorted.data<int32_t>(), positions_sorted.data<int32_t>(), dtable.data<T>(), M, C);
  COIL_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Embedding, embedding_launch);
COIL_CUDA_FLOAT_KERNELS(EmbeddingBackward, embedding_backward_launch);

}  // namespace coil::cuda
