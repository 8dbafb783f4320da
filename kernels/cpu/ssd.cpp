// Mamba-2 SSD in chunks (ops SsdChunked / SsdChunkedBackward, contract in core/op_list.h), plain loops
// accumulating in double: the oracle of the CUDA kernels. Layouts: q, k (B, G, T, N) with G in {1, H}
// (head h reads group h / (H / G)), v, y (B, H, T, P), a (B, H, T), s0, sT (B, H, P, N), sc (B, H, nc, P,
// N), all contiguous; a and the states in the statistics dtype (the input dtype here: f32 or f64).
//
// Per (b, h) and chunk c of L <= C tokens, with b_i the cumsum of a inside the chunk, b_L its last
// value and S the state entering the chunk:
//   y_i = sum_{j <= i} (q_i . k_j) e^{b_i - b_j} v_j + e^{b_i} S q_i,
//   S'  = e^{b_L} S + sum_j e^{b_L - b_j} v_j k_j^T.
// The backward walks the chunks in reverse with D = dL/dS' (starting at dsT) and the saved S:
//   intra:   W_ij = (q_i.k_j) e^{b_i - b_j} (dy_i.v_j): db_i += W_ij, db_j -= W_ij;
//            dq_i += e^{b_i-b_j} (dy_i.v_j) k_j, dk_j += e^{b_i-b_j} (dy_i.v_j) q_i, dv_j += (q_i.k_j) e^{b_i-b_j} dy_i;
//   readout: dq_i += e^{b_i} S^T dy_i, db_i += e^{b_i} dy_i . S q_i, dS += e^{b_i} dy_i q_i^T;
//   state:   u_j = e^{b_L - b_j} v_j^T D k_j: db_j -= u_j, db_L += u_j + e^{b_L} <D, S>;
//            dv_j += e^{b_L - b_j} D k_j, dk_j += e^{b_L - b_j} D^T v_j, dS += e^{b_L} D;
// then da is the reverse cumsum of db inside the chunk and D = dS for the chunk before; ds0 = D at the
// start. Exponents are only formed for j <= i (the mask comes before exp). Threads split (b, h); dq and
// dk of a shared group (G = 1) are summed over heads afterwards in head order, so the results do not
// depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

struct Dims {
  int64_t B, H, G, T, N, P, C, nc;
  int64_t grp(int64_t h) const { return h / (H / G); }
  int64_t qk(int64_t b, int64_t h, int64_t t) const { return ((b * G + grp(h)) * T + t) * N; }  // row of q, k
  int64_t vp(int64_t b, int64_t h, int64_t t) const { return ((b * H + h) * T + t) * P; }       // row of v, y
  int64_t st(int64_t b, int64_t h) const { return (b * H + h) * P * N; }
  int64_t sc(int64_t b, int64_t h, int64_t c) const { return ((b * H + h) * nc + c) * P * N; }
};

Dims dims_of(const KernelArgs& a, const Tensor& q, const Tensor& v) {
  COIL_INTERNAL_ASSERT(q.dim() == 4 && v.dim() == 4 && a.attrs.dim > 0, "ssd_chunked: expected q (B, G, T, N), "
                       "v (B, H, T, P) and a positive chunk, got ", q.describe(), ", ", v.describe(), ", chunk ",
                       a.attrs.dim);
  const int64_t T = v.size(2), C = a.attrs.dim;
  return {v.size(0), v.size(1), q.size(1), T, q.size(3), v.size(3), C, (T + C - 1) / C};
}

// Chunk-local cumsum of a for the chunk starting at t0 (L tokens).
template <typename T>
void local_cumsum(const T* a, int64_t L, std::vector<double>& bcs) {
  double acc = 0.0;
  for (int64_t i = 0; i < L; ++i) bcs[size_t(i)] = acc += double(a[i]);
}

template <typename T>
void ssd_kernel(const KernelArgs& a) {
  check_arity(a, 5, 3);
  check_dtype<T>(a.in[0]);
  const Dims s = dims_of(a, a.in[0], a.in[2]);
  const T *q = a.in[0].data<T>(), *k = a.in[1].data<T>(), *v = a.in[2].data<T>(), *la = a.in[3].data<T>();
  const T* s0 = a.in[4].defined() ? a.in[4].data<T>() : nullptr;
  T *y = a.out[0].data<T>(), *sT = a.out[1].data<T>(), *sc = a.out[2].data<T>();
  const int64_t PN = s.P * s.N;
#pragma omp parallel for collapse(2) schedule(static) if ((s.B * s.H * s.T * s.C * (s.N + s.P)) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      std::vector<double> S(size_t(PN), 0.0), bcs(size_t(s.C), 0.0), acc(size_t(s.P), 0.0);
      if (s0)
        for (int64_t i = 0; i < PN; ++i) S[size_t(i)] = s0[s.st(b, h) + i];
      for (int64_t c = 0; c < s.nc; ++c) {
        const int64_t t0 = c * s.C, L = std::min(s.C, s.T - t0);
        for (int64_t i = 0; i < PN; ++i) sc[s.sc(b, h, c) + i] = T(S[size_t(i)]);
        local_cumsum(la + (b * s.H + h) * s.T + t0, L, bcs);
        for (int64_t i = 0; i < L; ++i) {
          const T* qi = q + s.qk(b, h, t0 + i);
          const double ei = std::exp(bcs[size_t(i)]);
          for (int64_t p = 0; p < s.P; ++p) {
            double r = 0.0;
            for (int64_t n = 0; n < s.N; ++n) r += S[size_t(p * s.N + n)] * double(qi[n]);
            acc[size_t(p)] = ei * r;
          }
          for (int64_t j = 0; j <= i; ++j) {
            const T* kj = k + s.qk(b, h, t0 + j);
            double dot = 0.0;
            for (int64_t n = 0; n < s.N; ++n) dot += double(qi[n]) * double(kj[n]);
            const double w = dot * std::exp(bcs[size_t(i)] - bcs[size_t(j)]);
            const T* vj = v + s.vp(b, h, t0 + j);
            for (int64_t p = 0; p < s.P; ++p) acc[size_t(p)] += w * double(vj[p]);
          }
          T* yi = y + s.vp(b, h, t0 + i);
          for (int64_t p = 0; p < s.P; ++p) yi[p] = T(acc[size_t(p)]);
        }
        const double bL = bcs[size_t(L - 1)], eL = std::exp(bL);
        for (int64_t i = 0; i < PN; ++i) S[size_t(i)] *= eL;
        for (int64_t j = 0; j < L; ++j) {
          const double w = std::exp(bL - bcs[size_t(j)]);
          const T *vj = v + s.vp(b, h, t0 + j), *kj = k + s.qk(b, h, t0 + j);
          for (int64_t p = 0; p < s.P; ++p)
            for (int64_t n = 0; n < s.N; ++n) S[size_t(p * s.N + n)] += w * double(vj[p]) * double(kj[n]);
        }
      }
      for (int64_t i = 0; i < PN; ++i) sT[s.st(b, h) + i] = T(S[size_t(i)]);
    }
  }
}

template <typename T>
void ssd_backward_kernel(const KernelArgs& a) {
  check_arity(a, 7, 5);
  check_dtype<T>(a.in[2]);
  const Dims s = dims_of(a, a.in[2], a.in[4]);
  const T *dy = a.in[0].data<T>(), *dsT = a.in[1].defined() ? a.in[1].data<T>() : nullptr;
  const T *q = a.in[2].data<T>(), *k = a.in[3].data<T>(), *v = a.in[4].data<T>(), *la = a.in[5].data<T>();
  const T* sc = a.in[6].data<T>();
  T *dq = a.out[0].data<T>(), *dk = a.out[1].data<T>(), *dv = a.out[2].data<T>(), *da = a.out[3].data<T>();
  T* ds0 = a.out[4].data<T>();
  const int64_t PN = s.P * s.N, TN = s.T * s.N;
  // dq, dk per head (B, H, T, N), summed over each group's heads below.
  std::vector<double> dqh(size_t(s.B * s.H * TN), 0.0), dkh(size_t(s.B * s.H * TN), 0.0);
#pragma omp parallel for collapse(2) schedule(static) if ((s.B * s.H * s.T * s.C * (s.N + s.P)) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      std::vector<double> D(size_t(PN), 0.0), Dn(size_t(PN), 0.0), bcs(size_t(s.C), 0.0), db(size_t(s.C), 0.0);
      std::vector<double> dvc(size_t(s.C * s.P), 0.0);
      double* dqb = &dqh[size_t((b * s.H + h) * TN)];
      double* dkb = &dkh[size_t((b * s.H + h) * TN)];
      if (dsT)
        for (int64_t i = 0; i < PN; ++i) D[size_t(i)] = dsT[s.st(b, h) + i];
      for (int64_t c = s.nc - 1; c >= 0; --c) {
        const int64_t t0 = c * s.C, L = std::min(s.C, s.T - t0);
        const T* S = sc + s.sc(b, h, c);
        local_cumsum(la + (b * s.H + h) * s.T + t0, L, bcs);
        std::fill(db.begin(), db.end(), 0.0);
        std::fill(dvc.begin(), dvc.end(), 0.0);
        const double bL = bcs[size_t(L - 1)], eL = std::exp(bL);
        // State: decay of S and the chunk's inputs into S'.
        double dbL = 0.0;
        for (int64_t i = 0; i < PN; ++i) {
          dbL += eL * D[size_t(i)] * double(S[i]);
          Dn[size_t(i)] = eL * D[size_t(i)];
        }
        for (int64_t j = 0; j < L; ++j) {
          const double w = std::exp(bL - bcs[size_t(j)]);
          const T *vj = v + s.vp(b, h, t0 + j), *kj = k + s.qk(b, h, t0 + j);
          double u = 0.0;
          for (int64_t p = 0; p < s.P; ++p) {
            double Dk = 0.0;
            for (int64_t n = 0; n < s.N; ++n) {
              Dk += D[size_t(p * s.N + n)] * double(kj[n]);
              dkb[(t0 + j) * s.N + n] += w * D[size_t(p * s.N + n)] * double(vj[p]);
            }
            dvc[size_t(j * s.P + p)] += w * Dk;
            u += double(vj[p]) * Dk;
          }
          db[size_t(j)] -= w * u;
          dbL += w * u;
        }
        db[size_t(L - 1)] += dbL;
        // Readout from the entering state, and the intra-chunk quadratic form.
        for (int64_t i = 0; i < L; ++i) {
          const T *qi = q + s.qk(b, h, t0 + i), *dyi = dy + s.vp(b, h, t0 + i);
          const double ei = std::exp(bcs[size_t(i)]);
          for (int64_t p = 0; p < s.P; ++p) {
            const double g = ei * double(dyi[p]);
            double Sq = 0.0;
            for (int64_t n = 0; n < s.N; ++n) {
              Sq += double(S[p * s.N + n]) * double(qi[n]);
              dqb[(t0 + i) * s.N + n] += g * double(S[p * s.N + n]);
              Dn[size_t(p * s.N + n)] += g * double(qi[n]);
            }
            db[size_t(i)] += g * Sq;
          }
          for (int64_t j = 0; j <= i; ++j) {
            const T *kj = k + s.qk(b, h, t0 + j), *vj = v + s.vp(b, h, t0 + j);
            const double e = std::exp(bcs[size_t(i)] - bcs[size_t(j)]);
            double qk = 0.0, gv = 0.0;
            for (int64_t n = 0; n < s.N; ++n) qk += double(qi[n]) * double(kj[n]);
            for (int64_t p = 0; p < s.P; ++p) gv += double(dyi[p]) * double(vj[p]);
            const double W = qk * e * gv;
            db[size_t(i)] += W;
            db[size_t(j)] -= W;
            for (int64_t n = 0; n < s.N; ++n) {
              dqb[(t0 + i) * s.N + n] += e * gv * double(kj[n]);
              dkb[(t0 + j) * s.N + n] += e * gv * double(qi[n]);
            }
            for (int64_t p = 0; p < s.P; ++p) dvc[size_t(j * s.P + p)] += qk * e * double(dyi[p]);
          }
        }
        double r = 0.0;
        for (int64_t i = L - 1; i >= 0; --i) {
          r += db[size_t(i)];
          da[(b * s.H + h) * s.T + t0 + i] = T(r);
        }
        for (int64_t j = 0; j < L; ++j)
          for (int64_t p = 0; p < s.P; ++p) dv[s.vp(b, h, t0 + j) + p] = T(dvc[size_t(j * s.P + p)]);
        D.swap(Dn);
      }
      for (int64_t i = 0; i < PN; ++i) ds0[s.st(b, h) + i] = T(D[size_t(i)]);
    }
  }
  const int64_t hpg = s.H / s.G;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t g = 0; g < s.G; ++g)
      for (int64_t i = 0; i < TN; ++i) {
        double aq = 0.0, ak = 0.0;
        for (int64_t hh = 0; hh < hpg; ++hh) {
          aq += dqh[size_t((b * s.H + g * hpg + hh) * TN + i)];
          ak += dkh[size_t((b * s.H + g * hpg + hh) * TN + i)];
        }
        dq[(b * s.G + g) * TN + i] = T(aq);
        dk[(b * s.G + g) * TN + i] = T(ak);
      }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(SsdChunked, ssd_kernel);
COIL_CPU_FLOAT_KERNELS(SsdChunkedBackward, ssd_backward_kernel);

}  // namespace coil::cpu
