// AdamW, in place on param, grad, m, v (same shape, contiguous, f32 or f64); KernelArgs::out is empty;
// and SumSquaresMulti, the squared norms of many tensors (the global gradient norm) in one op.
// Decoupled weight decay is applied first, from the old parameter (as PyTorch does), then the
// bias-corrected Adam update. Each element is independent, so threads never share a write.
#include <algorithm>
#include <cmath>
#include <vector>

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

// SumSquaresMulti: in x_0..x_{n-1} -> out (n), each tensor's sum of squares exactly as SumSquares
// computes it (fixed-size chunks added in order, in double, rounded once to out's dtype), so the
// result does not depend on the thread count and equals n SumSquares calls.
template <typename T>
void sum_squares_multi_kernel(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT(a.out.size() == 1 && a.out[0].numel() == int64_t(a.in.size()),
                       "sum_squares_multi: one (n) output for n inputs");
  for (size_t t = 0; t < a.in.size(); ++t) {
    const Tensor& x = a.in[t];
    check_dtype<T>(x);
    const T* px = x.data<T>();
    const int64_t n = x.numel();
    constexpr int64_t kChunk = 1 << 14;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(size_t(chunks), 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      double s = 0.0;
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) s += double(px[i]) * px[i];
      partial[size_t(c)] = s;
    }
    double total = 0.0;
    for (double s : partial) total += s;
    store_float(a.out[0], int64_t(t), total);  // out's own dtype (f32 or f64)
  }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(AdamW, adamw_kernel);
COIL_CPU_FLOAT_KERNELS(SumSquaresMulti, sum_squares_multi_kernel);
COIL_CPU_FLOAT_KERNELS(AdamWMulti, adamw_multi_kernel);

}  // namespace coil::cpu
