// AttentionDecode: the decode step of softmax attention, q (B, 1, H, D) over the K/V cache k, v
// (B, P, H, D), every key visible -> o (B, 1, H, D), all contiguous. Scores, the softmax and the output
// sums are computed in double, as kernels/cpu/attention.cpp does for a query row, and rounded once.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

template <typename T>
void attention_decode_kernel(const KernelArgs& a) {
  check_arity(a, 3, 1);
  const Tensor &qt = a.in[0], &kt = a.in[1], &vt = a.in[2];
  for (const Tensor* t : {&qt, &kt, &vt, &a.out[0]}) check_dtype<T>(*t);
  COIL_INTERNAL_ASSERT(qt.dim() == 4 && qt.size(1) == 1 && kt.dim() == 4 && vt.shape() == kt.shape() &&
                           kt.size(0) == qt.size(0) && kt.size(2) == qt.size(2) && kt.size(3) == qt.size(3),
                       "attention_decode q ", qt.describe(), ", k ", kt.describe(), ", v ", vt.describe());
  const int64_t B = qt.size(0), H = qt.size(2), D = qt.size(3), P = kt.size(1);
  const T* q = qt.data<T>();
  const T* k = kt.data<T>();
  const T* v = vt.data<T>();
  T* o = a.out[0].data<T>();
  const double scale = a.attrs.scale;
#pragma omp parallel for collapse(2) schedule(static) if ((B * H * P * D) > kMinParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const T* qi = q + (b * H + h) * D;
      std::vector<double> p(static_cast<size_t>(P));  // scores, then probabilities
      double mx = -INFINITY;
      for (int64_t j = 0; j < P; ++j) {
        const T* kj = k + ((b * P + j) * H + h) * D;
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * kj[d];
        p[size_t(j)] = scale * dot;
        mx = std::max(mx, p[size_t(j)]);
      }
      double total = 0.0;
      for (int64_t j = 0; j < P; ++j) total += std::exp(p[size_t(j)] - mx);
      const double l = mx + std::log(total);
      std::vector<double> acc(static_cast<size_t>(D), 0.0);
      for (int64_t j = 0; j < P; ++j) {
        const double pj = std::exp(p[size_t(j)] - l);
        const T* vj = v + ((b * P + j) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += pj * vj[d];
      }
      T* oi = o + (b * H + h) * D;
      for (int64_t d = 0; d < D; ++d) oi[d] = T(acc[size_t(d)]);
    }
  }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(AttentionDecode, attention_decode_kernel);

}  // namespace coil::cpu
