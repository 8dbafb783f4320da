// The scans of the Mamba mixers (spec/models.md sections 7-8): the reference forms composed from
// autograd ops (the engine derives every gradient, including d(state) of sequence sharding), and
// ssd_chunked, which runs the fused SSD op.
//   SSD (Mamba-2): a scalar log-decay per head and token; the state is S (B, H, P, N) (mamba_ssm's
//     (headdim, d_state) layout): S_t = e^{a_t} S_{t-1} + v_t k_t^T, y_t = S_t q_t. Mamba-2 maps
//     q = C, k = B, v = dt x, a = A dt: causal linear attention with decay, no scale, no normalisation.
//   Selective scan (Mamba-1, S6): a diagonal log-decay a = dt A per (channel, state); the state is
//     h (B, D, N): h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t, y_t = h_t C_t (the D skip is the caller's).
// Decays are masked BEFORE exp (a large negative additive mask, not -inf), so the non-causal half of
// e^{b_i - b_j} is exactly 0 without overflow or NaN in any dtype.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace coil {

// Which form a Mamba mixer's scan runs in (forward uses kChunked; kQuadratic is the masked-matrix
// reference from a zero state; kRecurrent is token-by-token, what step runs).
enum class ScanForm { kQuadratic, kChunked, kRecurrent };

// --- SSD --------------------------------------------------------------------------------------------
// q, k (B, G, T, N) with G = 1 (shared by every head, ngroups 1) or G = H; v (B, H, T, P); a (B, H, T).
// Masked-matrix form from a zero state: y_i = sum_{j<=i} (q_i . k_j) e^{Acs_i - Acs_j} v_j. O(T^2).
Tensor ssd_quadratic(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a);
// Chunked form (section 7): the quadratic form inside chunks of `chunk` tokens (T need not be a
// multiple), states passed between chunks. s0 (B, H, P, N) or undefined (= zero); *s_out, when given,
// receives the state after the last token. -> y (B, H, T, P). Runs the fused op ssd_scan (core/ops.h):
// a, s0 and the state in the statistics precision (f32 for bf16 inputs).
Tensor ssd_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, int64_t chunk,
                   const Tensor& s0, Tensor* s_out);
// The same chunked form composed from autograd ops (the fused op's reference in the tests): the
// intra-chunk masked matrices, per-chunk states and one masked matrix passing them between chunks.
Tensor ssd_chunked_composed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, int64_t chunk,
                            const Tensor& s0, Tensor* s_out);
// One token: q, k (B, G, N), v (B, H, P), a (B, H); s (B, H, P, N) is replaced by the new state
// (undefined = zero start). -> y (B, H, P)
Tensor ssd_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, Tensor& s);

// --- selective scan (Mamba-1) -----------------------------------------------------------------------
// u, dt (B, T, D); A (D, N) (negative); Bm, Cm (B, T, N); h0 (B, D, N) or undefined (= zero).
// Chunked form: inside a chunk h_i = e^{b_i} h_in + sum_{j<=i} e^{b_i - b_j} dt_j u_j B_j with b the
// chunk-local cumsum of dt A per (channel, state); chunk >= T is the one-shot quadratic form. Memory is
// O(B T chunk D N). -> y (B, T, D); *h_out (B, D, N) when given.
Tensor selective_scan_chunked(const Tensor& u, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                              const Tensor& Cm, int64_t chunk, const Tensor& h0, Tensor* h_out);
// One token: u, dt (B, D), Bm, Cm (B, N); h (B, D, N) replaced (undefined = zero start). -> y (B, D)
Tensor selective_scan_step(const Tensor& u, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                           const Tensor& Cm, Tensor& h);

// --- causal depthwise conv with a carry ---------------------------------------------------------------
// x (B, T, C), w (C, W), b (C); carry_in (B, W - 1, C): the raw inputs of the W - 1 tokens before x
// (undefined = the sequence start, zeros). *carry_out, when given, receives the last W - 1 raw rows of
// [carry_in, x] (differentiable, so d(carry) flows back to the shard that produced it). -> (B, T, C)
Tensor causal_conv_with_carry(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& carry_in,
                              Tensor* carry_out);

// Additive causal mask (rows, cols): 0 where col <= row + diag, a large negative number elsewhere.
Tensor causal_log_mask(int64_t rows, int64_t cols, int64_t diag, DType dtype, Device device);

}  // namespace coil
