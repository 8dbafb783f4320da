// Row-wise model ops and their fused backwards: RMSNorm over the last dim, SwiGLU (elementwise) and
// Softmax over the last dim. Row ops see x as (M, C) with C the last dim; rows run in parallel, and
// every reduction inside a row accumulates in double in index order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

// RMSNorm: x (M, C), w (C); attrs.eps -> y (M, C) = x * rstd * w, rstd (M) = 1/sqrt(mean(x^2) + eps).
// rstd's dtype is its own (f32 for f32 inputs, f64 for f64).
template <typename T>
void rms_norm_kernel(const KernelArgs& a) {
  check_arity(a, 2, 2);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const int64_t C = last_dim(x), M = x.numel() / std::max<int64_t>(C, 1);
  COIL_INTERNAL_ASSERT(a.in[1].numel() == C && a.out[1].numel() == M, x.describe(), ", w ",
                       a.in[1].describe(), ", rstd ", a.out[1].describe());
  const T* px = x.data<T>();
  const T* pw = a.in[1].data<T>();
  T* py = a.out[0].data<T>();
  const Tensor& rstd = a.out[1];
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    const T* xr = px + i * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += double(xr[c]) * xr[c];
    const double r = 1.0 / std::sqrt(ss / double(C) + a.attrs.eps);
    for (int64_t c = 0; c < C; ++c) py[i * C + c] = T(double(xr[c]) * r * double(pw[c]));
    store_float(rstd, i, r);
  }
}

// RMSNormBackward: dy (M, C), x (M, C), w (C), rstd (M) -> dx (M, C), dw (C).
//   dx = rstd * (w * dy - x * rstd^2 * mean(dy * w * x)),   dw = sum over rows of dy * x * rstd.
template <typename T>
void rms_norm_backward_kernel(const KernelArgs& a) {
  check_arity(a, 4, 2);
  const Tensor& x = a.in[1];
  check_dtype<T>(x);
  const int64_t C = last_dim(x), M = x.numel() / std::max<int64_t>(C, 1);
  const T* pdy = a.in[0].data<T>();
  const T* px = x.data<T>();
  const T* pw = a.in[2].data<T>();
  const Tensor& rstd = a.in[3];
  T* pdx = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    const double r = load_float(rstd, i);
    double dot = 0.0;  // sum_c dy * w * x
    for (int64_t c = 0; c < C; ++c) dot += double(pdy[i * C + c]) * pw[c] * px[i * C + c];
    const double k = r * r * dot / double(C);
    for (int64_t c = 0; c < C; ++c)
      pdx[i * C + c] = T(r * (double(pw[c]) * pdy[i * C + c] - double(px[i * C + c]) * k));
  }
  // dw: rows in order, so the sum is deterministic.
  std::vector<double> dw(C, 0.0);
  for (int64_t i = 0; i < M; ++i) {
    const double r = load_float(rstd, i);
    for (int64_t c = 0; c < C; ++c) dw[c] += double(pdy[i * C + c]) * px[i * C + c] * r;
  }
  T* pdw = a.out[1].data<T>();
  for (int64_t c = 0; c < C; ++c) pdw[c] = T(dw[c]);
}

// AddRMSNorm: x, res (M, C), w (C); attrs.eps -> h = x + res (rounded to T, as Add rounds), then
// y = rms_norm(h) * w and rstd exactly as RMSNorm computes them from h.
template <typename T>
void add_rms_norm_kernel(const KernelArgs& a) {
  check_arity(a, 3, 3);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const int64_t C = last_dim(x), M = x.numel() / std::max<int64_t>(C, 1);
  COIL_INTERNAL_ASSERT(a.in[1].numel() == M * C && a.in[2].numel() == C && a.out[2].numel() == M, x.describe(),
                       ", res ", a.in[1].describe(), ", w ", a.in[2].describe(), ", rstd ", a.out[2].describe());
  const T* px = x.data<T>();
  const T* pr = a.in[1].data<T>();
  const T* pw = a.in[2].data<T>();
  T* ph = a.out[0].data<T>();
  T* py = a.out[1].data<T>();
  const Tensor& rstd = a.out[2];
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    T* hr = ph + i * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      hr[c] = T(double(px[i * C + c]) + double(pr[i * C + c]));
      ss += double(hr[c]) * hr[c];
    }
    const double r = 1.0 / std::sqrt(ss / double(C) + a.attrs.eps);
    for (int64_t c = 0; c < C; ++c) py[i * C + c] = T(double(hr[c]) * r * double(pw[c]));
    store_float(rstd, i, r);
  }
}

// AddRMSNormBackward: dy, dh (M, C), h (M, C), w (C), rstd (M) -> dx (M, C) = dres, dw (C). dh is the
// gradient reaching h from its other readers; dx = dh + (RMSNormBackward's dx rounded to T), the
// values of the unfused graph's gradient sum.
template <typename T>
void add_rms_norm_backward_kernel(const KernelArgs& a) {
  check_arity(a, 5, 2);
  const Tensor& h = a.in[2];
  check_dtype<T>(h);
  const int64_t C = last_dim(h), M = h.numel() / std::max<int64_t>(C, 1);
  const T* pdy = a.in[0].data<T>();
  const T* pdh = a.in[1].data<T>();
  const T* ph = h.data<T>();
  const T* pw = a.in[3].data<T>();
  const Tensor& rstd = a.in[4];
  T* pdx = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((h.numel()) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    const double r = load_float(rstd, i);
    double dot = 0.0;  // sum_c dy * w * h
    for (int64_t c = 0; c < C; ++c) dot += double(pdy[i * C + c]) * pw[c] * ph[i * C + c];
    const double k = r * r * dot / double(C);
    for (int64_t c = 0; c < C; ++c) {
      const T dn = T(r * (double(pw[c]) * pdy[i * C + c] - double(ph[i * C + c]) * k));
      pdx[i * C + c] = T(double(dn) + double(pdh[i * C + c]));
    }
  }
  std::vector<double> dw(C, 0.0);  // rows in order
  for (int64_t i = 0; i < M; ++i) {
    const double r = load_float(rstd, i);
    for (int64_t c = 0; c < C; ++c) dw[c] += double(pdy[i * C + c]) * ph[i * C + c] * r;
  }
  T* pdw = a.out[1].data<T>();
  for (int64_t c = 0; c < C; ++c) pdw[c] = T(dw[c]);
}

// SwiGLU: gate, up (same shape) -> y = silu(gate) * up.
template <typename T>
void swiglu_kernel(const KernelArgs& a) {
  check_arity(a, 2, 1);
  check_dtype<T>(a.in[0]);
  const T* pg = a.in[0].data<T>();
  const T* pu = a.in[1].data<T>();
  T* py = a.out[0].data<T>();
  const int64_t n = a.in[0].numel();
#pragma omp parallel for schedule(static) if (n > kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const double g = pg[i];
    py[i] = T(g * sigmoid(g) * double(pu[i]));
  }
}

// SwiGLUBackward: dy, gate, up -> dgate = dy * up * s * (1 + g * (1 - s)), dup = dy * g * s,
// with s = sigmoid(g).
template <typename T>
void swiglu_backward_kernel(const KernelArgs& a) {
  check_arity(a, 3, 2);
  check_dtype<T>(a.in[1]);
  const T* pdy = a.in[0].data<T>();
  const T* pg = a.in[1].data<T>();
  const T* pu = a.in[2].data<T>();
  T* pdg = a.out[0].data<T>();
  T* pdu = a.out[1].data<T>();
  const int64_t n = a.in[1].numel();
#pragma omp parallel for schedule(static) if (n > kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const double g = pg[i], dy = pdy[i], s = sigmoid(g);
    pdg[i] = T(dy * double(pu[i]) * s * (1.0 + g * (1.0 - s)));
    pdu[i] = T(dy * g * s);
  }
}

// Softmax over the last dim: x (M, n) -> y (M, n), the row max subtracted before exp.
template <typename T>
void softmax_kernel(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const int64_t n = last_dim(x), M = x.numel() / std::max<int64_t>(n, 1);
  const T* px = x.data<T>();
  T* py = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    const T* xr = px + i * n;
    T* yr = py + i * n;
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, double(xr[j]));
    std::vector<double> e(n);
    double total = 0.0;
    for (int64_t j = 0; j < n; ++j) total += (e[j] = std::exp(double(xr[j]) - mx));
    for (int64_t j = 0; j < n; ++j) yr[j] = T(e[j] / total);
  }
}

// SoftmaxBackward: dy (M, n), x (M, n) -> dx = y * (dy - sum_j dy_j y_j), y = softmax(x) recomputed in
// double (not read back from a rounded y: with bf16 y, dy - sum dy y cancels to y's rounding error).
template <typename T>
void softmax_backward_kernel(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& x = a.in[1];
  check_dtype<T>(x);
  const int64_t n = last_dim(x), M = x.numel() / std::max<int64_t>(n, 1);
  const T* pdy = a.in[0].data<T>();
  const T* px = x.data<T>();
  T* pdx = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    const T* xr = px + i * n;
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, double(xr[j]));
    std::vector<double> y(n);
    double total = 0.0;
    for (int64_t j = 0; j < n; ++j) total += (y[size_t(j)] = std::exp(double(xr[j]) - mx));
    double dot = 0.0;
    for (int64_t j = 0; j < n; ++j) dot += double(pdy[i * n + j]) * (y[size_t(j)] /= total);
    for (int64_t j = 0; j < n; ++j) pdx[i * n + j] = T(y[size_t(j)] * (double(pdy[i * n + j]) - dot));
  }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(RMSNorm, rms_norm_kernel);
COIL_CPU_FLOAT_KERNELS(RMSNormBackward, rms_norm_backward_kernel);
COIL_CPU_FLOAT_KERNELS(AddRMSNorm, add_rms_norm_kernel);
COIL_CPU_FLOAT_KERNELS(AddRMSNormBackward, add_rms_norm_backward_kernel);
COIL_CPU_FLOAT_KERNELS(SwiGLU, swiglu_kernel);
COIL_CPU_FLOAT_KERNELS(SwiGLUBackward, swiglu_backward_kernel);
COIL_CPU_FLOAT_KERNELS(Softmax, softmax_kernel);
COIL_CPU_FLOAT_KERNELS(SoftmaxBackward, softmax_backward_kernel);

}  // namespace coil::cpu
