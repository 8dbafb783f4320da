// AdamW, in place on param, grad, m, v (same shape, contiguous, f32 or f64); KernelArgs::out is empty.
// Decoupled weight decay is applied first, from the old parameter (as PyTorch does), then the
// bias-corrected Adam update. Each element is independent, so threads never share a write.
#include <cmath>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

// The update of one (param, grad, m, v) quadruple, in[q * 4 .. q * 4 + 3].
template <typename T>
void adamw_update(const KernelArgs& a, size_t q) {
  const Tensor* in = &a.in[4 * q];
  for (int j = 0; j < 4; ++j) {
    check_dtype<T>(in[j]);
    COIL_INTERNAL_ASSERT(in[j].shape() == in[0].shape(), "adamw tensors ", in[0].describe(), " vs ",
                         in[j].describe());
  }
  const OpAttrs& at = a.attrs;
  COIL_INTERNAL_ASSERT(at.step >= 1, "adamw step is 1-based, got ", at.step);
  T* p = in[0].data<T>();
  const T* g = in[1].data<T>();
  T* m = in[2].data<T>();
  T* v = in[3].data<T>();
  const double bc1 = 1.0 - std::pow(at.beta1, double(at.step));  // bias corrections
  const double bc2 = 1.0 - std::pow(at.beta2, double(at.step));
  const double decay = 1.0 - at.lr * at.weight_decay;
  const int64_t n = in[0].numel();
#pragma omp parallel for schedule(static) if (n > kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g[i];
    const double mi = at.beta1 * double(m[i]) + (1.0 - at.beta1) * gi;
    const double vi = at.beta2 * double(v[i]) + (1.0 - at.beta2) * gi * gi;
    const double mhat = mi / bc1, vhat = vi / bc2;
    p[i] = T(double(p[i]) * decay - at.lr * mhat / (std::sqrt(vhat) + at.eps));
    m[i] = T(mi);
    v[i] = T(vi);
  }
}

template <typename T>
void adamw_kernel(const KernelArgs& a) {
  check_arity(a, 4, 0);
  adamw_update<T>(a, 0);
}

// AdamWMulti: each quadruple exactly as AdamW updates it.
template <typename T>
void adamw_multi_kernel(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT(a.in.size() % 4 == 0 && a.out.empty(),
                       "adamw_multi takes (param, grad, m, v) quadruples, got ", a.in.size(), " inputs");
  for (size_t q = 0; q < a.in.size() / 4; ++q) adamw_update<T>(a, q);
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(AdamW, adamw_kernel);
COIL_CPU_FLOAT_KERNELS(AdamWMulti, adamw_multi_kernel);

}  // namespace coil::cpu
