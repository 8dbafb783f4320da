// Reductions over one dimension: the contiguous input is seen as (outer, n, inner) around attrs.dim and
// the output keeps that dim with size 1 (Cumsum keeps the full shape). Sums accumulate in double in
// index order, so results do not depend on the thread count. SumSquares reduces everything to ().
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

// Sum (mean when `mean`) over dim: x (outer, n, inner) -> y (outer, 1, inner).
template <typename T, bool kMean>
void sum_impl(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  COIL_INTERNAL_ASSERT(a.out[0].numel() == v.outer * v.inner, x.describe(), " -> ",
                       a.out[0].describe());
  const T* px = x.data<T>();
  T* py = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t o = 0; o < v.outer; ++o) {
    std::vector<double> acc(v.inner, 0.0);  // (inner)
    for (int64_t j = 0; j < v.n; ++j) {
      const T* row = px + (o * v.n + j) * v.inner;
      for (int64_t i = 0; i < v.inner; ++i) acc[i] += double(row[i]);
    }
    for (int64_t i = 0; i < v.inner; ++i)
      py[o * v.inner + i] = T(kMean ? acc[i] / double(v.n) : acc[i]);
  }
}
template <typename T>
void sum_kernel(const KernelArgs& a) { sum_impl<T, false>(a); }
template <typename T>
void mean_kernel(const KernelArgs& a) { sum_impl<T, true>(a); }

// True when x is a better maximum than the current best: larger, or NaN (NaN propagates, as in torch).
template <typename T>
bool beats(T x, T best) { return x > best || (std::isnan(x) && !std::isnan(best)); }

// Max over dim: x (outer, n, inner) -> y (outer, 1, inner).
template <typename T>
void max_kernel(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  COIL_INTERNAL_ASSERT(v.n > 0, "max over an empty dim of ", x.describe());
  const T* px = x.data<T>();
  T* py = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t i = 0; i < v.inner; ++i) {
      T best = px[o * v.n * v.inner + i];
      for (int64_t j = 1; j < v.n; ++j) {
        const T xj = px[(o * v.n + j) * v.inner + i];
        if (beats(xj, best)) best = xj;
      }
      py[o * v.inner + i] = best;
    }
  }
}

// MaxBackward: in dy (outer, 1, inner), x (outer, n, inner), y (outer, 1, inner) -> dx (outer, n, inner).
// The whole gradient goes to the first index along dim where x equals the max (ties: first wins).
template <typename T>
void max_backward_kernel(const KernelArgs& a) {
  check_arity(a, 3, 1);
  const Tensor& x = a.in[1];
  check_dtype<T>(x);
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  const T* pdy = a.in[0].data<T>();
  const T* px = x.data<T>();
  const T* py = a.in[2].data<T>();
  T* pdx = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t i = 0; i < v.inner; ++i) {
      const T ymax = py[o * v.inner + i];
      bool routed = false;
      for (int64_t j = 0; j < v.n; ++j) {
        const int64_t k = (o * v.n + j) * v.inner + i;
        const bool hit = !routed && (px[k] == ymax || (std::isnan(px[k]) && std::isnan(ymax)));
        pdx[k] = hit ? pdy[o * v.inner + i] : T(0);
        routed = routed || hit;
      }
    }
  }
}

// Cumsum along dim (attrs.reverse: suffix sums): x (outer, n, inner) -> y (outer, n, inner).
template <typename T>
void cumsum_kernel(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  const bool reverse = a.attrs.reverse;
  const T* px = x.data<T>();
  T* py = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t o = 0; o < v.outer; ++o) {
    std::vector<double> acc(v.inner, 0.0);  // (inner)
    for (int64_t step = 0; step < v.n; ++step) {
      const int64_t j = reverse ? v.n - 1 - step : step;
      const int64_t base = (o * v.n + j) * v.inner;
      for (int64_t i = 0; i < v.inner; ++i) {
        acc[i] += double(px[base + i]);
        py[base + i] = T(acc[i]);
      }
    }
  }
}

// SumSquares: x (any shape, contiguous) -> () = sum of x^2. Partial sums over fixed-size chunks are
// added in chunk order, so the result is the same for any thread count.
template <typename T>
void sum_squares_kernel(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const T* px = x.data<T>();
  const int64_t n = x.numel();
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    double s = 0.0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) s += double(px[i]) * px[i];
    partial[c] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  store_float(a.out[0], 0, total);  // out's own dtype (f32 or f64)
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(Sum, sum_kernel);
COIL_CPU_FLOAT_KERNELS(Mean, mean_kernel);
COIL_CPU_FLOAT_KERNELS(Max, max_kernel);
COIL_CPU_FLOAT_KERNELS(MaxBackward, max_backward_kernel);
COIL_CPU_FLOAT_KERNELS(Cumsum, cumsum_kernel);
COIL_CPU_FLOAT_KERNELS(SumSquares, sum_squares_kernel);

}  // namespace coil::cpu
