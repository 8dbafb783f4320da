// Rotary position embedding and softmax attention (causal or not, Tq queries over Tk >= Tq keys),
// plain O(Tq Tk) loops per (batch, head). Layouts: x, q, o (B, Tq, H, D), k, v (B, Tk, H, D)
// contiguous; lse, dlse (B, H, Tq) in their own dtype (f32 for f32 inputs, f64 for f64). Angles,
// scores and every sum are computed in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

struct BTHD {
  int64_t B, T, H, D;
  int64_t at(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * H + h) * D; }
};
inline BTHD bthd(const Tensor& x) {
  COIL_INTERNAL_ASSERT(x.dim() == 4, "expected (B, T, H, D), got ", x.describe());
  return {x.size(0), x.size(1), x.size(2), x.size(3)};
}

// Rope: x (B, T, H, D) -> y (B, T, H, D). Pair (2i, 2i+1) at position p = pos_offset + t rotates by
// p * theta^(-2i/D) (minus that when attrs.reverse, which is the backward).
template <typename T>
void rope_kernel(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  check_dtype<T>(x);
  const BTHD s = bthd(x);
  COIL_INTERNAL_ASSERT(s.D % 2 == 0, "rope needs an even head dim, got ", x.describe());
  const T* px = x.data<T>();
  T* py = a.out[0].data<T>();
  const double sign = a.attrs.reverse ? -1.0 : 1.0;
#pragma omp parallel for schedule(static) if ((x.numel()) > kMinParallelWork)
  for (int64_t t = 0; t < s.T; ++t) {
    double pos = double(a.attrs.pos_offset + t);
    if (a.attrs.bf16_positions) pos = bf16_to_float(float_to_bf16(float(pos)));
    for (int64_t i = 0; i < s.D / 2; ++i) {
      const double angle = sign * pos * std::pow(a.attrs.theta, -2.0 * double(i) / double(s.D));
      const double cs = std::cos(angle), sn = std::sin(angle);
      for (int64_t b = 0; b < s.B; ++b) {
        for (int64_t h = 0; h < s.H; ++h) {
          const int64_t k = s.at(b, t, h) + 2 * i;
          const double x0 = px[k], x1 = px[k + 1];
          py[k] = T(x0 * cs - x1 * sn);
          py[k + 1] = T(x0 * sn + x1 * cs);
        }
      }
    }
  }
}

// The keys query i may see: 0 .. last(i) (a prefix in every case).
struct Visible {
  int64_t Tq, Tk, P;  // P = Tk - Tq: the global position of query 0
  bool causal;
  int64_t last(int64_t i) const { return causal ? P + i : Tk - 1; }
};
// q (B, Tq, H, D), k and v (B, Tk, H, D) of one dtype and head layout; Tk >= Tq when causal.
Visible visible_of(const Tensor& q, const Tensor& k, const Tensor& v, const OpAttrs& at) {
  const BTHD sq = bthd(q), sk = bthd(k);
  COIL_INTERNAL_ASSERT(v.shape() == k.shape() && sk.B == sq.B && sk.H == sq.H && sk.D == sq.D &&
                           (at.causal ? sk.T >= sq.T : sk.T >= 1),
                       "attention: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(),
                       at.causal ? " (causal wants Tk >= Tq)" : "");
  return {sq.T, sk.T, sk.T - sq.T, at.causal};
}

// Attention: q (B, Tq, H, D), k, v (B, Tk, H, D) -> o (B, Tq, H, D), lse (B, H, Tq). Query i sees keys
// j <= last(i) with scores s_ij = scale * q_i . k_j; lse_i = log sum_j exp(s_ij);
// o_i = sum_j exp(s_ij - lse_i) v_j.
template <typename T>
void attention_kernel(const KernelArgs& a) {
  check_arity(a, 3, 2);
  const BTHD s = bthd(a.in[0]), sk = bthd(a.in[1]);
  check_dtype<T>(a.in[0]);
  const Visible vis = visible_of(a.in[0], a.in[1], a.in[2], a.attrs);
  const T* q = a.in[0].data<T>();
  const T* k = a.in[1].data<T>();
  const T* v = a.in[2].data<T>();
  T* o = a.out[0].data<T>();
  const Tensor& lse = a.out[1];
  const double scale = a.attrs.scale;
#pragma omp parallel for collapse(3) schedule(dynamic, 16) if ((s.B * s.H * s.T * sk.T * s.D) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < s.T; ++i) {
        const int64_t n = vis.last(i) + 1;  // keys 0 .. n - 1
        std::vector<double> p(static_cast<size_t>(n));   // scores, then probabilities
        const T* qi = q + s.at(b, i, h);
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const T* kj = k + sk.at(b, j, h);
          double dot = 0.0;
          for (int64_t d = 0; d < s.D; ++d) dot += double(qi[d]) * kj[d];
          p[size_t(j)] = scale * dot;
          mx = std::max(mx, p[size_t(j)]);
        }
        double total = 0.0;
        for (int64_t j = 0; j < n; ++j) total += std::exp(p[size_t(j)] - mx);
        const double l = mx + std::log(total);
        std::vector<double> acc(size_t(s.D), 0.0);  // (D)
        for (int64_t j = 0; j < n; ++j) {
          const double pj = std::exp(p[size_t(j)] - l);
          const T* vj = v + sk.at(b, j, h);
          for (int64_t d = 0; d < s.D; ++d) acc[size_t(d)] += pj * vj[d];
        }
        T* oi = o + s.at(b, i, h);
        for (int64_t d = 0; d < s.D; ++d) oi[d] = T(acc[size_t(d)]);
        store_float(lse, (b * s.H + h) * s.T + i, l);
      }
    }
  }
}

// AttentionBackward: dO, q, o (B, Tq, H, D), k, v (B, Tk, H, D), lse (B, H, Tq)[, dlse (B, H, Tq)] ->
// dq (B, Tq, H, D), dk, dv (B, Tk, H, D). P_ij = exp(s_ij - lse_i); Delta_i = dO_i . o_i - dlse_i
// (d lse_i / d s_ij = P_ij, so lse's gradient joins as minus Delta); dS_ij = P_ij (dO_i . v_j - Delta_i);
// dq_i = scale sum_j dS_ij k_j; dk_j = scale sum_i dS_ij q_i; dv_j = sum_i P_ij dO_i.
// One (b, h) per task; dk and dv accumulate over queries in order, in double.
template <typename T>
void attention_backward_kernel(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT((a.in.size() == 6 || a.in.size() == 7) && a.out.size() == 3, op_name(a.op), " got ",
                       a.in.size(), " inputs and ", a.out.size(), " outputs, expected 6 or 7 and 3");
  const BTHD s = bthd(a.in[1]), sk = bthd(a.in[2]);
  check_dtype<T>(a.in[1]);
  const Visible vis = visible_of(a.in[1], a.in[2], a.in[3], a.attrs);
  const T* dO = a.in[0].data<T>();
  const T* q = a.in[1].data<T>();
  const T* k = a.in[2].data<T>();
  const T* v = a.in[3].data<T>();
  const T* o = a.in[4].data<T>();
  const Tensor& lse = a.in[5];
  const Tensor* dlse = a.in.size() == 7 ? &a.in[6] : nullptr;
  T* dq = a.out[0].data<T>();
  T* dk = a.out[1].data<T>();
  T* dv = a.out[2].data<T>();
  const double scale = a.attrs.scale;
#pragma omp parallel for collapse(2) schedule(dynamic) if ((s.B * s.H * s.T * sk.T * s.D) > kMinParallelWork)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      std::vector<double> dk_acc(size_t(sk.T * s.D), 0.0), dv_acc(size_t(sk.T * s.D), 0.0);  // (Tk, D)
      std::vector<double> dq_acc(size_t(s.D));                                               // (D)
      for (int64_t i = 0; i < s.T; ++i) {
        const T* qi = q + s.at(b, i, h);
        const T* dOi = dO + s.at(b, i, h);
        const T* oi = o + s.at(b, i, h);
        const int64_t stat = (b * s.H + h) * s.T + i;
        const double l = load_float(lse, stat);
        double delta = dlse ? -load_float(*dlse, stat) : 0.0;
        for (int64_t d = 0; d < s.D; ++d) delta += double(dOi[d]) * oi[d];
        std::fill(dq_acc.begin(), dq_acc.end(), 0.0);
        for (int64_t j = 0; j <= vis.last(i); ++j) {
          const T* kj = k + sk.at(b, j, h);
          const T* vj = v + sk.at(b, j, h);
          double qk = 0.0, dov = 0.0;
          for (int64_t d = 0; d < s.D; ++d) {
            qk += double(qi[d]) * kj[d];
            dov += double(dOi[d]) * vj[d];
          }
          const double p = std::exp(scale * qk - l);
          const double ds = p * (dov - delta);
          for (int64_t d = 0; d < s.D; ++d) {
            dq_acc[size_t(d)] += scale * ds * kj[d];
            dk_acc[size_t(j * s.D + d)] += scale * ds * qi[d];
            dv_acc[size_t(j * s.D + d)] += p * dOi[d];
          }
        }
        T* dqi = dq + s.at(b, i, h);
        for (int64_t d = 0; d < s.D; ++d) dqi[d] = T(dq_acc[size_t(d)]);
      }
      for (int64_t j = 0; j < sk.T; ++j) {
        for (int64_t d = 0; d < s.D; ++d) {
          dk[sk.at(b, j, h) + d] = T(dk_acc[size_t(j * s.D + d)]);
          dv[sk.at(b, j, h) + d] = T(dv_acc[size_t(j * s.D + d)]);
        }
      }
    }
  }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(Rope, rope_kernel);
COIL_CPU_FLOAT_KERNELS(Attention, attention_kernel);
COIL_CPU_FLOAT_KERNELS(AttentionBackward, attention_backward_kernel);

}  // namespace coil::cpu
