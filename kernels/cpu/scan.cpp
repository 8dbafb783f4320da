// Mamba-1 selective scan (ops SelectiveScan / SelectiveScanBackward, contract in core/op_list.h), plain
// loops in double: the oracle of the CUDA kernels. Layouts: u, dt, y (B, T, D), A (D, N), Bm, Cm
// (B, T, N), h0, hT (B, D, N), hc (B, nc, D, N), all contiguous; dt, A, h0, hT, hc in the statistics
// dtype (the input dtype here: f32 or f64).
//
// Forward per (b, d), for every state n: h_t = a_t h_{t-1} + x_t Bm_t with a_t = exp(dt_t A) and
// x_t = dt_t u_t; y_t = sum_n h_t Cm_t. hc holds h entering every kSelectiveScanChunk-token chunk.
// Backward, a reverse scan with g = dL/dh_t (starting at dhT):
//   g += dy_t Cm_t;  dCm_t += dy_t h_t;  dBm_t += g x_t;  dx_t = sum_n g Bm_t;
//   du_t = dt_t dx_t;  ddt_t = u_t dx_t + sum_n g h_{t-1} a_t A;  dA += g h_{t-1} a_t dt_t;  g *= a_t,
// and dh0 = g at the end. The states are recomputed from h0 (hc's first chunk) in double. Threads
// split the batch (every thread owns its rows of dBm, dCm and a partial dA), so the sums over D and B
// run in a fixed order: the results do not depend on the thread count.
#include <cmath>
#include <vector>

#include "core/ops.h"
#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

struct Dims {
  int64_t B, T, D, N, nc;
  int64_t td(int64_t b, int64_t t, int64_t d) const { return (b * T + t) * D + d; }
  int64_t tn(int64_t b, int64_t t, int64_t n) const { return (b * T + t) * N + n; }
  int64_t dn(int64_t b, int64_t d, int64_t n) const { return (b * D + d) * N + n; }
  int64_t hc(int64_t b, int64_t c, int64_t d, int64_t n) const { return ((b * nc + c) * D + d) * N + n; }
};

Dims dims_of(const Tensor& u, const Tensor& A) {
  COIL_INTERNAL_ASSERT(u.dim() == 3 && A.dim() == 2, "expected u (B, T, D), A (D, N), got ", u.describe(), ", ",
                       A.describe());
  const int64_t T = u.size(1);
  return {u.size(0), T, u.size(2), A.size(1), (T + kSelectiveScanChunk - 1) / kSelectiveScanChunk};
}

template <typename T>
void scan_kernel(const KernelArgs& a) {
  check_arity(a, 6, 3);
  check_dtype<T>(a.in[0]);
  const Dims s = dims_of(a.in[0], a.in[2]);
  const T *u = a.in[0].data<T>(), *dt = a.in[1].data<T>(), *A = a.in[2].data<T>();
  const T *Bm = a.in[3].data<T>(), *Cm = a.in[4].data<T>();
  const T* h0 = a.in[5].defined() ? a.in[5].data<T>() : nullptr;
  T *y = a.out[0].data<T>(), *hT = a.out[1].data<T>(), *hc = a.out[2].data<T>();
#pragma omp parallel for collapse(2) schedule(static) if ((s.B * s.T * s.D * s.N) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t d = 0; d < s.D; ++d) {
      std::vector<double> h(size_t(s.N), 0.0);
      if (h0)
        for (int64_t n = 0; n < s.N; ++n) h[size_t(n)] = h0[s.dn(b, d, n)];
      for (int64_t t = 0; t < s.T; ++t) {
        if (t % kSelectiveScanChunk == 0)
          for (int64_t n = 0; n < s.N; ++n) hc[s.hc(b, t / kSelectiveScanChunk, d, n)] = T(h[size_t(n)]);
        const double dtv = dt[s.td(b, t, d)], x = dtv * double(u[s.td(b, t, d)]);
        double acc = 0.0;
        for (int64_t n = 0; n < s.N; ++n) {
          double& hn = h[size_t(n)];
          hn = std::exp(dtv * double(A[d * s.N + n])) * hn + x * double(Bm[s.tn(b, t, n)]);
          acc += hn * double(Cm[s.tn(b, t, n)]);
        }
        y[s.td(b, t, d)] = T(acc);
      }
      for (int64_t n = 0; n < s.N; ++n) hT[s.dn(b, d, n)] = T(h[size_t(n)]);
    }
  }
}

template <typename T>
void scan_backward_kernel(const KernelArgs& a) {
  check_arity(a, 8, 6);
  check_dtype<T>(a.in[2]);
  const Dims s = dims_of(a.in[2], a.in[4]);
  const T *dy = a.in[0].data<T>(), *dhT = a.in[1].defined() ? a.in[1].data<T>() : nullptr;
  const T *u = a.in[2].data<T>(), *dt = a.in[3].data<T>(), *A = a.in[4].data<T>();
  const T *Bm = a.in[5].data<T>(), *Cm = a.in[6].data<T>(), *hc = a.in[7].data<T>();
  T *du = a.out[0].data<T>(), *ddt = a.out[1].data<T>(), *dA = a.out[2].data<T>();
  T *dBm = a.out[3].data<T>(), *dCm = a.out[4].data<T>(), *dh0 = a.out[5].data<T>();
  std::vector<double> dA_part(size_t(s.B * s.D * s.N), 0.0);  // per batch row, summed in order below
#pragma omp parallel for schedule(static) if ((s.B * s.T * s.D * s.N) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    std::vector<double> hs(size_t((s.T + 1) * s.N)), g(size_t(s.N));
    std::vector<double> dB(size_t(s.T * s.N), 0.0), dC(size_t(s.T * s.N), 0.0);
    for (int64_t d = 0; d < s.D; ++d) {
      // hs row t + 1 = h_t; row 0 = h0.
      for (int64_t n = 0; n < s.N; ++n) hs[size_t(n)] = hc[s.hc(b, 0, d, n)];
      for (int64_t t = 0; t < s.T; ++t) {
        const double dtv = dt[s.td(b, t, d)], x = dtv * double(u[s.td(b, t, d)]);
        for (int64_t n = 0; n < s.N; ++n)
          hs[size_t((t + 1) * s.N + n)] = std::exp(dtv * double(A[d * s.N + n])) * hs[size_t(t * s.N + n)] +
                                         x * double(Bm[s.tn(b, t, n)]);
      }
      for (int64_t n = 0; n < s.N; ++n) g[size_t(n)] = dhT ? double(dhT[s.dn(b, d, n)]) : 0.0;
      double* dAb = &dA_part[size_t((b * s.D + d) * s.N)];
      for (int64_t t = s.T - 1; t >= 0; --t) {
        const double dtv = dt[s.td(b, t, d)], uv = u[s.td(b, t, d)], x = dtv * uv;
        const double dyv = dy[s.td(b, t, d)];
        double dx = 0.0, ddt_decay = 0.0;
        for (int64_t n = 0; n < s.N; ++n) {
          const double An = A[d * s.N + n], at = std::exp(dtv * An), hprev = hs[size_t(t * s.N + n)];
          double& gn = g[size_t(n)];
          gn += dyv * double(Cm[s.tn(b, t, n)]);
          dC[size_t(t * s.N + n)] += dyv * hs[size_t((t + 1) * s.N + n)];
          dB[size_t(t * s.N + n)] += gn * x;
          dx += gn * double(Bm[s.tn(b, t, n)]);
          const double da = gn * hprev * at;  // dL/d(dt A) of this state
          ddt_decay += da * An;
          dAb[n] += da * dtv;
          gn *= at;
        }
        du[s.td(b, t, d)] = T(dtv * dx);
        ddt[s.td(b, t, d)] = T(uv * dx + ddt_decay);
      }
      for (int64_t n = 0; n < s.N; ++n) dh0[s.dn(b, d, n)] = T(g[size_t(n)]);
    }
    for (int64_t i = 0; i < s.T * s.N; ++i) {
      dBm[b * s.T * s.N + i] = T(dB[size_t(i)]);
      dCm[b * s.T * s.N + i] = T(dC[size_t(i)]);
    }
  }
  for (int64_t i = 0; i < s.D * s.N; ++i) {
    double acc = 0.0;
    for (int64_t b = 0; b < s.B; ++b) acc += dA_part[size_t(b * s.D * s.N + i)];
    dA[i] = T(acc);
  }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(SelectiveScan, scan_kernel);
COIL_CPU_FLOAT_KERNELS(SelectiveScanBackward, scan_backward_kernel);

}  // namespace coil::cpu
