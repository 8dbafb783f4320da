// AdamW on CUDA, in place on param, grad, m, v (same shape, contiguous, f32 or f64); KernelArgs::out
// is empty. The update is kernels/cpu/optim.cpp's, in the parameter's precision: decoupled weight
// decay from the old parameter, then the bias-corrected Adam step. The bias corrections are computed
// once on the host in fp64.
// AdamW updates one tensor per launch; AdamWMulti packs many: a launch takes up to kMaxTensors
// tensors and kMaxChunks chunks of kChunk elements (their pointers and the chunk -> tensor map travel
// as the kernel's parameter, under the 4 KiB limit, so nothing is copied to the device first). Both
// kernels call the same adamw_update, so the values are bit for bit the same. The packing saves the
// launches (~180 per 2Mamba-small step one by one) but, at kMaxChunks blocks per launch, keeps too few
// threads in flight: 6.9 ms per step's update against 3.8 ms one by one (bench/step_ops_bench.cpp,
// 2026-11-24, H100), so AdamW::step does not use it yet; the next form should map blocks to tensors
// through per-tensor start offsets (any number of blocks per launch) instead of a per-block table.
#include <cmath>

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

template <typename T>
__device__ __forceinline__ void adamw_update(T* p, const T* g, T* m, T* v, int64_t i, const AdamWConsts<T>& k) {
  const T gi = g[i];
  const T mi = add_rn(mul_rn(k.beta1, m[i]), mul_rn(sub_rn(T(1), k.beta1), gi));
  const T vi = add_rn(mul_rn(k.beta2, v[i]), mul_rn(mul_rn(sub_rn(T(1), k.beta2), gi), gi));
  const T mhat = mi / k.bc1, vhat = vi / k.bc2;
  p[i] = sub_rn(mul_rn(p[i], k.decay), mul_rn(k.lr, mhat) / add_rn(m_sqrt(vhat), k.eps));
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
constexpr int kMaxTensors = 24;
constexpr int kMaxChunks = 192;
constexpr int64_t kChunk = int64_t(1) << 16;  // elements per block

template <typename T>
struct AdamWMultiParams {
  T* p[kMaxTensors];
  const T* g[kMaxTensors];
  T* m[kMaxTensors];
  T* v[kMaxTensors];
  int64_t n[kMaxTensors];
  uint8_t tensor[kMaxChunks];  // block b updates chunk chunk[b] of tensor tensor[b]
  int32_t chunk[kMaxChunks];
  AdamWConsts<T> k;
};
static_assert(sizeof(AdamWMultiParams<double>) <= 4000, "kernel parameters are limited to 4 KiB");

template <typename T>
__global__ void adamw_multi_kernel(AdamWMultiParams<T> p) {
  const int t = p.tensor[blockIdx.x];
  const int64_t i0 = int64_t(p.chunk[blockIdx.x]) * kChunk, i1 = min(p.n[t], i0 + kChunk);
  for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) adamw_update(p.p[t], p.g[t], p.m[t], p.v[t], i, p.k);
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
  int nt = 0, nb = 0;
  auto flush = [&]() {
    if (nb > 0) {
      adamw_multi_kernel<T><<<unsigned(nb), kThreads, 0, ctx.stream>>>(p);
      COIL_CUDA_CHECK_LAUNCH("adamw_multi_kernel");
    }
    nt = 0;
    nb = 0;
  };
  for (size_t q = 0; q < a.in.size() / 4; ++q) {
    const Tensor* in = &a.in[4 * q];
    for (int j = 1; j < 4; ++j)
      COIL_INTERNAL_ASSERT(in[j].shape() == in[0].shape(), "adamw_multi tensors ", in[0].describe(), " vs ",
                           in[j].describe());
    const int64_t n = in[0].numel();
    if (n == 0) continue;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    COIL_INTERNAL_ASSERT(chunks <= INT32_MAX, "adamw_multi tensor too large: ", in[0].describe());
    for (int64_t c = 0; c < chunks; ++c) {
      if (nb == kMaxChunks) {  // launch full; the tensor continues in the next launch
        const int last = nt - 1;
        T* pp = p.p[last];
        const T* pg = p.g[last];
        T* pm = p.m[last];
        T* pv = p.v[last];
        const int64_t pn = p.n[last];
        flush();
        p.p[0] = pp, p.g[0] = pg, p.m[0] = pm, p.v[0] = pv, p.n[0] = pn;
        nt = 1;
      }
      if (c == 0) {
        if (nt == kMaxTensors) flush();
        p.p[nt] = in[0].data<T>();
        p.g[nt] = in[1].data<T>();
        p.m[nt] = in[2].data<T>();
        p.v[nt] = in[3].data<T>();
        p.n[nt] = n;
        ++nt;
      }
      p.tensor[nb] = uint8_t(nt - 1);
      p.chunk[nb] = int32_t(c);
      ++nb;
    }
  }
  flush();
}

}  // namespace

COIL_REGISTER_KERNEL(CUDA, AdamW, F32, adamw_launch<float>);
COIL_REGISTER_KERNEL(CUDA, AdamW, F64, adamw_launch<double>);
COIL_REGISTER_KERNEL(CUDA, AdamWMulti, F32, adamw_multi_launch<float>);
COIL_REGISTER_KERNEL(CUDA, AdamWMulti, F64, adamw_multi_launch<double>);

}  // namespace coil::cuda
