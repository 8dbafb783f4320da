// Causal attention of a block of queries over every earlier key plus its own, as KV-cache decoding and
// sequence sharding of softmax attention and 2Mamba-E use it. Memory is O((Tq + Tk) D) plus a bounded
// score block, never (Tq, Tk), and the scores are recomputed in backward.
// Queries sit at global positions P + i (i < Tq), keys at 0 .. P + Tq - 1 with P = Tk - Tq; key j is
// visible to query i iff j <= P + i. With a log-decay cumsum (acs_q (B, Tq, H) at the queries, acs_k
// (B, Tk, H) at the keys) the score gets + acs_q_i - acs_k_j (2Mamba-E / Forgetting-Transformer style).
// Without one it is the fused attention op (core/ops.h attention(): cuDNN or native kernels on CUDA,
// autocast lowering f32 inputs as causal_attention does, q, k, v of one dtype); with one, blocks of
// queries x keys with an online softmax built from tensor ops (any device), in f32 / f64 with autocast
// off, output and gradients in the inputs' dtypes.
#pragma once

#include "core/tensor.h"

namespace coil {

// q (B, Tq, H, D), k, v (B, Tk, H, D) with Tk >= Tq -> (B, Tq, H, D). lse, when given, receives each
// query's log-sum-exp of its scores (B, Tq, H), differentiable: shards of keys attended separately
// merge exactly through it (the ring of sequence parallel). causal = false: every key is visible
// (keys of an earlier shard; then any Tk >= 1).
Tensor prefix_attention(const Tensor& q, const Tensor& k, const Tensor& v, double sm_scale,
                        const Tensor& acs_q = Tensor(), const Tensor& acs_k = Tensor(),
                        Tensor* lse = nullptr, bool causal = true);

}  // namespace coil
