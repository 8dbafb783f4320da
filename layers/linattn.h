// The math of the linear-attention family (spec/models.md sections 2, 5, 6, 7) on q, k (B, T, H, D),
// v (B, T, H, Dv) and an optional per-head log decay a (B, T, H) (a <= 0; undefined = no A-mask), in
// three forms that agree to rounding: the masked quadratic reference, the chunked linear-time form
// with state passing, and the one-token recurrent step. The quadratic form is the fused op linattn and
// the chunked form the fused op linattn_chunked_op (core/ops.h, CPU and CUDA kernels); the step is
// composed of core autograd ops, and so is linattn_detail::linattn_chunked_composed (the chunked
// form's reference), so the forms check each other independently.
//
// Choices shared by every form (so they agree exactly, not just in the limit):
//   * s enters once: k <- s k on entry (k_scaled), so u_ij = q_i . k_scaled_j and the state holds the
//     spec's k^ = phi(s k); queries are never scaled.
//   * Power 2 uses the SYMMETRIC feature map phi(x)_ab = c_ab x_a x_b (a <= b, c_aa = 1, c_ab = sqrt 2,
//     ordered a-major: (0,0) (0,1) .. (0,D-1) (1,1) ..), F = D (D+1) / 2 = 2080 for D = 64, so
//     phi(q).phi(k) = (q.k)^2 exactly. Every form and every state uses it (the spec's 135,392 values
//     per head). A Kronecker state (F = D*D, e.g. of a GPU kernel) is symmetric in (a, b) and
//     converts as S_sym[ab] = c_ab S_kron[a,b]. Power 1: phi = identity, F = D (activations such as
//     the ReLU of the "Linear" baseline are applied to q, k before).
//   * sm_norm divides by max(den, kDenominatorEps) (clamp composed as relu(den - eps) + eps), den =
//     sum_j w_ij with the s-scaled, decayed weights. The weights are >= 0 for every valid config (power
//     2, or power 1 with ReLU features), so a zero denominator means a zero numerator and y = 0.
//   * Decay factors are masked BEFORE exp (-1e30 added where j > i), so nothing overflows.
#pragma once

#include <cstdint>

#include "core/ops.h"
#include "core/tensor.h"

namespace coil {

enum class LinPower { One, Two };

// Absolute clamp of the sm_norm denominator (units: sum of s-scaled, decayed weights).
inline constexpr double kDenominatorEps = kLinAttnDenominatorEps;

struct LinAttnOptions {
  LinPower power = LinPower::Two;
  bool sm_norm = true;  // false: output_norm (plain weighted sum, no z)
  double scale = 0.125;  // s, multiplies k once
};

// The state carried between chunks, shards and decode steps. S (B, H, F, Dv) numerator; z (B, H, F)
// denominator (sm_norm only). Undefined S = the sequence start (zero state).
struct LinAttnState {
  Tensor S;
  Tensor z;
};

// F for head dim D.
int64_t linattn_feature_dim(LinPower power, int64_t D);
// phi: x (..., D) -> (..., F) (identity for power 1, the symmetric square map for power 2).
Tensor linattn_features(const Tensor& x, LinPower power);

// Masked matrix form through the fused op core/ops.h linattn (ops LinAttn / LinAttnBackward). -> (B, T, H, Dv)
Tensor linattn_quadratic(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                         const LinAttnOptions& opt);
// The same on the packed projection qkv (B, T, 3 H D) (q | k | v, each (H, D)), through core/ops.h
// linattn_qkv: q, k, v are read in place and their gradients come back as one packed tensor.
// -> (B, T, H, D)
Tensor linattn_quadratic_qkv(const Tensor& qkv, const Tensor& a, int64_t n_heads, const LinAttnOptions& opt);

// 2Mamba-E (spec/models.md 6): y_i = sum_{j<=i} softmax_j(s q_i.k_j + Acs_i - Acs_j) v_j, Acs the cumsum
// of the log decay a (B, T, H) (undefined: plain causal softmax), from the sequence start, through the
// exp form of the fused op (core/ops.h kLinAttnPowerExp). A KV prefix or a sequence shard goes through
// layers/prefix_attention.h instead. -> (B, T, H, Dv)
Tensor linattn_exp_quadratic(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, double scale);
// The same on the packed projection qkv (B, T, 3 H D), as linattn_quadratic_qkv. -> (B, T, H, D)
Tensor linattn_exp_quadratic_qkv(const Tensor& qkv, const Tensor& a, int64_t n_heads, double scale);

// Chunked form, chunk length `chunk` (T need not be a multiple). `in` may be null or hold an undefined
// S (zero start); `out`, when given, receives the state after the last token. -> (B, T, H, Dv)
Tensor linattn_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                       const LinAttnOptions& opt, int64_t chunk, const LinAttnState* in,
                       LinAttnState* out);

// One token: q, k (B, 1, H, D), v (B, 1, H, Dv), a (B, 1, H) or undefined. state: in/out.
// S_t = e^{a_t} S_{t-1} + k^_t v_t^T, z_t likewise, y = q^.S_t / max(q^.z_t, eps). -> (B, 1, H, Dv)
Tensor linattn_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                    const LinAttnOptions& opt, LinAttnState& state);

namespace linattn_detail {
// Shared pieces of the forms (layers/linattn*.cpp).
void check_inputs(const char* who, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a);
// An incoming state must be empty or hold S (B, H, F, Dv) (and z (B, H, F) with sm_norm).
void check_state(const char* who, const LinAttnState& st, const Tensor& q, const Tensor& v,
                 const LinAttnOptions& opt);
// max(den, kDenominatorEps), differentiable.
Tensor clamp_denominator(const Tensor& den);
// (n, n) additive mask: 0 where j <= i, -1e30 where j > i.
Tensor causal_additive_mask(int64_t n, const Tensor& like);
// (n, n) multiplicative mask: 1 where j <= i, else 0.
Tensor causal_unit_mask(int64_t n, const Tensor& like);
// linattn_chunked composed of autograd ops with a host loop over chunks (the reference of the fused
// op; tests only): the same contract as linattn_chunked.
Tensor linattn_chunked_composed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                                const LinAttnOptions& opt, int64_t chunk, const LinAttnState* in,
                                LinAttnState* out);
}  // namespace linattn_detail

}  // namespace coil
