// The op front-ends: what layers and tests call. Each checks its arguments (shape and dtype errors name
// both tensors), allocates outputs, dispatches the kernel of the inputs' backend and dtype, and records
// an autograd node whose backward is written in terms of other ops (or the op's fused backward
// kernel). All tensors of one call must share device and dtype (except integer ids / targets).
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace coil {

// --- elementwise --------------------------------------------------------------------------------------
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor square(const Tensor& x);
Tensor scale(const Tensor& x, double alpha, double beta = 0.0);  // alpha * x + beta
Tensor neg(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // numpy broadcasting
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(const Tensor& a, double s) { return scale(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return scale(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// --- reductions ---------------------------------------------------------------------------------------
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements -> shape ()
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor cumsum(const Tensor& x, int64_t dim, bool reverse = false);
// Sum a broadcast gradient back to `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);
// Sum of squares of all elements, accumulated in f64 (f32 accumulator for f32/bf16 on GPUs). Not
// differentiable; used for gradient norms.
Tensor sum_squares(const Tensor& x);

// --- linear algebra -----------------------------------------------------------------------------------
// a (..., M, K) @ b (..., K, N) with broadcast batch dims; 1-D operands are not accepted.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., K), w (N, K), b (N) optional -> (..., N) = x w^T + b
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// --- model ops ----------------------------------------------------------------------------------------
Tensor embedding(const Tensor& table, const Tensor& ids);           // (V, C), ids (...) -> (..., C)
Tensor rms_norm(const Tensor& x, const Tensor& w, double eps);      // over the last dim
// Residual add fused with the RMSNorm that reads it: {h = x + res, rms_norm(h, w, eps)}, h rounded to
// the dtype before the norm (the same values as add then rms_norm).
std::pair<Tensor, Tensor> add_rms_norm(const Tensor& x, const Tensor& res, const Tensor& w, double eps);
Tensor swiglu(const Tensor& gate, const Tensor& up);                // silu(gate) * up
Tensor softmax(const Tensor& x);                                    // over the last dim
// x (B, T, H, D): position of token t is pos_offset + t, rounded to bf16 when bf16_positions (how
// the paper's code trained its softmax baseline: positions above 256 collapse onto a coarser grid).
Tensor rope(const Tensor& x, int64_t pos_offset = 0, double theta = 10000.0,
            bool bf16_positions = false);
// Causal softmax attention, q, k, v (B, T, H, D) -> (B, T, H, D); scale defaults to 1/sqrt(D).
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                        std::optional<double> scale = std::nullopt);
// Softmax attention of q (B, Tq, H, D) over k, v (B, Tk, H, D) -> (B, Tq, H, D), fused (op Attention).
// causal: query i sits at position Tk - Tq + i and sees keys j <= Tk - Tq + i (needs Tk >= Tq; a
// block of queries at the end of its keys, as sequence shards and KV caches have it); otherwise every
// key is visible (Tk >= 1). lse, when given, receives each query's log-sum-exp of its scaled scores
// (B, Tq, H) in the statistics dtype (f64 for f64, else f32), differentiable: partial attentions over
// disjoint key sets merge exactly through it.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> scale,
                 bool causal, Tensor* lse = nullptr);
// One decode step of softmax attention: q (B, 1, H, D) over a K/V cache k, v (B, P, H, D), every key
// visible -> (B, 1, H, D); scale defaults to 1/sqrt(D). Forward only (no autograd node): an input that
// requires grad while grad mode is on is an error (prefix_attention is the differentiable form).
Tensor attention_decode(const Tensor& q, const Tensor& k, const Tensor& v,
                        std::optional<double> scale = std::nullopt);
// Masked quadratic linear attention (spec/models.md 2, 5, 6; layers/linattn.h documents the forms):
// q, k (B, T, H, D), v (B, T, H, Dv), acs (B, T, H) the cumulative log decay or undefined (no decay).
// w_ij = f(s q_i.k_j) exp(acs_i - acs_j) for j <= i with f(u) = u (power 1) or u^2 (power 2);
// y_i = sum_j w_ij v_j, divided by max(sum_j w_ij, kLinAttnDenominatorEps) when sm_norm (the clamp's
// gradient is relu's). acs is used in f32 for f32 / bf16 inputs (its gradient comes back in its own
// dtype). -> y (B, T, H, Dv); `den`, when given, receives sum_j w_ij (B, H, T) (not differentiable).
inline constexpr double kLinAttnDenominatorEps = 1e-8;
// power kLinAttnPowerExp (2Mamba-E, spec 6): y_i = sum_j softmax_j(s q_i.k_j + acs_i - acs_j) v_j, computed
// with the row max; sm_norm must be true (implied) and `den` receives each row's log-sum-exp.
inline constexpr int64_t kLinAttnPowerExp = 0;
Tensor linattn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& acs, int64_t power,
               bool sm_norm, double scale, Tensor* den = nullptr);
// linattn on one packed projection qkv (B, T, 3 H D), q | k | v along the last dim (each (H, D)): the
// same y and den, and one packed gradient, without splitting q, k, v into copies or their gradients
// into zero-filled buffers and sums.
Tensor linattn_qkv(const Tensor& qkv, const Tensor& acs, int64_t n_heads, int64_t power, bool sm_norm,
                   double scale, Tensor* den = nullptr);
// Mamba-1 selective scan (spec/models.md 8; layers/ssm_scan.h has the composed reference forms):
// u (B, T, D), dt (B, T, D) (already softplus'ed), A (D, N), Bm, Cm (B, T, N), h0 (B, D, N) or
// undefined (zero). h_t = exp(dt_t A) h_{t-1} + dt_t u_t Bm_t, y_t = h_t . Cm_t. dt, A, h0 and the state
// are in the statistics precision (f32 for f32 / bf16 inputs, f64 for f64); under autocast u, Bm, Cm
// run in bf16. The backward recomputes the states from those saved every kSelectiveScanChunk tokens.
// -> y (B, T, D) in u's dtype; *h_out, when given, the state after the last token (differentiable).
inline constexpr int64_t kSelectiveScanChunk = 64;
Tensor selective_scan(const Tensor& u, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                      const Tensor& h0, Tensor* h_out = nullptr);
// Mamba-2 SSD in chunks of `chunk` tokens, one fused op (SsdChunked; layers/ssm_scan.h has the math
// and the composed forms): q, k (B, G, T, N) with G = 1 (shared by every head) or G = H, v (B, H, T, P),
// a (B, H, T) the log decay (<= 0), s0 (B, H, P, N) or undefined (zero). a, s0 and the state are in the
// statistics precision; under autocast q, k, v run in bf16. -> y (B, H, T, P) in v's dtype; *s_out,
// when given, the state after the last token (differentiable).
Tensor ssd_scan(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, int64_t chunk,
                const Tensor& s0, Tensor* s_out = nullptr);
// Chunked linear attention with state in / out (spec/models.md 7; layers/linattn.h documents the forms
// and the symmetric feature map of power 2, F = linattn_chunked_features(power, D)): q, k (B, T, H, D),
// v (B, T, H, Dv), a (B, T, H) the per-token log decay (<= 0) or undefined, S0 (B, H, F, Dv) and z0
// (B, H, F) the incoming state or undefined (zero; z0 only with sm_norm). Scale s multiplies k once.
// The same y as linattn on the cumsum of a (plus the incoming state's readout); a, the states and
// their gradients are in the statistics precision. -> y (B, T, H, Dv), T > 0; *S_out, *z_out, when
// given, the state after the last token (differentiable; z only with sm_norm).
inline int64_t linattn_chunked_features(int64_t power, int64_t D) { return power == 2 ? D * (D + 1) / 2 : D; }
Tensor linattn_chunked_op(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, const Tensor& S0,
                          const Tensor& z0, int64_t power, bool sm_norm, double scale, int64_t chunk,
                          Tensor* S_out = nullptr, Tensor* z_out = nullptr);
// logits (..., V), targets (...) i32 -> () mean over targets != ignore_index (0 when none counted).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// Causal depthwise conv: x (B, T, C), w (C, W), b (C) -> (B, T, C).
Tensor conv1d_causal(const Tensor& x, const Tensor& w, const Tensor& b);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);

// --- optimizer (in place, not recorded) ---------------------------------------------------------------
struct AdamWParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;  // 1-based, for bias correction
};
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                const AdamWParams& p);
// adamw_step on every params[i] (with grads[i], ms[i], vs[i]) in a few launches: the same values as
// one adamw_step per tensor. All tensors share one dtype and device.
void adamw_step_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                      const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, const AdamWParams& p);
// sum_squares of every xs[i] -> (n) (f64 for f64, f32 otherwise; entry i as sum_squares(xs[i]) on the
// CPU) in one pass over all of them, for the global gradient norm; the tensors share one dtype and
// device. Not recorded for autograd.
Tensor sum_squares_multi(const std::vector<Tensor>& xs);

}  // namespace coil
