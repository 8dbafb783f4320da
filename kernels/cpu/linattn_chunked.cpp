// Chunked linear attention with state in / out (ops LinAttnChunked / LinAttnChunkedBackward, contract
// in core/op_list.h; the algorithm of spec/models.md section 7, the composed form of
// layers/linattn_chunked.cpp): plain loops per (batch, head) in double, the oracle of the CUDA kernels.
// Layouts: q, k (B, T, H, D), v, y (B, T, H, Dv), a (B, T, H), den (B, H, T), S0, S (B, H, F, Dv), z0, z
// (B, H, F), Sc (nc, B, H, F, Dv), zc (nc, B, H, F) (z0, z, zc and den with sm_norm only); everything
// but q, k, v, y in the statistics dtype (the input dtype here). ks = s k; q^ = phi(q), k^ = phi(ks)
// with the symmetric square map for power 2.
//
// Forward, per chunk c (tokens c0 .. c0+L-1, local cumsum b_i of a, B = b_{L-1}), entering state S, z:
//   num_i = sum_{j<=i} w_ij e^{b_i-b_j} v_j + e^{b_i} q^_i.S,  den_i likewise with 1 and z
//   y_i = num_i / max(den_i, eps) (sm_norm) or num_i
//   S <- e^B S + sum_j e^{B-b_j} k^_j v_j^T,  z likewise with k^_j.
// Backward, chunks in reverse with G = dL/dS after the chunk (starting at dS) and gz = dL/dz:
//   dnum_i = dy_i / c_i, dden_i = -[den_i > eps] dy_i.y_i / c_i (c_i = max(den_i, eps); without sm_norm
//   dnum = dy, dden = 0); dW_ij = dnum_i.v_j + dden_i;
//   dk^_j = e^{B-b_j} (G v_j + gz), dv_j += e^{B-b_j} G^T k^_j + sum_i W_ij dnum_i,
//   dq^_i = e^{b_i} (S dnum_i + z dden_i),
//   db_i += q^_i.dq^_i + sum_j dW_ij W_ij;  db_j -= k^_j.dk^_j + sum_i dW_ij W_ij;
//   dB = e^B (<G, S> + gz.z) + sum_j k^_j.dk^_j,  added to db_{L-1};  da = reverse cumsum of db in c;
//   G <- e^B G + sum_i e^{b_i} q^_i dnum_i^T,  gz likewise with dden_i;  dS0 = G, dz0 = gz at the end;
//   du_ij = f'(u_ij) e^{b_i-b_j} dW_ij gives dq, dks; phi's chain rule adds dq^, dk^; dk = s dks.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops.h"
#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

struct Dims {
  int64_t B, T, H, D, Dv, F, C, nc;
  int64_t qk(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * H + h) * D; }
  int64_t vo(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * H + h) * Dv; }
  int64_t ac(int64_t b, int64_t t, int64_t h) const { return (b * T + t) * H + h; }
  int64_t row(int64_t b, int64_t h, int64_t t) const { return (b * H + h) * T + t; }
  int64_t st(int64_t b, int64_t h) const { return (b * H + h) * F * Dv; }             // S0, S
  int64_t zt(int64_t b, int64_t h) const { return (b * H + h) * F; }                  // z0, z
  int64_t sc(int64_t c, int64_t b, int64_t h) const { return ((c * B + b) * H + h) * F * Dv; }
  int64_t zc(int64_t c, int64_t b, int64_t h) const { return ((c * B + b) * H + h) * F; }
};

Dims dims_of(const KernelArgs& a, const Tensor& q, const Tensor& v) {
  COIL_INTERNAL_ASSERT(q.dim() == 4 && v.dim() == 4, "expected q (B, T, H, D), v (B, T, H, Dv), got ",
                       q.describe(), ", ", v.describe());
  COIL_INTERNAL_ASSERT(a.attrs.power == 1 || a.attrs.power == 2, "power ", a.attrs.power);
  COIL_INTERNAL_ASSERT(a.attrs.dim > 0, "chunk length ", a.attrs.dim);
  const int64_t T = q.size(1), D = q.size(3), C = a.attrs.dim;
  return {q.size(0), T, q.size(2), D, v.size(3), linattn_chunked_features(a.attrs.power, D), C, (T + C - 1) / C};
}

// phi(x) into f (F values): x itself, or c_ab x_a x_b for a <= b (a-major), c = 1 on the diagonal, sqrt 2 off it.
void features(const double* x, int64_t D, int64_t power, double* f) {
  if (power == 1) {
    std::copy(x, x + D, f);
    return;
  }
  const double r2 = std::sqrt(2.0);
  int64_t n = 0;
  for (int64_t p = 0; p < D; ++p)
    for (int64_t r = p; r < D; ++r) f[n++] = (p == r ? 1.0 : r2) * x[p] * x[r];
}

// dx += J_phi(x)^T g.
void features_backward(const double* x, const double* g, int64_t D, int64_t power, double* dx) {
  if (power == 1) {
    for (int64_t d = 0; d < D; ++d) dx[d] += g[d];
    return;
  }
  const double r2 = std::sqrt(2.0);
  int64_t n = 0;
  for (int64_t p = 0; p < D; ++p)
    for (int64_t r = p; r < D; ++r, ++n) {
      if (p == r) {
        dx[p] += 2.0 * g[n] * x[p];
      } else {
        dx[p] += r2 * g[n] * x[r];
        dx[r] += r2 * g[n] * x[p];
      }
    }
}

// One (batch, head) in double: q, ks (T, D), v (T, Dv), a (T) (empty without decay).
template <typename T>
struct Head {
  std::vector<double> q, ks, v, a;
  Head(const Dims& s, const T* qp, const T* kp, const T* vp, const T* ap, double scale, int64_t b, int64_t h)
      : q(size_t(s.T * s.D)), ks(size_t(s.T * s.D)), v(size_t(s.T * s.Dv)) {
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t d = 0; d < s.D; ++d) {
        q[size_t(t * s.D + d)] = qp[s.qk(b, t, h) + d];
        ks[size_t(t * s.D + d)] = scale * double(kp[s.qk(b, t, h) + d]);
      }
      for (int64_t d = 0; d < s.Dv; ++d) v[size_t(t * s.Dv + d)] = vp[s.vo(b, t, h) + d];
    }
    if (ap) {
      a.resize(size_t(s.T));
      for (int64_t t = 0; t < s.T; ++t) a[size_t(t)] = ap[s.ac(b, t, h)];
    }
  }
  // Local cumsum of chunk [c0, c0 + L) (zeros without decay).
  std::vector<double> cumsum(int64_t c0, int64_t L) const {
    std::vector<double> bl(size_t(L), 0.0);
    if (a.empty()) return bl;
    double acc = 0.0;
    for (int64_t i = 0; i < L; ++i) bl[size_t(i)] = acc += a[size_t(c0 + i)];
    return bl;
  }
  double score(const Dims& s, int64_t i, int64_t j) const {
    double u = 0.0;
    for (int64_t d = 0; d < s.D; ++d) u += q[size_t(i * s.D + d)] * ks[size_t(j * s.D + d)];
    return u;
  }
};

// in: q, k, v, a|undefined, S0|undefined, z0|undefined; out: y, S, z|undefined, Sc, zc|undefined, den.
template <typename T>
void chunked_kernel(const KernelArgs& a) {
  check_arity(a, 6, 6);
  check_dtype<T>(a.in[0]);
  const Dims s = dims_of(a, a.in[0], a.in[2]);
  const bool sm = a.attrs.sm_norm;
  const int64_t power = a.attrs.power;
  const T *qp = a.in[0].data<T>(), *kp = a.in[1].data<T>(), *vp = a.in[2].data<T>();
  const T* ap = a.in[3].defined() ? a.in[3].data<T>() : nullptr;
  const T* S0 = a.in[4].defined() ? a.in[4].data<T>() : nullptr;
  const T* z0 = sm && a.in[5].defined() ? a.in[5].data<T>() : nullptr;
  T *y = a.out[0].data<T>(), *So = a.out[1].data<T>(), *Sc = a.out[3].data<T>();
  T* zo = sm ? a.out[2].data<T>() : nullptr;
  T* den = sm ? a.out[5].data<T>() : nullptr;
  T* zc = sm ? a.out[4].data<T>() : nullptr;
  const int64_t F = s.F, Dv = s.Dv;
#pragma omp parallel for collapse(2) schedule(static) if ((s.B * s.H * s.T * F * Dv) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const Head<T> x(s, qp, kp, vp, ap, a.attrs.scale, b, h);
      const size_t nS = size_t(F * Dv), nF = size_t(F);
      std::vector<double> S(nS, 0.0), z(nF, 0.0), phi(nF), num(static_cast<size_t>(Dv));
      if (S0)
        for (int64_t e = 0; e < F * Dv; ++e) S[size_t(e)] = S0[s.st(b, h) + e];
      if (z0)
        for (int64_t f = 0; f < F; ++f) z[size_t(f)] = z0[s.zt(b, h) + f];
      for (int64_t c = 0; c < s.nc; ++c) {
        const int64_t c0 = c * s.C, L = std::min(s.C, s.T - c0);
        for (int64_t e = 0; e < F * Dv; ++e) Sc[s.sc(c, b, h) + e] = T(S[size_t(e)]);
        if (sm)
          for (int64_t f = 0; f < F; ++f) zc[s.zc(c, b, h) + f] = T(z[size_t(f)]);
        const std::vector<double> bl = x.cumsum(c0, L);
        for (int64_t i = 0; i < L; ++i) {
          const int64_t ti = c0 + i;
          features(&x.q[size_t(ti * s.D)], s.D, power, phi.data());
          const double eb = std::exp(bl[size_t(i)]);
          double dn = 0.0;
          for (int64_t d = 0; d < Dv; ++d) num[size_t(d)] = 0.0;
          for (int64_t f = 0; f < F; ++f) {
            const double pf = phi[size_t(f)];
            for (int64_t d = 0; d < Dv; ++d) num[size_t(d)] += pf * S[size_t(f * Dv + d)];
            dn += pf * z[size_t(f)];
          }
          for (int64_t d = 0; d < Dv; ++d) num[size_t(d)] *= eb;
          dn *= eb;
          for (int64_t j = 0; j <= i; ++j) {
            const double u = x.score(s, ti, c0 + j);
            const double w = (power == 2 ? u * u : u) * std::exp(bl[size_t(i)] - bl[size_t(j)]);
            for (int64_t d = 0; d < Dv; ++d) num[size_t(d)] += w * x.v[size_t((c0 + j) * Dv + d)];
            dn += w;
          }
          const double cden = sm ? std::max(dn, kLinAttnDenominatorEps) : 1.0;
          for (int64_t d = 0; d < Dv; ++d) y[s.vo(b, ti, h) + d] = T(num[size_t(d)] / cden);
          if (sm) den[s.row(b, h, ti)] = T(dn);
        }
        const double eB = std::exp(bl[size_t(L - 1)]);
        for (auto& e : S) e *= eB;
        for (auto& e : z) e *= eB;
        for (int64_t j = 0; j < L; ++j) {
          const int64_t tj = c0 + j;
          features(&x.ks[size_t(tj * s.D)], s.D, power, phi.data());
          const double ej = std::exp(bl[size_t(L - 1)] - bl[size_t(j)]);
          for (int64_t f = 0; f < F; ++f) {
            const double pf = ej * phi[size_t(f)];
            for (int64_t d = 0; d < Dv; ++d) S[size_t(f * Dv + d)] += pf * x.v[size_t(tj * Dv + d)];
            if (sm) z[size_t(f)] += pf;
          }
        }
      }
      for (int64_t e = 0; e < F * Dv; ++e) So[s.st(b, h) + e] = T(S[size_t(e)]);
      if (sm)
        for (int64_t f = 0; f < F; ++f) zo[s.zt(b, h) + f] = T(z[size_t(f)]);
    }
}

// in: dy, dS|undefined, dz|undefined, q, k, v, a|undefined, y, Sc, zc|undefined, den;
// out: dq, dk, dv, da|undefined, dS0, dz0|undefined.
template <typename T>
void chunked_backward_kernel(const KernelArgs& a) {
  check_arity(a, 11, 6);
  check_dtype<T>(a.in[3]);
  const Dims s = dims_of(a, a.in[3], a.in[5]);
  const bool sm = a.attrs.sm_norm;
  const int64_t power = a.attrs.power, F = s.F, Dv = s.Dv, D = s.D;
  const double scale = a.attrs.scale;
  const T* dyp = a.in[0].data<T>();
  const T* dSp = a.in[1].defined() ? a.in[1].data<T>() : nullptr;
  const T* dzp = sm && a.in[2].defined() ? a.in[2].data<T>() : nullptr;
  const T *qp = a.in[3].data<T>(), *kp = a.in[4].data<T>(), *vp = a.in[5].data<T>();
  const T* ap = a.in[6].defined() ? a.in[6].data<T>() : nullptr;
  const T *yp = a.in[7].data<T>(), *Sc = a.in[8].data<T>();
  const T* zc = sm ? a.in[9].data<T>() : nullptr;
  const T* den = sm ? a.in[10].data<T>() : nullptr;
  T *dq = a.out[0].data<T>(), *dk = a.out[1].data<T>(), *dv = a.out[2].data<T>(), *dS0 = a.out[4].data<T>();
  T* da = ap ? a.out[3].data<T>() : nullptr;
  T* dz0 = sm ? a.out[5].data<T>() : nullptr;
#pragma omp parallel for collapse(2) schedule(static) if ((s.B * s.H * s.T * F * Dv) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const Head<T> x(s, qp, kp, vp, ap, scale, b, h);
      const size_t nS = size_t(F * Dv), nF = size_t(F);
      std::vector<double> G(nS, 0.0), gz(nF, 0.0), Gn(nS), gzn(nF);
      std::vector<double> gq(size_t(s.T * D), 0.0), gk(size_t(s.T * D), 0.0), gv(size_t(s.T * Dv), 0.0);
      std::vector<double> db(size_t(s.T), 0.0), phi(nF), dphi(nF);
      std::vector<double> dnum(size_t(s.C * Dv)), dden(size_t(s.C));
      if (dSp)
        for (int64_t e = 0; e < F * Dv; ++e) G[size_t(e)] = dSp[s.st(b, h) + e];
      if (dzp)
        for (int64_t f = 0; f < F; ++f) gz[size_t(f)] = dzp[s.zt(b, h) + f];
      for (int64_t c = s.nc - 1; c >= 0; --c) {
        const int64_t c0 = c * s.C, L = std::min(s.C, s.T - c0);
        const T* Sp = Sc + s.sc(c, b, h);
        const T* zp = sm ? zc + s.zc(c, b, h) : nullptr;
        const std::vector<double> bl = x.cumsum(c0, L);
        const double Bc = bl[size_t(L - 1)], eB = std::exp(Bc);
        for (int64_t i = 0; i < L; ++i) {
          const int64_t ti = c0 + i;
          const double dn = sm ? double(den[s.row(b, h, ti)]) : 0.0;
          const double cden = sm ? std::max(dn, kLinAttnDenominatorEps) : 1.0;
          double dot = 0.0;
          for (int64_t d = 0; d < Dv; ++d) {
            dnum[size_t(i * Dv + d)] = double(dyp[s.vo(b, ti, h) + d]) / cden;
            dot += double(dyp[s.vo(b, ti, h) + d]) * double(yp[s.vo(b, ti, h) + d]);
          }
          dden[size_t(i)] = sm && dn > kLinAttnDenominatorEps ? -dot / cden : 0.0;
        }
        // Carried-state terms: the state's decay, the keys' writes and the queries' reads.
        double dB = 0.0;
        for (int64_t e = 0; e < F * Dv; ++e) dB += G[size_t(e)] * double(Sp[e]);
        if (sm)
          for (int64_t f = 0; f < F; ++f) dB += gz[size_t(f)] * double(zp[f]);
        dB *= eB;
        for (int64_t e = 0; e < F * Dv; ++e) Gn[size_t(e)] = eB * G[size_t(e)];
        for (int64_t f = 0; f < F; ++f) gzn[size_t(f)] = eB * gz[size_t(f)];
        for (int64_t j = 0; j < L; ++j) {
          const int64_t tj = c0 + j;
          features(&x.ks[size_t(tj * D)], D, power, phi.data());
          const double ej = std::exp(Bc - bl[size_t(j)]);
          double X = 0.0;
          for (int64_t f = 0; f < F; ++f) {
            double g = gz[size_t(f)];
            for (int64_t d = 0; d < Dv; ++d) {
              g += G[size_t(f * Dv + d)] * x.v[size_t(tj * Dv + d)];
              gv[size_t(tj * Dv + d)] += ej * G[size_t(f * Dv + d)] * phi[size_t(f)];
            }
            dphi[size_t(f)] = ej * g;
            X += phi[size_t(f)] * dphi[size_t(f)];
          }
          db[size_t(tj)] -= X;
          dB += X;
          features_backward(&x.ks[size_t(tj * D)], dphi.data(), D, power, &gk[size_t(tj * D)]);
        }
        for (int64_t i = 0; i < L; ++i) {
          const int64_t ti = c0 + i;
          features(&x.q[size_t(ti * D)], D, power, phi.data());
          const double eb = std::exp(bl[size_t(i)]);
          double R = 0.0;
          for (int64_t f = 0; f < F; ++f) {
            double g = sm ? double(zp[f]) * dden[size_t(i)] : 0.0;
            for (int64_t d = 0; d < Dv; ++d) {
              g += double(Sp[f * Dv + d]) * dnum[size_t(i * Dv + d)];
              Gn[size_t(f * Dv + d)] += eb * phi[size_t(f)] * dnum[size_t(i * Dv + d)];
            }
            gzn[size_t(f)] += eb * phi[size_t(f)] * dden[size_t(i)];
            dphi[size_t(f)] = eb * g;
            R += phi[size_t(f)] * dphi[size_t(f)];
          }
          db[size_t(ti)] += R;
          features_backward(&x.q[size_t(ti * D)], dphi.data(), D, power, &gq[size_t(ti * D)]);
        }
        // Intra-chunk tile.
        for (int64_t i = 0; i < L; ++i)
          for (int64_t j = 0; j <= i; ++j) {
            const int64_t ti = c0 + i, tj = c0 + j;
            const double u = x.score(s, ti, tj), E = std::exp(bl[size_t(i)] - bl[size_t(j)]);
            const double W = (power == 2 ? u * u : u) * E;
            double dW = dden[size_t(i)];
            for (int64_t d = 0; d < Dv; ++d) {
              dW += dnum[size_t(i * Dv + d)] * x.v[size_t(tj * Dv + d)];
              gv[size_t(tj * Dv + d)] += W * dnum[size_t(i * Dv + d)];
            }
            db[size_t(ti)] += dW * W;
            db[size_t(tj)] -= dW * W;
            const double du = (power == 2 ? 2.0 * u : 1.0) * E * dW;
            for (int64_t d = 0; d < D; ++d) {
              gq[size_t(ti * D + d)] += du * x.ks[size_t(tj * D + d)];
              gk[size_t(tj * D + d)] += du * x.q[size_t(ti * D + d)];
            }
          }
        db[size_t(c0 + L - 1)] += dB;
        if (da) {
          double acc = 0.0;
          for (int64_t i = L - 1; i >= 0; --i) da[s.ac(b, c0 + i, h)] = T(acc += db[size_t(c0 + i)]);
        }
        G.swap(Gn);
        gz.swap(gzn);
      }
      for (int64_t t = 0; t < s.T; ++t) {
        for (int64_t d = 0; d < D; ++d) {
          dq[s.qk(b, t, h) + d] = T(gq[size_t(t * D + d)]);
          dk[s.qk(b, t, h) + d] = T(scale * gk[size_t(t * D + d)]);
        }
        for (int64_t d = 0; d < Dv; ++d) dv[s.vo(b, t, h) + d] = T(gv[size_t(t * Dv + d)]);
      }
      for (int64_t e = 0; e < F * Dv; ++e) dS0[s.st(b, h) + e] = T(G[size_t(e)]);
      if (sm)
        for (int64_t f = 0; f < F; ++f) dz0[s.zt(b, h) + f] = T(gz[size_t(f)]);
    }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(LinAttnChunked, chunked_kernel);
COIL_CPU_FLOAT_KERNELS(LinAttnChunkedBackward, chunked_backward_kernel);

}  // namespace coil::cpu
