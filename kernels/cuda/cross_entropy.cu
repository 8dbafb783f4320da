// CrossEntropy and its backward on CUDA (kernels/cpu/loss.cpp's contracts). logits (M, V) in f32 /
// bf16 / f64; lse (M) and the loss () in the stat dtype (f32, f64 for f64). Targets that are not
// ignore_index must lie in [0, V): a first kernel counts the counted rows and flags a bad target
// (index_check.cuh); the host reads the flag back (one stream synchronisation per call) and throws
// the CPU's coil::Error. Forward: one block per row, ONE pass over the vocabulary with an online
// (max, sum of exp) pair per thread, merged by a fixed tree; the mean over counted rows is a single
// block summing the row losses in fp64 in a fixed order. Backward: one block per row,
// dlogits = dloss / count * (exp(x - lse) - onehot), zero on ignored rows.
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/device_math.cuh"
#include "kernels/cuda/index_check.cuh"

namespace coil::cuda {
namespace {

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int kSingleBlockThreads = 1024;  // the counting and final-sum kernels run one block

// --- targets: count counted rows, flag the first bad one ------------------------------------------------
__global__ void count_targets_kernel(const int32_t* tg, int64_t M, int64_t V, int64_t ignore, int64_t* count,
                                     unsigned long long* bad) {
  int64_t n = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    if (tg[i] == ignore) continue;
    if (tg[i] < 0 || tg[i] >= V) flag_bad_index(bad, i);
    ++n;
  }
  n = block_allreduce(n, SumOp(), int64_t(0));
  if (threadIdx.x == 0) *count = n;
}

// Runs the count kernel and throws on a bad target; returns the device slot holding the count.
Tensor count_targets(const Tensor& targets, int64_t V, int64_t ignore, cudaStream_t stream) {
  const int64_t M = targets.numel();
  Tensor count = Tensor::empty({1}, DType::I64, targets.device());
  BadIndexSlot bad(targets.device(), stream);
  count_targets_kernel<<<1, kSingleBlockThreads, 0, stream>>>(targets.data<int32_t>(), M, V, ignore,
                                                             count.data<int64_t>(), bad.ptr());
  COIL_CUDA_CHECK_LAUNCH("count_targets_kernel");
  const int64_t row = bad.first_bad();
  if (row >= 0) {
    const int32_t t = read_i32(targets, row, stream);
    COIL_FAIL("cross_entropy: target ", t, " in row ", row, " is out of range for ", V,
              " classes (expected 0 <= target < ", V, " or ignore_index ", ignore, ")");
  }
  return count;
}

// --- online log-sum-exp ------------------------------------------------------------------------------------
// (m, s) stands for s * exp(m): the running max and the sum of exp(x - m).
template <typename A>
struct MaxSum {
  A m, s;
};

template <typename A>
__device__ __forceinline__ MaxSum<A> merge(MaxSum<A> a, MaxSum<A> b) {
  const A m = a.m > b.m ? a.m : b.m;
  if (m == -INFINITY) return {m, a.s + b.s};  // both empty (or all -inf): exp(-inf - -inf) would be NaN
  return {m, a.s * m_exp(a.m - m) + b.s * m_exp(b.m - m)};
}

// Adds one logit. -inf contributes nothing; a NaN makes the sum NaN (as the CPU's lse is).
template <typename A>
__device__ __forceinline__ void push(MaxSum<A>& acc, A v) {
  if (v > acc.m) {
    acc.s = acc.s * m_exp(acc.m - v) + A(1);
    acc.m = v;
  } else if (v != v) {
    acc.s = v;
  } else if (v > -INFINITY) {
    acc.s += m_exp(v - acc.m);
  }
}

// Merge over the block (fixed tree; merge is commutative bit for bit, so every lane agrees).
template <typename A>
__device__ MaxSum<A> block_merge(MaxSum<A> v) {
  __shared__ A ms[kWarpSize], ss[kWarpSize];
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o /= 2)
    v = merge(v, MaxSum<A>{__shfl_xor_sync(kFullMask, v.m, o), __shfl_xor_sync(kFullMask, v.s, o)});
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  __syncthreads();
  if (lane == 0) ms[warp] = v.m, ss[warp] = v.s;
  __syncthreads();
  v = lane < int(blockDim.x / kWarpSize) ? MaxSum<A>{ms[lane], ss[lane]} : MaxSum<A>{A(-INFINITY), A(0)};
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o /= 2)
    v = merge(v, MaxSum<A>{__shfl_xor_sync(kFullMask, v.m, o), __shfl_xor_sync(kFullMask, v.s, o)});
  return v;
}

// --- CrossEntropy: logits (M, V), targets (M) -> loss (), lse (M) ---------------------------------------
template <typename T>
struct CeParams {
  const T* logits;      // (M, V)
  const int32_t* tg;    // (M)
  stat_t<T>* lse;       // (M)
  compute_t<T>* row_loss;  // (M): lse - logit of the target, 0 on ignored rows
  int64_t M, V, ignore;
};

template <typename T>
__global__ void cross_entropy_rows_kernel(CeParams<T> p) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < p.M; row += gridDim.x) {
    const T* xr = p.logits + row * p.V;
    MaxSum<A> acc{A(-INFINITY), A(0)};
    for (int64_t j = threadIdx.x; j < p.V; j += blockDim.x) push(acc, to_compute(xr[j]));
    acc = block_merge(acc);
    if (threadIdx.x == 0) {
      const A l = acc.m + m_log(acc.s);
      p.lse[row] = stat_t<T>(l);
      const int64_t t = p.tg[row];
      p.row_loss[row] = t == p.ignore ? A(0) : l - to_compute(xr[t]);
    }
  }
}

// loss = sum of row losses (fp64, fixed order) / count, or 0 when nothing is counted.
template <typename T>
__global__ void cross_entropy_mean_kernel(const compute_t<T>* row_loss, int64_t M, const int64_t* count,
                                          stat_t<T>* loss) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) acc += double(row_loss[i]);
  acc = block_allreduce(acc, SumOp(), 0.0);
  if (threadIdx.x == 0) *loss = stat_t<T>(*count > 0 ? acc / double(*count) : 0.0);
}

template <typename T>
void cross_entropy_launch(const KernelArgs& a) {
  using A = compute_t<T>;
  check_arity(a, 2, 2);
  const Tensor& logits = a.in[0];
  const Tensor& targets = a.in[1];
  const Tensor& loss = a.out[0];
  const Tensor& lse = a.out[1];
  check_tensor<T>(logits);
  check_tensor<int32_t>(targets);
  check_tensor<stat_t<T>>(loss);
  check_tensor<stat_t<T>>(lse);
  const int64_t V = logits.dim() == 0 ? 1 : logits.size(-1), M = targets.numel();
  COIL_INTERNAL_ASSERT(logits.numel() == M * V && lse.numel() == M && loss.numel() == 1 &&
                           logits.is_contiguous() && targets.is_contiguous(),
                       "cross_entropy logits ", logits.describe(), ", targets ", targets.describe());
  LaunchContext ctx(logits);
  const int64_t ignore = a.attrs.ignore_index;
  Tensor count = count_targets(targets, V, ignore, ctx.stream);
  Tensor row_loss = Tensor::empty({std::max<int64_t>(M, 1)}, dtype_of<A>(), logits.device());  // (M)
  CeParams<T> p{logits.data<T>(), targets.data<int32_t>(), lse.data<stat_t<T>>(),
                static_cast<A*>(row_loss.data_ptr()), M, V, ignore};
  if (M > 0) {
    cross_entropy_rows_kernel<T><<<row_grid(M), row_block_threads(V), 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("cross_entropy_rows_kernel");
  }
  cross_entropy_mean_kernel<T><<<1, kSingleBlockThreads, 0, ctx.stream>>>(p.row_loss, M, count.data<int64_t>(),
                                                                           loss.data<stat_t<T>>());
  COIL_CUDA_CHECK_LAUNCH("cross_entropy_mean_kernel");
}

// --- CrossEntropyBackward: dloss (), logits (M, V), targets (M), lse (M) -> dlogits (M, V) ---------------
template <typename T>
struct CeBwdParams {
  const stat_t<T>* dloss;  // ()
  const T* logits;         // (M, V)
  const int32_t* tg;       // (M)
  const stat_t<T>* lse;    // (M)
  const int64_t* count;    // ()
  T* dlogits;              // (M, V)
  int64_t M, V, ignore;
};

template <typename T>
__global__ void cross_entropy_backward_kernel(CeBwdParams<T> p) {
  using A = compute_t<T>;
  const int64_t count = *p.count;
  const A g = A(*p.dloss) / A(count > 0 ? count : 1);
  for (int64_t row = blockIdx.x; row < p.M; row += gridDim.x) {
    T* dr = p.dlogits + row * p.V;
    const int64_t t = p.tg[row];
    if (t == p.ignore) {
      for (int64_t j = threadIdx.x; j < p.V; j += blockDim.x) dr[j] = from_compute<T>(A(0));
      continue;
    }
    const T* xr = p.logits + row * p.V;
    const A l = A(p.lse[row]);
    for (int64_t j = threadIdx.x; j < p.V; j += blockDim.x) {
      const A prob = m_exp(to_compute(xr[j]) - l);
      dr[j] = from_compute<T>(g * (prob - (j == t ? A(1) : A(0))));
    }
  }
}

template <typename T>
void cross_entropy_backward_launch(const KernelArgs& a) {
  check_arity(a, 4, 1);
  const Tensor& dloss = a.in[0];
  const Tensor& logits = a.in[1];
  const Tensor& targets = a.in[2];
  const Tensor& lse = a.in[3];
  const Tensor& dlogits = a.out[0];
  check_tensor<stat_t<T>>(dloss);
  check_tensor<T>(logits);
  check_tensor<int32_t>(targets);
  check_tensor<stat_t<T>>(lse);
  check_tensor<T>(dlogits);
  const int64_t V = logits.dim() == 0 ? 1 : logits.size(-1), M = targets.numel();
  COIL_INTERNAL_ASSERT(logits.numel() == M * V && dlogits.numel() == M * V && lse.numel() == M &&
                           dloss.numel() == 1 && logits.is_contiguous() && dlogits.is_contiguous(),
                       "cross_entropy_backward logits ", logits.describe(), " -> ", dlogits.describe());
  LaunchContext ctx(logits);
  const int64_t ignore = a.attrs.ignore_index;
  Tensor count = count_targets(targets, V, ignore, ctx.stream);
  if (M == 0 || V == 0) return;
  CeBwdParams<T> p{dloss.data<stat_t<T>>(), logits.data<T>(), targets.data<int32_t>(), lse.data<stat_t<T>>(),
                   count.data<int64_t>(), dlogits.data<T>(), M, V, ignore};
  cross_entropy_backward_kernel<T><<<row_grid(M), row_block_threads(V), 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(CrossEntropy, cross_entropy_launch);
COIL_CUDA_FLOAT_KERNELS(CrossEntropyBackward, cross_entropy_backward_launch);

}  // namespace coil::cuda
