// Masked quadratic linear attention (ops LinAttn / LinAttnBackward, contract in core/op_list.h), plain
// O(T^2) loops per (batch, head): the oracle of the CUDA kernels. Layouts: q, k (B, T, H, D), v, y
// (B, T, H, Dv), acs (B, T, H), den (B, H, T), acs and den in the input dtype (f32 or f64 here); q, k,
// v and dq, dk, dv may be strided views (of one packed projection, core/ops.h linattn_qkv), staged here
// through dense copies (kernels/staging.h), the rest contiguous. Every score, weight and sum is computed
// in double and rounded once when stored.
//
// Forward, for j <= i: u_ij = s q_i.k_j, w_ij = f(u_ij) L_ij with f(u) = u or u^2 and
// L_ij = exp(acs_i - acs_j) (1 without acs); den_i = sum_j w_ij; y_i = sum_j w_ij v_j / c_i with
// c_i = max(den_i, eps) under sm_norm (c_i = 1 otherwise).
// Backward (spec/models.md 6.1, with the clamp): Delta_i = dO_i.y_i; the clamp passes a gradient to
// den_i only where den_i > eps, so dw_ij = (dO_i.v_j - [den_i > eps] Delta_i) / c_i (dO_i.v_j without
// sm_norm); G_ij = w_ij dw_ij; dv_j = sum_i (w_ij / c_i) dO_i; dacs_i += sum_j G_ij (0 up to rounding
// where the clamp is inactive: the row factor cancels), dacs_j -= sum_i G_ij; du_ij = f'(u_ij) L_ij dw_ij;
// dq_i = s sum_j du_ij k_j, dk_j = s sum_i du_ij q_i.
// Exp form (power kLinAttnPowerExp, 2Mamba-E): z_ij = u_ij + acs_i - acs_j, m_i = max_j z_ij;
// den_i = m_i + log sum_j exp(z_ij - m_i) (the log-sum-exp), y_i = sum_j exp(z_ij - den_i) v_j.
// Backward: P_ij = exp(z_ij - den_i), Delta_i = dO_i.y_i, G_ij = P_ij (dO_i.v_j - Delta_i), du_ij = G_ij,
// dv_j = sum_i P_ij dO_i, dacs as above (the query side is 0 up to rounding).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops.h"
#include "kernels/cpu/cpu_kernel.h"
#include "kernels/staging.h"

namespace coil::cpu {
namespace {

struct Dims {
  int64_t B, T, H, D, Dv;
  int64_t qk(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * H + h) * D; }
  int64_t vo(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * H + h) * Dv; }
  int64_t ac(int64_t b, int64_t t, int64_t h) const { return (b * T + t) * H + h; }
  int64_t row(int64_t b, int64_t h, int64_t t) const { return (b * H + h) * T + t; }
};

Dims dims_of(const Tensor& q, const Tensor& v) {
  COIL_INTERNAL_ASSERT(q.dim() == 4 && v.dim() == 4, "expected q (B, T, H, D), v (B, T, H, Dv), got ",
                       q.describe(), ", ", v.describe());
  return {q.size(0), q.size(1), q.size(2), q.size(3), v.size(3)};
}

// The weight w_ij and the two factors the backward needs: f'(u) and L; z = u + acs_i - acs_j is
// the exp form's logit (L is not formed there: exp(acs_i - acs_j) alone may overflow).
struct Weight {
  double u, f, L, z;
  double w() const { return f * L; }
};

template <typename T>
Weight weight(const Dims& s, const T* q, const T* k, const T* acs, int64_t b, int64_t h, int64_t i,
              int64_t j, double scale, int64_t power) {
  const T* qi = q + s.qk(b, i, h);
  const T* kj = k + s.qk(b, j, h);
  double dot = 0.0;
  for (int64_t d = 0; d < s.D; ++d) dot += double(qi[d]) * kj[d];
  const double u = scale * dot;
  if (power == kLinAttnPowerExp)
    return {u, u, 1.0, acs ? u + (double(acs[s.ac(b, i, h)]) - double(acs[s.ac(b, j, h)])) : u};
  const double L = acs ? std::exp(double(acs[s.ac(b, i, h)]) - double(acs[s.ac(b, j, h)])) : 1.0;
  return {u, power == 2 ? u * u : u, L, 0.0};
}

// One row of the exp form's forward: y_i and the log-sum-exp.
template <typename T>
void exp_row(const Dims& s, const T* q, const T* k, const T* v, const T* acs, int64_t b, int64_t h, int64_t i,
             double scale, T* yi, T* lse) {
  std::vector<double> z(size_t(i + 1)), num(size_t(s.Dv), 0.0);
  double m = -INFINITY;
  for (int64_t j = 0; j <= i; ++j) {
    z[size_t(j)] = weight(s, q, k, acs, b, h, i, j, scale, kLinAttnPowerExp).z;
    m = std::max(m, z[size_t(j)]);
  }
  double total = 0.0;
  for (int64_t j = 0; j <= i; ++j) {
    const double w = std::exp(z[size_t(j)] - m);
    total += w;
    const T* vj = v + s.vo(b, j, h);
    for (int64_t d = 0; d < s.Dv; ++d) num[size_t(d)] += w * vj[d];
  }
  for (int64_t d = 0; d < s.Dv; ++d) yi[d] = T(num[size_t(d)] / total);
  *lse = T(m + std::log(total));
}

template <typename T>
void linattn_dense(const KernelArgs& a) {
  check_dtype<T>(a.in[0]);
  const Dims s = dims_of(a.in[0], a.in[2]);
  const T* q = a.in[0].data<T>();
  const T* k = a.in[1].data<T>();
  const T* v = a.in[2].data<T>();
  const T* acs = a.in[3].defined() ? a.in[3].data<T>() : nullptr;
  T* y = a.out[0].data<T>();
  T* den = a.out[1].data<T>();
  const double scale = a.attrs.scale;
  const int64_t power = a.attrs.power;
  const bool sm_norm = a.attrs.sm_norm;
#pragma omp parallel for collapse(3) schedule(dynamic, 16) if ((s.B * s.H * s.T * s.T * s.D) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < s.T; ++i) {
        if (power == kLinAttnPowerExp) {
          exp_row(s, q, k, v, acs, b, h, i, scale, y + s.vo(b, i, h), den + s.row(b, h, i));
          continue;
        }
        std::vector<double> num(size_t(s.Dv), 0.0);
        double total = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          const double w = weight(s, q, k, acs, b, h, i, j, scale, power).w();
          total += w;
          const T* vj = v + s.vo(b, j, h);
          for (int64_t d = 0; d < s.Dv; ++d) num[size_t(d)] += w * vj[d];
        }
        const double c = sm_norm ? std::max(total, kLinAttnDenominatorEps) : 1.0;
        T* yi = y + s.vo(b, i, h);
        for (int64_t d = 0; d < s.Dv; ++d) yi[d] = T(num[size_t(d)] / c);
        den[s.row(b, h, i)] = T(total);
      }
    }
  }
}

template <typename T>
void linattn_backward_dense(const KernelArgs& a) {
  check_dtype<T>(a.in[1]);
  const Dims s = dims_of(a.in[1], a.in[3]);
  const T* dO = a.in[0].data<T>();
  const T* q = a.in[1].data<T>();
  const T* k = a.in[2].data<T>();
  const T* v = a.in[3].data<T>();
  const T* acs = a.in[4].defined() ? a.in[4].data<T>() : nullptr;
  const T* y = a.in[5].data<T>();
  const T* den = a.in[6].data<T>();
  T* dq = a.out[0].data<T>();
  T* dk = a.out[1].data<T>();
  T* dv = a.out[2].data<T>();
  T* dacs = acs ? a.out[3].data<T>() : nullptr;
  const double scale = a.attrs.scale;
  const int64_t power = a.attrs.power;
  const bool sm_norm = a.attrs.sm_norm;
  // One (b, h) per task: its dq, dk, dv and dacs rows belong to no other task.
#pragma omp parallel for collapse(2) schedule(dynamic) if ((s.B * s.H * s.T * s.T * s.D) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      std::vector<double> dk_acc(size_t(s.T * s.D), 0.0), dv_acc(size_t(s.T * s.Dv), 0.0);
      std::vector<double> dacs_acc(size_t(s.T), 0.0), dq_acc(size_t(s.D));
      for (int64_t i = 0; i < s.T; ++i) {
        const T* qi = q + s.qk(b, i, h);
        const T* dOi = dO + s.vo(b, i, h);
        const T* yi = y + s.vo(b, i, h);
        const bool expo = power == kLinAttnPowerExp;
        const double total = den[s.row(b, h, i)];  // the log-sum-exp in the exp form
        const double c = sm_norm && !expo ? std::max(total, kLinAttnDenominatorEps) : 1.0;
        double delta = 0.0;
        if (expo || (sm_norm && total > kLinAttnDenominatorEps))
          for (int64_t d = 0; d < s.Dv; ++d) delta += double(dOi[d]) * yi[d];
        std::fill(dq_acc.begin(), dq_acc.end(), 0.0);
        for (int64_t j = 0; j <= i; ++j) {
          const Weight wt = weight(s, q, k, acs, b, h, i, j, scale, power);
          const T* kj = k + s.qk(b, j, h);
          const T* vj = v + s.vo(b, j, h);
          double dp = 0.0;
          for (int64_t d = 0; d < s.Dv; ++d) dp += double(dOi[d]) * vj[d];
          const double dw = (dp - delta) / c;
          const double p = expo ? std::exp(wt.z - total) : wt.w() / c;
          for (int64_t d = 0; d < s.Dv; ++d) dv_acc[size_t(j * s.Dv + d)] += p * dOi[d];
          const double g = expo ? p * dw : wt.w() * dw;
          dacs_acc[size_t(i)] += g;
          dacs_acc[size_t(j)] -= g;
          const double du = expo ? g : (power == 2 ? 2.0 * wt.u : 1.0) * wt.L * dw;
          for (int64_t d = 0; d < s.D; ++d) {
            dq_acc[size_t(d)] += scale * du * kj[d];
            dk_acc[size_t(j * s.D + d)] += scale * du * qi[d];
          }
        }
        T* dqi = dq + s.qk(b, i, h);
        for (int64_t d = 0; d < s.D; ++d) dqi[d] = T(dq_acc[size_t(d)]);
      }
      for (int64_t j = 0; j < s.T; ++j) {
        for (int64_t d = 0; d < s.D; ++d) dk[s.qk(b, j, h) + d] = T(dk_acc[size_t(j * s.D + d)]);
        for (int64_t d = 0; d < s.Dv; ++d) dv[s.vo(b, j, h) + d] = T(dv_acc[size_t(j * s.Dv + d)]);
        if (dacs) dacs[s.ac(b, j, h)] = T(dacs_acc[size_t(j)]);
      }
    }
  }
}

template <typename T>
void linattn_kernel(const KernelArgs& a) {
  check_arity(a, 4, 2);
  DenseStaging st(a, {0, 1, 2}, {});
  linattn_dense<T>(st.args);
}

template <typename T>
void linattn_backward_kernel(const KernelArgs& a) {
  check_arity(a, 7, 4);
  DenseStaging st(a, {1, 2, 3}, {0, 1, 2});
  linattn_backward_dense<T>(st.args);
  st.finish();
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(LinAttn, linattn_kernel);
COIL_CPU_FLOAT_KERNELS(LinAttnBackward, linattn_backward_kernel);

}  // namespace coil::cpu
