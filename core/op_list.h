// THE op list: every kernel-level op coil has, one line each. A backend implements an op by registering
// a kernel for (backend, op, dtype) in the Registry; the op harness (tests/core/op_harness_test.cpp)
// must have a case covering every entry, and a test fails when one is missing.
//
// Columns: enum name, printed name, kind. Kind: F = differentiable forward op (gradient-checked by
// finite differences), B = backward kernel of a fused op (checked through its forward op's gradient
// check), N = not differentiable (checked against a reference only).
//
// Statistics outputs (rstd, lse, loss, sum_squares) are f64 for f64 inputs and f32 otherwise.
//
// Conventions for every kernel: inputs and outputs are given in KernelArgs::in / ::out, already
// allocated by the front-end (core/ops/*.cpp) with the shapes written beside each op below. Unless an op
// says "strided", inputs and outputs are contiguous. Accumulation is in at least the input precision.
#pragma once

#define COIL_OP_LIST(X)                                                                                \
  /* memory */                                                                                         \
  X(Fill, "fill", N)             /* out: any (strided); attrs.alpha = value                         */ \
  X(Copy, "copy", F)             /* in: src (strided, same shape); out: dst (strided); casts dtype  */ \
  /* elementwise unary: in x, out y, same shape                                                     */ \
  X(Exp, "exp", F)                                                                                     \
  X(Log, "log", F)                                                                                     \
  X(Softplus, "softplus", F)     /* log(1+e^x), stable for large |x|                               */ \
  X(Sigmoid, "sigmoid", F)                                                                             \
  X(Silu, "silu", F)                                                                                   \
  X(Relu, "relu", F)                                                                                   \
  X(ReluBackward, "relu_backward", B) /* in: dy, x -> out: dx = dy where x > 0, else 0             */ \
  X(Square, "square", F)                                                                               \
  X(Scale, "scale", F)           /* y = alpha * x + beta                                           */ \
  /* elementwise binary: in a, b (strided, broadcast to out's shape via stride 0); out contiguous   */ \
  X(Add, "add", F)                                                                                     \
  X(Sub, "sub", F)                                                                                     \
  X(Mul, "mul", F)                                                                                     \
  X(Div, "div", F)                                                                                     \
  /* reductions over attrs.dim of an (outer, n, inner) view; out keeps dim as size 1                */ \
  X(Sum, "sum", F)                                                                                     \
  X(Mean, "mean", F)                                                                                   \
  X(Max, "max", F)               /* out: values; backward routes grad to the first max             */ \
  X(MaxBackward, "max_backward", B) /* in: dy, x, y -> out: dx                                     */ \
  X(Cumsum, "cumsum", F)         /* attrs.dim; attrs.reverse: y_t = sum_{t'>=t} x_t'               */ \
  X(SumSquares, "sum_squares", N) /* in: x (any) -> out: () sum of x^2   */ \
  /* linear algebra                                                                                */ \
  X(Matmul, "matmul", F)         /* in: a (Ba, M, K) or (Ba, K, M) if trans_a; b (Bb, K, N) or     */ \
                                 /* (Bb, N, K) if trans_b; Ba, Bb in {1, Bt}; out: (Bt, M, N).      */ \
                                 /* attrs.beta = 1 accumulates into out (out += a b)               */ \
  X(Linear, "linear", F)         /* in: x (M, K), w (N, K), [b (N)] -> out: y (M, N) = x w^T + b    */ \
  /* model ops                                                                                     */ \
  X(Embedding, "embedding", F)   /* in: table (V, C), ids (M) i32 -> out: (M, C); ids checked < V  */ \
  X(EmbeddingBackward, "embedding_backward", B) /* in: dy (M, C), ids (M) -> out: dtable (V, C)    */ \
  X(RMSNorm, "rms_norm", F)      /* in: x (M, C), w (C); attrs.eps -> out: y (M, C), rstd (M)       */ \
  X(RMSNormBackward, "rms_norm_backward", B) /* in: dy, x, w, rstd -> out: dx (M, C), dw (C)       */ \
  X(AddRMSNorm, "add_rms_norm", F) /* in: x, res (M, C), w (C); attrs.eps -> out: h = x + res,      */ \
                                 /* y = rms_norm(h) * w (M, C), rstd (M)                           */ \
  X(AddRMSNormBackward, "add_rms_norm_backward", B) /* in: dy, dh, h, w, rstd -> out: dx (= dres), dw */ \
  X(SwiGLU, "swiglu", F)         /* in: gate, up (same shape) -> out: silu(gate) * up              */ \
  X(SwiGLUBackward, "swiglu_backward", B) /* in: dy, gate, up -> out: dgate, dup                    */ \
  X(Softmax, "softmax", F)       /* over the last dim: in x (M, n) -> out y (M, n)                 */ \
  X(SoftmaxBackward, "softmax_backward", B) /* in: dy, x -> out: dx (y recomputed from x)         */ \
  X(Rope, "rope", F)             /* in: x (B, T, H, D), D even -> out: same; interleaved pairs     */ \
                                 /* (2i, 2i+1) rotate by (attrs.pos_offset + t) * theta^(-2i/D);   */ \
                                 /* attrs.reverse rotates by minus the angle (the backward);     */ \
                                 /* attrs.bf16_positions rounds p to bf16 first (paper baseline) */ \
  X(Attention, "attention", F)   /* in: q (B, Tq, H, D), k, v (B, Tk, H, D) -> out: o (B, Tq, H, D), */ \
                                 /* lse (B, H, Tq); attrs.scale multiplies q.k. attrs.causal: query  */ \
                                 /* i sits at P + i, P = Tk - Tq >= 0, and sees keys j <= P + i      */ \
                                 /* (bottom-right aligned; Tq == Tk is plain causal); else every key */ \
                                 /* visible (Tk >= 1)                                                */ \
  X(AttentionBackward, "attention_backward", B) /* in: do, q, k, v, o, lse[, dlse     */ \
                                 /* (B, H, Tq) stat dtype, lse's gradient] -> out: dq (B, Tq, H, D), */ \
                                 /* dk, dv (B, Tk, H, D)                                             */ \
  X(AttentionDecode, "attention_decode", N) /* the decode step, forward only: in q (B, 1, H, D),  */ \
                                 /* k, v (B, P, H, D), P >= 1 -> out: o (B, 1, H, D); every key      */ \
                                 /* visible; attrs.scale multiplies q.k                            */ \
  X(CrossEntropy, "cross_entropy", F) /* in: logits (M, V), targets (M) i32 -> out: loss ()         */ \
                                 /* f64 mean over targets != attrs.ignore_index (0 if none), lse (M) */ \
  X(CrossEntropyBackward, "cross_entropy_backward", B) /* in: dloss (), logits, targets, lse ->    */ \
                                 /* out: dlogits (M, V)                                            */ \
  X(Conv1d, "conv1d", F)         /* causal depthwise: in x (B, T, C), w (C, W), b (C) -> y (B, T, C) */ \
                                 /* y[t,c] = b[c] + sum_k w[c,k] x[t-(W-1)+k, c], zero before t=0  */ \
  X(Conv1dBackward, "conv1d_backward", B) /* in: dy, x, w -> out: dx, dw, db                       */ \
  X(Concat, "concat", F)         /* in: x_0..x_n (strided), attrs.dim -> out: concatenation       */ \
  X(LinAttn, "linattn", F)       /* masked quadratic linear attention (layers/linattn.h): in: q, k  */ \
                                 /* (B, T, H, D), v (B, T, H, Dv), acs (B, T, H) stat dtype or     */ \
                                 /* undefined (no decay) -> out: y (B, T, H, Dv), den (B, H, T)    */ \
                                 /* stat dtype. w_ij = f(s q_i.k_j) exp(acs_i - acs_j), j <= i,    */ \
                                 /* f = u (attrs.power 1) or u^2 (power 2), s = attrs.scale;       */ \
                                 /* den_i = sum_j w_ij; y_i = sum_j w_ij v_j, divided by           */ \
                                 /* max(den_i, 1e-8) when attrs.sm_norm. power 0 (exp, sm_norm):   */ \
                                 /* softmax_j(u_ij + acs_i - acs_j), den_i = its log-sum-exp       */ \
  X(LinAttnBackward, "linattn_backward", B) /* in: dy, q, k, v, acs|undefined, y, den ->            */ \
                                 /* out: dq, dk, dv, dacs (stat dtype; undefined without acs)      */ \
  X(SelectiveScan, "selective_scan", F) /* Mamba-1 scan (layers/ssm_scan.h): in: u (B, T, D), dt   */ \
                                 /* (B, T, D) stat dtype, A (D, N) stat, Bm, Cm (B, T, N), h0       */ \
                                 /* (B, D, N) stat or undefined (zero) -> out: y (B, T, D), hT     */ \
                                 /* (B, D, N) stat, hc (B, ceil(T / kSelectiveScanChunk), D, N)    */ \
                                 /* stat: the state entering each chunk (for the backward).        */ \
                                 /* h_t = exp(dt_t A) h_{t-1} + dt_t u_t Bm_t, y_t = h_t . Cm_t      */ \
  X(SelectiveScanBackward, "selective_scan_backward", B) /* in: dy, dhT|undefined, u, dt, A, Bm,  */ \
                                 /* Cm, hc -> out: du, ddt, dA, dBm, dCm, dh0 (dtypes of the inputs) */ \
  X(SsdChunked, "ssd_chunked", F) /* Mamba-2 SSD (layers/ssm_scan.h): in: q, k (B, G, T, N), G in   */ \
                                 /* {1, H}, v (B, H, T, P), a (B, H, T) stat <= 0, s0 (B, H, P, N)  */ \
                                 /* stat or undefined (zero); attrs.dim = chunk length C -> out:   */ \
                                 /* y (B, H, T, P), sT (B, H, P, N) stat, sc (B, H, ceil(T / C), P, */ \
                                 /* N) stat: the state entering each chunk. b = chunk-local cumsum */ \
                                 /* of a; y_i = sum_{j<=i in chunk} (q_i.k_j) e^{b_i-b_j} v_j +      */ \
                                 /* e^{b_i} S q_i; S' = e^{b_last} S + sum_j e^{b_last-b_j} v_j k_j^T */ \
  X(SsdChunkedBackward, "ssd_chunked_backward", B) /* in: dy, dsT|undefined, q, k, v, a, sc;       */ \
                                 /* attrs.dim = C -> out: dq, dk, dv, da, ds0                        */ \
  X(LinAttnChunked, "linattn_chunked", F) /* chunked linear attention, spec 7 (core/ops.h):        */ \
                                 /* in: q, k (B, T, H, D), v (B, T, H, Dv), a (B, T, H) log decay  */ \
                                 /* or undefined, S0 (B, H, F, Dv), z0 (B, H, F) or undefined;    */ \
                                 /* attrs power, sm_norm, scale, dim = chunk length C -> out: y    */ \
                                 /* (B, T, H, Dv), S (B, H, F, Dv), z (B, H, F) (undefined without */ \
                                 /* sm_norm), Sc (nc, B, H, F, Dv), zc (nc, B, H, F) (the state    */ \
                                 /* entering each chunk), den (B, H, T) (sm_norm); all but y stat  */ \
  X(LinAttnChunkedBackward, "linattn_chunked_backward", B) /* in: dy, dS|undef, dz|undef, q, k, v, */ \
                                 /* a|undef, y, Sc, zc|undef, den -> out: dq, dk, dv, da|undef,   */ \
                                 /* dS0, dz0|undef (S, z, a gradients in stat dtype)               */ \
  /* optimizer                                                                                     */ \
  X(AdamW, "adamw", N)           /* in-place on in: param, grad, m, v (f32 or f64, same shape);    */ \
                                 /* attrs: lr, beta1, beta2, eps, weight_decay, step (1-based)     */ \
  X(AdamWMulti, "adamw_multi", N) /* AdamW on n tensors at once: in (param, grad, m, v) x n, one   */ \
                                 /* dtype and device, each quadruple as AdamW; the same attrs      */ \
  X(SumSquaresMulti, "sum_squares_multi", N) /* for the global gradient norm: in x_0..x_{n-1}   */ \
                                 /* (contiguous, one dtype and device) -> out: (n) stat dtype,     */ \
                                 /* entry i the sum of x_i's squared elements                      */

namespace coil {

enum class Op : int {
#define COIL_OP_ENUM(name, str, kind) name,
  COIL_OP_LIST(COIL_OP_ENUM)
#undef COIL_OP_ENUM
      Count
};
inline constexpr int kNumOps = int(Op::Count);

enum class OpKind : char { F = 'F', B = 'B', N = 'N' };

const char* op_name(Op op);
OpKind op_kind(Op op);
bool op_from_name(const char* name, Op* out);

}  // namespace coil
