// AdamW on CUDA, in place on param, grad, m, v (same shape, contiguous, f32 or f64); KernelArgs::out
// is empty. The update is kernels/cpu/optim.cpp's, in the parameter's precision: decoupled weight
// decay from the old parameter, then the bias-corrected Adam step. The bias corrections are computed
// once on the host in fp64. SumSquaresMulti (the global gradient norm's per-tensor sums) is at the end.
// AdamW updates one tensor per launch; AdamWMulti packs many: a launch takes up to kMaxTensors
// tensors, their pointers and per-tensor first-block offsets travelling as the kernel's parameter
// (under the 4 KiB limit, so nothing is copied to the device first), and as many blocks of
// kBlockElems elements as those tensors need, with 128-bit loads. Both kernels call the same
// adamw_value, so the values are bit for bit the same. The earlier form (one block per 64K-element
// chunk from a per-block table, 192 blocks a launch) kept too few threads in flight and ran a
// 2Mamba-small step's update in 6.9 ms against 3.8 ms one by one (bench/step_ops_bench.cpp,
// 2026-11-24, H100); docs/PERFORMANCE.md has this form's figures.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

template <typename T>
struct AdamWConsts {
  T lr, beta1, beta2, eps;
  T decay;     // 1 - lr * weight_decay
  T bc1, bc2;  // 1 - beta^step
};

template <typename T>
struct AdamWParams {
  T* p;        // (n) parameter
  const T* g;  // (n) gradient
  T* m;        // (n) first moment
  T* v;        // (n) second moment
  int64_t n;
  AdamWConsts<T> k;
};

__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }

// Products and sums rounded one by one (no FMA contraction), so the update's value does not depend
// on how the compiler schedules it in each kernel: AdamW and AdamWMulti agree bit for bit.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

// One element's update in registers; adamw_update applies it in place at index i.
template <typename T>
__device__ __forceinline__ void adamw_value(T& p, T g, T& m, T& v, const AdamWConsts<T>& k) {
  const T mi = add_rn(mul_rn(k.beta1, m), mul_rn(sub_rn(T(1), k.beta1), g));
  const T vi = add_rn(mul_rn(k.beta2, v), mul_rn(mul_rn(sub_rn(T(1), k.beta2), g), g));
  const T mhat = mi / k.bc1, vhat = vi / k.bc2;
  p = sub_rn(mul_rn(p, k.decay), mul_rn(k.lr, mhat) / add_rn(m_sqrt(vhat), k.eps));
  m = mi;
  v = vi;
}

template <typename T>
__device__ __forceinline__ void adamw_update(T* p, const T* g, T* m, T* v, int64_t i,
                                             const AdamWConsts<T>& k) {
  T pi = p[i], mi = m[i], vi = v[i];
  adamw_value(pi, g[i], mi, vi, k);
  p[i] = pi;
  m[i] = mi;
  v[i] = vi;
}

template <typename T>
__global__ void adamw_kernel(AdamWParams<T> p) {
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) adamw_update(p.p, p.g, p.m, p.v, i, p.k);
}

template <typename T>
AdamWConsts<T> adamw_consts(const OpAttrs& at) {
  COIL_INTERNAL_ASSERT(at.step >= 1, "adamw step is 1-based, got ", at.step);
  return {T(at.lr), T(at.beta1), T(at.beta2), T(at.eps), T(1.0 - at.lr * at.weight_decay),
          T(1.0 - std::pow(at.beta1, double(at.step))), T(1.0 - std::pow(at.beta2, double(at.step)))};
}

template <typename T>
void adamw_launch(const KernelArgs& a) {
  check_arity(a, 4, 0);
  for (const Tensor& t : a.in) {
    check_tensor<T>(t);
    COIL_INTERNAL_ASSERT(t.shape() == a.in[0].shape() && t.is_contiguous(), "adamw tensors ",
                         a.in[0].describe(), " vs ", t.describe());
  }
  AdamWParams<T> p{a.in[0].data<T>(), a.in[1].data<T>(), a.in[2].data<T>(), a.in[3].data<T>(),
                   a.in[0].numel(), adamw_consts<T>(a.attrs)};
  if (p.n == 0) return;
  LaunchContext ctx(a.in[0]);
  adamw_kernel<T><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("adamw_kernel");
}

// --- AdamWMulti -------------------------------------------------------------------------------------
// A launch packs up to kMaxTensors tensors; tensor t owns blocks [start[t], start[t + 1]), each block
// kBlockElems consecutive elements, so a launch has as many blocks as its tensors need (a 2Mamba-small
// step: ~66K blocks in 3 launches) and a block finds its tensor by a binary search over start[].
constexpr int kMaxTensors = 64;
constexpr int kVecBytes = 16;                            // one 128-bit load per array and step
constexpr int kPerThread = 16;                           // elements per thread per block
constexpr int64_t kBlockElems = int64_t(kThreads) * kPerThread;

template <typename T>
struct AdamWMultiParams {
  T* p[kMaxTensors];
  const T* g[kMaxTensors];
  T* m[kMaxTensors];
  T* v[kMaxTensors];
  int64_t n[kMaxTensors];
  int32_t start[kMaxTensors + 1];  // first block of each tensor; start[nt] = the launch's blocks
  int32_t nt;
  AdamWConsts<T> k;
};
static_assert(sizeof(AdamWMultiParams<double>) <= 4000, "kernel parameters are limited to 4 KiB");

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  using type = float4;
};
template <>
struct Vec<double> {
  using type = double2;
};

template <typename T>
__global__ void __launch_bounds__(kThreads) adamw_multi_kernel(AdamWMultiParams<T> p) {
  const int b = int(blockIdx.x);
  int lo = 0, hi = p.nt - 1;  // the last tensor t with start[t] <= b
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.start[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const int t = lo;
  T* P = p.p[t];
  const T* G = p.g[t];
  T* M = p.m[t];
  T* V = p.v[t];
  const int64_t i0 = int64_t(b - p.start[t]) * kBlockElems, i1 = min(p.n[t], i0 + kBlockElems);
  constexpr int W = kVecBytes / int(sizeof(T));
  using VT = typename Vec<T>::type;
  // i0 is a multiple of W, so whole vectors from i0 are aligned where the four base pointers are (the
  // allocator's are; a tensor at an odd storage offset takes the scalar loop).
  const bool aligned =
      ((reinterpret_cast<uintptr_t>(P) | reinterpret_cast<uintptr_t>(G) | reinterpret_cast<uintptr_t>(M) |
        reinterpret_cast<uintptr_t>(V)) % kVecBytes) == 0;
  int64_t iv = i0;
  if (aligned) {
    iv = i0 + (i1 - i0) / W * W;
    for (int64_t i = i0 + int64_t(threadIdx.x) * W; i < iv; i += int64_t(kThreads) * W) {
      VT pv = *reinterpret_cast<const VT*>(P + i), gv = *reinterpret_cast<const VT*>(G + i);
      VT mv = *reinterpret_cast<const VT*>(M + i), vv = *reinterpret_cast<const VT*>(V + i);
      T* pe = reinterpret_cast<T*>(&pv);
      const T* ge = reinterpret_cast<const T*>(&gv);
      T* me = reinterpret_cast<T*>(&mv);
      T* ve = reinterpret_cast<T*>(&vv);
#pragma unroll
      for (int e = 0; e < W; ++e) adamw_value(pe[e], ge[e], me[e], ve[e], p.k);
      *reinterpret_cast<VT*>(P + i) = pv;
      *reinterpret_cast<VT*>(M + i) = mv;
      *reinterpret_cast<VT*>(V + i) = vv;
    }
  }
  for (int64_t i = iv + threadIdx.x; i < i1; i += kThreads) adamw_update(P, G, M, V, i, p.k);
}

template <typename T>
void adamw_multi_launch(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT(a.in.size() % 4 == 0 && a.out.empty(),
                       "adamw_multi takes (param, grad, m, v) quadruples, got ", a.in.size(), " inputs");
  if (a.in.empty()) return;
  for (const Tensor& t : a.in) {
    check_tensor<T>(t);
    COIL_INTERNAL_ASSERT(t.is_contiguous() && t.device() == a.in[0].device(), "adamw_multi ", t.describe());
  }
  LaunchContext ctx(a.in[0]);
  AdamWMultiParams<T> p{};
  p.k = adamw_consts<T>(a.attrs);
  int64_t nb = 0;  // blocks so far in this launch
  auto flush = [&]() {
    if (p.nt > 0) {
      p.start[p.nt] = int32_t(nb);
      adamw_multi_kernel<T><<<unsigned(nb), kThreads, 0, ctx.stream>>>(p);
      COIL_CUDA_CHECK_LAUNCH("adamw_multi_kernel");
    }
    p.nt = 0;
    nb = 0;
  };
  constexpr int64_t kMaxLaunchBlocks = int64_t(1) << 30;  // within the grid's x limit and int32
  for (size_t q = 0; q < a.in.size() / 4; ++q) {
    const Tensor* in = &a.in[4 * q];
    for (int j = 1; j < 4; ++j)
      COIL_INTERNAL_ASSERT(in[j].shape() == in[0].shape(), "adamw_multi tensors ", in[0].describe(), " vs ",
                           in[j].describe());
    const int64_t n = in[0].numel();
    if (n == 0) continue;
    const int64_t blocks = (n + kBlockElems - 1) / kBlockElems;
    COIL_INTERNAL_ASSERT(blocks <= kMaxLaunchBlocks, "adamw_multi tensor too large: ", in[0].describe());
    if (p.nt == kMaxTensors || nb + blocks > kMaxLaunchBlocks) flush();
    p.p[p.nt] = in[0].data<T>();
    p.g[p.nt] = in[1].data<T>();
    p.m[p.nt] = in[2].data<T>();
    p.v[p.nt] = in[3].data<T>();
    p.n[p.nt] = n;
    p.start[p.nt] = int32_t(nb);
    ++p.nt;
    nb += blocks;
  }
  flush();
}

// --- SumSquaresMulti --------------------------------------------------------------------------------
// The same packing as AdamWMulti: tensor t owns blocks [start[t], start[t + 1]) of kBlockElems
// elements (none for an empty tensor). Each block sums its squares in the compute type (fp32 for
// f32 / bf16, 16 per thread) and reduces them in a fixed tree in fp64 into its own partial; then one
// block per tensor adds that tensor's partials in a fixed order. The block -> elements map depends
// only on the shapes, so the same tensors give the same bits on any GPU.
constexpr int kMaxSumTensors = 128;

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
struct SumSquaresMultiParams {
  const T* x[kMaxSumTensors];
  int64_t n[kMaxSumTensors];
  int32_t start[kMaxSumTensors + 1];
  int32_t nt;
  double* partials;  // this launch's partials, one per block
  stat_t<T>* out;    // this launch's first tensor's output
};
static_assert(sizeof(SumSquaresMultiParams<double>) <= 4000, "kernel parameters are limited to 4 KiB");

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024), valid in thread 0.
__device__ double block_sum_f64(double v) {
  __shared__ double warp_sums[32];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = int(threadIdx.x) < int(blockDim.x) / 32 ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) sum_squares_multi_kernel(SumSquaresMultiParams<T> p) {
  using A = compute_t<T>;
  const int b = int(blockIdx.x);
  int lo = 0, hi = p.nt - 1;  // the last tensor t with start[t] <= b: the one owning block b
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.start[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const T* x = p.x[lo];
  const int64_t i0 = int64_t(b - p.start[lo]) * kBlockElems, i1 = min(p.n[lo], i0 + kBlockElems);
  A acc = A(0);
  for (int64_t i = i0 + threadIdx.x; i < i1; i += kThreads) {
    const A v = to_compute(x[i]);
    acc += v * v;
  }
  const double s = block_sum_f64(double(acc));
  if (threadIdx.x == 0) p.partials[b] = s;
}

// Block t: tensor t's partials, added in a fixed order (0 for an empty tensor).
template <typename T>
__global__ void __launch_bounds__(kThreads) sum_squares_multi_final_kernel(SumSquaresMultiParams<T> p) {
  const int t = int(blockIdx.x);
  double acc = 0.0;
  for (int64_t i = p.start[t] + threadIdx.x; i < p.start[t + 1]; i += kThreads) acc += p.partials[i];
  acc = block_sum_f64(acc);
  if (threadIdx.x == 0) p.out[t] = stat_t<T>(acc);
}

template <typename T>
void sum_squares_multi_launch(const KernelArgs& a) {
  using Out = stat_t<T>;
  COIL_INTERNAL_ASSERT(!a.in.empty() && a.out.size() == 1 && a.out[0].numel() == int64_t(a.in.size()),
                       "sum_squares_multi takes n >= 1 inputs and one (n) output");
  const Tensor& out = a.out[0];
  check_tensor<Out>(out);
  COIL_INTERNAL_ASSERT(out.is_contiguous(), "sum_squares_multi ", out.describe());
  int64_t total = 0;  // blocks over every input
  for (const Tensor& t : a.in) {
    check_tensor<T>(t);
    COIL_INTERNAL_ASSERT(t.is_contiguous() && t.device() == out.device(), "sum_squares_multi ", t.describe());
    total += (t.numel() + kBlockElems - 1) / kBlockElems;
  }
  LaunchContext ctx(out);
  Tensor partials = Tensor::empty({std::max<int64_t>(total, 1)}, DType::F64, out.device());  // one per block
  SumSquaresMultiParams<T> p{};
  int64_t nb = 0, done = 0, first = 0;  // blocks in this launch, blocks and tensors of earlier launches
  auto flush = [&]() {
    if (p.nt > 0) {
      p.start[p.nt] = int32_t(nb);
      p.partials = partials.data<double>() + done;
      p.out = out.data<Out>() + first;
      if (nb > 0) {
        sum_squares_multi_kernel<T><<<unsigned(nb), kThreads, 0, ctx.stream>>>(p);
        COIL_CUDA_CHECK_LAUNCH("sum_squares_multi_kernel");
      }
      sum_squares_multi_final_kernel<T><<<unsigned(p.nt), kThreads, 0, ctx.stream>>>(p);
      COIL_CUDA_CHECK_LAUNCH("sum_squares_multi_final_kernel");
    }
    done += nb;
    first += p.nt;
    p.nt = 0;
    nb = 0;
  };
  constexpr int64_t kMaxLaunchBlocks = int64_t(1) << 30;
  for (const Tensor& t : a.in) {
    const int64_t blocks = (t.numel() + kBlockElems - 1) / kBlockElems;
    COIL_INTERNAL_ASSERT(blocks <= kMaxLaunchBlocks, "sum_squares_multi tensor too large: ", t.describe());
    if (p.nt == kMaxSumTensors || nb + blocks > kMaxLaunchBlocks) flush();
    p.x[p.nt] = t.data<T>();
    p.n[p.nt] = t.numel();
    p.start[p.nt] = int32_t(nb);
    ++p.nt;
    nb += blocks;
  }
  flush();
}

}  // namespace

COIL_REGISTER_KERNEL(CUDA, AdamW, F32, adamw_launch<float>);
COIL_REGISTER_KERNEL(CUDA, AdamW, F64, adamw_launch<double>);
COIL_REGISTER_KERNEL(CUDA, AdamWMulti, F32, adamw_multi_launch<float>);
COIL_REGISTER_KERNEL(CUDA, AdamWMulti, F64, adamw_multi_launch<double>);
COIL_CUDA_FLOAT_KERNELS(SumSquaresMulti, sum_squares_multi_launch);

}  // namespace coil::cuda
