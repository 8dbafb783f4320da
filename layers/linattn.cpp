// linattn: the feature map, the masked quadratic form (the fused op) and the one-token recurrent step
// (the chunked form is in linattn_chunked.cpp). Internally heads come first: (B, H, T, D).
#include "layers/linattn.h"

#include <cmath>
#include <vector>

#include "core/ops.h"

namespace coil {

namespace linattn_detail {

void check_inputs(const char* who, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a) {
  COIL_CHECK(q.dim() == 4 && k.shape() == q.shape() && v.dim() == 4 && v.size(0) == q.size(0) &&
                 v.size(1) == q.size(1) && v.size(2) == q.size(2),
             who, ": expected q, k (B, T, H, D) and v (B, T, H, Dv), got q ", shape_str(q.shape()),
             ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()));
  if (a.defined())
    COIL_CHECK(a.shape() == (Shape{q.size(0), q.size(1), q.size(2)}), who, ": log decay a ",
               shape_str(a.shape()), " does not match q ", shape_str(q.shape()),
               " (expected (B, T, H))");
}

void check_state(const char* who, const LinAttnState& st, const Tensor& q, const Tensor& v,
                 const LinAttnOptions& opt) {
  if (!st.S.defined()) return;
  const int64_t B = q.size(0), H = q.size(2), F = linattn_feature_dim(opt.power, q.size(3));
  COIL_CHECK(st.S.shape() == (Shape{B, H, F, v.size(3)}), who, ": incoming state S ",
             shape_str(st.S.shape()), " does not match (B, H, F, Dv) = ",
             shape_str(Shape{B, H, F, v.size(3)}));
  if (opt.sm_norm)
    COIL_CHECK(st.z.defined() && st.z.shape() == (Shape{B, H, F}), who,
               ": sm_norm needs an incoming denominator z (B, H, F) = ", shape_str(Shape{B, H, F}),
               ", got ", st.z.defined() ? shape_str(st.z.shape()) : std::string("none"));
}

Tensor clamp_denominator(const Tensor& den) {
  return scale(relu(scale(den, 1.0, -kDenominatorEps)), 1.0, kDenominatorEps);
}

Tensor causal_additive_mask(int64_t n, const Tensor& like) {
  std::vector<double> m(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) m[size_t(i * n + j)] = -1e30;
  return Tensor::from_vector(m, {n, n}, like.dtype(), like.device());
}

Tensor causal_unit_mask(int64_t n, const Tensor& like) {
  std::vector<double> m(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) m[size_t(i * n + j)] = 1.0;
  return Tensor::from_vector(m, {n, n}, like.dtype(), like.device());
}

}  // namespace linattn_detail

using namespace linattn_detail;

int64_t linattn_feature_dim(LinPower power, int64_t D) {
  return power == LinPower::One ? D : D * (D + 1) / 2;
}

Tensor linattn_features(const Tensor& x, LinPower power) {
  if (power == LinPower::One) return x;
  const int64_t D = x.size(-1);
  // Row a of the upper triangle: x_a * x_{a..D-1}; the diagonal entry leads each row.
  std::vector<Tensor> rows;
  std::vector<double> coef;
  rows.reserve(size_t(D));
  for (int64_t a = 0; a < D; ++a) {
    rows.push_back(x.narrow(-1, a, 1) * x.narrow(-1, a, D - a));  // (..., D - a)
    coef.push_back(1.0);
    coef.insert(coef.end(), size_t(D - a - 1), std::sqrt(2.0));
  }
  Tensor c = Tensor::from_vector(coef, {int64_t(coef.size())}, x.dtype(), x.device());  // (F)
  return concat(rows, -1) * c;                                                         // (..., F)
}

Tensor linattn_quadratic(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                         const LinAttnOptions& opt) {
  check_inputs("linattn_quadratic", q, k, v, a);
  // The fused op (core/ops.h: linattn) computes exactly the masked form: u_ij = q_i . (s k_j), the
  // square before the decay exp(Acs_i - Acs_j), causal, the same clamp; Acs stays in fp32 for bf16.
  Tensor acs;  // (B, T, H) Acs, summed in fp32 (f64 stays f64)
  if (a.defined()) acs = cumsum(a.to(a.dtype() == DType::F64 ? DType::F64 : DType::F32), 1);
  return linattn(q, k, v, acs, opt.power == LinPower::Two ? 2 : 1, opt.sm_norm, opt.scale);
}

namespace {
// (B, T, H) Acs, summed in fp32 (f64 stays f64), or undefined without decay.
Tensor cumulative_decay(const Tensor& a) {
  return a.defined() ? cumsum(a.to(a.dtype() == DType::F64 ? DType::F64 : DType::F32), 1) : Tensor();
}
}  // namespace

Tensor linattn_exp_quadratic(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, double scale) {
  check_inputs("linattn_exp_quadratic", q, k, v, a);
  return linattn(q, k, v, cumulative_decay(a), kLinAttnPowerExp, true, scale);
}

Tensor linattn_exp_quadratic_qkv(const Tensor& qkv, const Tensor& a, int64_t n_heads, double scale) {
  return linattn_qkv(qkv, cumulative_decay(a), n_heads, kLinAttnPowerExp, true, scale);
}

Tensor linattn_quadratic_qkv(const Tensor& qkv, const Tensor& a, int64_t n_heads, const LinAttnOptions& opt) {
  Tensor acs;  // (B, T, H) Acs, summed in fp32 as in linattn_quadratic
  if (a.defined()) acs = cumsum(a.to(a.dtype() == DType::F64 ? DType::F64 : DType::F32), 1);
  return linattn_qkv(qkv, acs, n_heads, opt.power == LinPower::Two ? 2 : 1, opt.sm_norm, opt.scale);
}

Tensor linattn_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                    const LinAttnOptions& opt, LinAttnState& state) {
  check_inputs("linattn_step", q, k, v, a);
  COIL_CHECK(q.size(1) == 1, "linattn_step: expected one token (B, 1, H, D), got ",
             shape_str(q.shape()));
  check_state("linattn_step", state, q, v, opt);
  Tensor qh = q.permute({0, 2, 1, 3});                                          // (B, H, 1, D)
  Tensor pq = linattn_features(qh, opt.power);                                 // (B, H, 1, F)
  Tensor pk = linattn_features(scale(k, opt.scale).permute({0, 2, 1, 3}), opt.power);  // (B, H, 1, F)
  Tensor vh = v.permute({0, 2, 1, 3});                                          // (B, H, 1, Dv)
  Tensor S = matmul(pk.transpose(-1, -2), vh);                                  // (B, H, F, Dv)
  Tensor z = pk.squeeze(2);                                                     // (B, H, F)
  if (state.S.defined()) {
    Tensor S_prev = state.S, z_prev = state.z;
    if (a.defined()) {
      Tensor decay = exp(a.permute({0, 2, 1}));                                 // (B, H, 1)
      S_prev = S_prev * decay.unsqueeze(3);
      if (opt.sm_norm) z_prev = z_prev * decay;
    }
    S = S + S_prev;
    if (opt.sm_norm) z = z + z_prev;
  }
  Tensor y = matmul(pq, S);                                                     // (B, H, 1, Dv)
  if (opt.sm_norm) y = y / clamp_denominator(matmul(pq, z.unsqueeze(3)));       // / (B, H, 1, 1)
  state.S = S;
  state.z = opt.sm_norm ? z : Tensor();
  return y.permute({0, 2, 1, 3});                                               // (B, 1, H, Dv)
}

}  // namespace coil
