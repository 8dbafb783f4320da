// SumSquares on CUDA: x (contiguous, any shape) -> out () = sum of x^2, f32 out for f32 / bf16 input,
// f64 out for f64. Deterministic two-pass reduction: pass 1 gives each block a fixed slice of the
// grid-stride loop (the grid size depends only on n, never on the GPU), accumulates per thread in the
// compute type (fp32 for f32/bf16, fp64 for f64) and reduces the block in a fixed tree into one fp64
// partial; pass 2 sums the partials in fp64 in a fixed order in one block. Same input, same bits.
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

inline constexpr int kWarp = 32;
// Pass 1: each thread squares about this many elements before the block reduction (enough work per
// thread to hide the reduction, small enough that the fp32 running sum stays accurate).
inline constexpr int64_t kItemsPerThread = 16;
// At most this many partials (pass-1 blocks); pass 2 reduces them with kFinalThreads threads.
inline constexpr int64_t kMaxPartials = 4096;
inline constexpr int kFinalThreads = 1024;

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in thread 0.
template <typename A>
__device__ A block_sum(A v) {
  __shared__ A warp_sums[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / kWarp;
  v = threadIdx.x < warps ? warp_sums[threadIdx.x] : A(0);
  if (warp == 0) {
#pragma unroll
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

template <typename T>
struct SumSquaresParams {
  const T* x;         // (n) contiguous
  int64_t n;
  double* partials;   // (num_partials) fp64, one per pass-1 block
  int num_partials;
};

template <typename T>
__global__ void sum_squares_partial_kernel(SumSquaresParams<T> p) {
  using A = compute_t<T>;
  A acc = A(0);
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) {
    const A v = to_compute(p.x[i]);
    acc += v * v;
  }
  const double s = block_sum(double(acc));
  if (threadIdx.x == 0) p.partials[blockIdx.x] = s;
}

template <typename Out>
__global__ void sum_squares_final_kernel(const double* partials, int num_partials, Out* out) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < num_partials; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[0] = Out(acc);
}

template <typename T>
void sum_squares_launch(const KernelArgs& a) {
  using Out = std::conditional_t<std::is_same_v<T, double>, double, float>;
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  const Tensor& out = a.out[0];
  check_tensor<T>(x);
  check_tensor<Out>(out);
  COIL_INTERNAL_ASSERT(x.is_contiguous() && out.numel() == 1, "sum_squares ", x.describe(), " -> ",
                       out.describe());
  const int64_t n = x.numel();
  const int64_t per_block = int64_t(kThreads) * kItemsPerThread;
  const int64_t blocks = std::min(kMaxPartials, std::max<int64_t>(1, (n + per_block - 1) / per_block));
  // Partials come from the caching allocator on the current stream; freeing them when this function
  // returns is safe because any reuse is ordered after these kernels on the same stream.
  Tensor partials = Tensor::empty({blocks}, DType::F64, x.device());  // (blocks)
  SumSquaresParams<T> p{x.data<T>(), n, partials.data<double>(), int(blocks)};
  LaunchContext ctx(x);
  sum_squares_partial_kernel<T><<<unsigned(blocks), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
  sum_squares_final_kernel<Out><<<1, kFinalThreads, 0, ctx.stream>>>(p.partials, p.num_partials,
                                                                     out.data<Out>());
  COIL_CUDA_CHECK_LAUNCH("sum_squares_final_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(SumSquares, sum_squares_launch);

}  // namespace coil::cuda
