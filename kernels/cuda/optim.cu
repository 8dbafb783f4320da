// AdamW on CUDA, in place on param, grad, m, v (same shape, contiguous, f32 or f64); KernelArgs::out
// is empty. The update is kernels/cpu/optim.cpp's, in the parameter's precision: decoupled weight
// decay from the old parameter, then the bias-corrected Adam step. The bias corrections are computed
// once on the host in fp64. One tensor per launch (a multi-tensor version comes later).
#include <cmath>

#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

template <typename T>
struct AdamWParams {
  T* p;        // (n) parameter
  const T* g;  // (n) gradient
  T* m;        // (n) first moment
  T* v;        // (n) second moment
  int64_t n;
  T lr, beta1, beta2, eps;
  T decay;     // 1 - lr * weight_decay
  T bc1, bc2;  // 1 - beta^step
};

__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }

template <typename T>
__global__ void adamw_kernel(AdamWParams<T> p) {
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) {
    const T gi = p.g[i];
    const T mi = p.beta1 * p.m[i] + (T(1) - p.beta1) * gi;
    const T vi = p.beta2 * p.v[i] + (T(1) - p.beta2) * gi * gi;
    const T mhat = mi / p.bc1, vhat = vi / p.bc2;
    p.p[i] = p.p[i] * p.decay - p.lr * mhat / (m_sqrt(vhat) + p.eps);
    p.m[i] = mi;
    p.v[i] = vi;
  }
}

template <typename T>
void adamw_launch(const KernelArgs& a) {
  check_arity(a, 4, 0);
  for (const Tensor& t : a.in) {
    check_tensor<T>(t);
    COIL_INTERNAL_ASSERT(t.shape() == a.in[0].shape() && t.is_contiguous(), "adamw tensors ",
                         a.in[0].describe(), " vs ", t.describe());
  }
  const OpAttrs& at = a.attrs;
  COIL_INTERNAL_ASSERT(at.step >= 1, "adamw step is 1-based, got ", at.step);
  AdamWParams<T> p{a.in[0].data<T>(), a.in[1].data<T>(), a.in[2].data<T>(), a.in[3].data<T>(),
                   a.in[0].numel(), T(at.lr), T(at.beta1), T(at.beta2), T(at.eps),
                   T(1.0 - at.lr * at.weight_decay), T(1.0 - std::pow(at.beta1, double(at.step))),
                   T(1.0 - std::pow(at.beta2, double(at.step)))};
  if (p.n == 0) return;
  LaunchContext ctx(a.in[0]);
  adamw_kernel<T><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace

COIL_REGISTER_KERNEL(CUDA, AdamW, F32, adamw_launch<float>);
COIL_REGISTER_KERNEL(CUDA, AdamW, F64, adamw_launch<double>);

}  // namespace coil::cuda
