// Causal depthwise 1-D convolution over time, any kernel width W >= 1, and its backward.
// x, y (B, T, C); w (C, W); b (C). Tap k of channel c reads time t - (W-1) + k (so tap W-1 is the
// current step); times before 0 read zero. Reductions over (B, T) for dw and db run in order.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

struct ConvShape {
  int64_t B, T, C, W;
};
inline ConvShape conv_shape(const Tensor& x, const Tensor& w) {
  COIL_INTERNAL_ASSERT(x.dim() == 3 && w.dim() == 2 && w.size(0) == x.size(2) && w.size(1) >= 1,
                       "conv1d x ", x.describe(), ", w ", w.describe());
  return {x.size(0), x.size(1), x.size(2), w.size(1)};
}

// Conv1d: x (B, T, C), w (C, W), b (C) -> y (B, T, C),
//   y[b, t, c] = b[c] + sum_k w[c, k] * x[b, t - (W-1) + k, c].
template <typename T>
void conv1d_kernel(const KernelArgs& a) {
  check_arity(a, 3, 1);
  check_dtype<T>(a.in[0]);
  const ConvShape s = conv_shape(a.in[0], a.in[1]);
  const T* x = a.in[0].data<T>();
  const T* w = a.in[1].data<T>();
  const T* bias = a.in[2].data<T>();
  T* y = a.out[0].data<T>();
#pragma omp parallel for collapse(2) schedule(static) if ((a.in[0].numel() * a.in[1].size(1)) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t c = 0; c < s.C; ++c) {
        double acc = bias[c];
        for (int64_t k = 0; k < s.W; ++k) {
          const int64_t src = t - (s.W - 1) + k;
          if (src >= 0) acc += double(w[c * s.W + k]) * x[(b * s.T + src) * s.C + c];
        }
        y[(b * s.T + t) * s.C + c] = T(acc);
      }
    }
  }
}

// Conv1dBackward: dy (B, T, C), x (B, T, C), w (C, W) -> dx (B, T, C), dw (C, W), db (C).
//   dx[b, u, c] = sum_k w[c, k] dy[b, u + (W-1) - k, c]   (terms past T dropped)
//   dw[c, k] = sum_{b, t} dy[b, t, c] x[b, t - (W-1) + k, c],   db[c] = sum_{b, t} dy[b, t, c]
template <typename T>
void conv1d_backward_kernel(const KernelArgs& a) {
  check_arity(a, 3, 3);
  check_dtype<T>(a.in[1]);
  const ConvShape s = conv_shape(a.in[1], a.in[2]);
  const T* dy = a.in[0].data<T>();
  const T* x = a.in[1].data<T>();
  const T* w = a.in[2].data<T>();
  T* dx = a.out[0].data<T>();
#pragma omp parallel for collapse(2) schedule(static) if ((a.in[1].numel() * a.in[2].size(1)) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t u = 0; u < s.T; ++u) {
      for (int64_t c = 0; c < s.C; ++c) {
        double acc = 0.0;
        for (int64_t k = 0; k < s.W; ++k) {
          const int64_t t = u + (s.W - 1) - k;
          if (t < s.T) acc += double(w[c * s.W + k]) * dy[(b * s.T + t) * s.C + c];
        }
        dx[(b * s.T + u) * s.C + c] = T(acc);
      }
    }
  }
  std::vector<double> dw(s.C * s.W, 0.0), db(s.C, 0.0);  // (C, W), (C)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t t = 0; t < s.T; ++t) {
      const T* dyr = dy + (b * s.T + t) * s.C;
      for (int64_t c = 0; c < s.C; ++c) db[c] += dyr[c];
      for (int64_t k = 0; k < s.W; ++k) {
        const int64_t src = t - (s.W - 1) + k;
        if (src < 0) continue;
        const T* xr = x + (b * s.T + src) * s.C;
        for (int64_t c = 0; c < s.C; ++c) dw[c * s.W + k] += double(dyr[c]) * xr[c];
      }
    }
  }
  T* pdw = a.out[1].data<T>();
  T* pdb = a.out[2].data<T>();
  for (int64_t i = 0; i < s.C * s.W; ++i) pdw[i] = T(dw[i]);
  for (int64_t c = 0; c < s.C; ++c) pdb[c] = T(db[c]);
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(Conv1d, conv1d_kernel);
COIL_CPU_FLOAT_KERNELS(Conv1dBackward, conv1d_backward_kernel);

}  // namespace coil::cpu
