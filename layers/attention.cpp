// Softmax attention mixer: projections, head split, RoPE and the fused causal attention op (the
// one-token decode step through the fused attention_decode op).
#include "layers/attention.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "layers/prefix_attention.h"

namespace coil {
namespace {

// The K, V ring (SequenceShardHooks::ring): sp - 1 previous_tail steps pass every shard's K, V up the
// ranks, step s bringing shard r - s's to shard r, which attends to it on arrival (every key visible).
// The partial outputs merge by their log-sum-exp: y = sum_s e^{lse_s - lse} y_s, lse = log sum_s
// e^{lse_s}; their backward sends each shard's dK, dV back down the same steps.
Tensor ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const SequenceShardHooks& sh) {
  const int64_t D = q.size(3);
  const double sm = 1.0 / std::sqrt(double(D));
  std::vector<Tensor> ys(1), lses(1);
  ys[0] = prefix_attention(q, k, v, sm, Tensor(), Tensor(), &lses[0]);  // own shard: causal
  Tensor kv = concat({k, v}, 3);                                          // (B, T, H, 2D)
  for (int64_t step = 1; step < sh.size; ++step) {
    kv = sh.previous_tail(kv);  // shard (rank - step)'s K, V; zeros when that is below shard 0
    if (step > sh.rank) continue;
    Tensor lse;
    ys.push_back(prefix_attention(q, kv.narrow(3, 0, D), kv.narrow(3, D, D), sm, Tensor(), Tensor(), &lse,
                                  false));
    lses.push_back(lse);
  }
  // Every rank must run every step's backward (each sends to the previous rank), also where the last
  // step's K, V go unused (rank < sp - 1): a zero-weighted term keeps them in the graph.
  Tensor y = ys[0] + scale(sum(kv), 0.0);
  if (ys.size() == 1) return y;
  std::vector<Tensor> cols;
  for (const Tensor& l : lses) cols.push_back(l.unsqueeze(3));
  Tensor L = concat(cols, 3);                                             // (B, T, H, n)
  Tensor mx = max(L.detach(), 3, true);
  Tensor w = exp(L - (log(sum(exp(L - mx), 3, true)) + mx));              // e^{lse_s - lse}
  y = y * w.narrow(3, 0, 1);
  for (size_t i = 1; i < ys.size(); ++i) y = y + ys[i] * w.narrow(3, int64_t(i), 1);
  return y;                                                               // (B, T, H, D)
}

}  // namespace

SoftmaxAttention::SoftmaxAttention(int64_t dim_, int64_t n_heads_, int64_t head_dim_,
                                   double rope_theta_, Generator& gen, const ParamOptions& opt)
    : dim(dim_), n_heads(n_heads_), head_dim(head_dim_), rope_theta(rope_theta_) {
  COIL_CHECK(head_dim % 2 == 0, "SoftmaxAttention: head_dim must be even for RoPE, got ", head_dim);
  const int64_t inner = n_heads * head_dim;
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * inner, false, gen, opt));
  o = register_module("o", std::make_shared<Linear>(inner, dim, false, gen, opt));
}

Tensor SoftmaxAttention::forward(const Tensor& x) const {
  COIL_CHECK(x.dim() == 3 && x.size(2) == dim, "SoftmaxAttention: expected x (B, T, ", dim,
             "), got ", x.describe());
  const int64_t B = x.size(0), T = x.size(1), H = n_heads, D = head_dim;
  Tensor qkv_out = qkv->forward(x);                                    // (B, T, 3HD)
  std::vector<Tensor> parts = split(qkv_out, {H * D, H * D, H * D}, 2);  // 3 x (B, T, HD)
  Tensor q = parts[0].reshape({B, T, H, D});                            // (B, T, H, D)
  Tensor k = parts[1].reshape({B, T, H, D});                            // (B, T, H, D)
  const SequenceShardHooks* sh = sequence_shard && sequence_shard->size > 1 ? sequence_shard.get() : nullptr;
  if (sh && sh->balanced) return forward_balanced(x, *sh);
  const int64_t pos0 = sh ? sh->offset : 0;  // global position of the first row
  if (use_rope) {
    q = rope(q, pos0, rope_theta, bf16_positions);
    k = rope(k, pos0, rope_theta, bf16_positions);
  }
  Tensor v = parts[2].reshape({B, T, H, D});                            // (B, T, H, D)
  Tensor y;                                                             // (B, T, H, D)
  if (sh && sh->ring) {
    y = ring_attention(q, k, v, *sh);
  } else if (sh) {
    // Sequence shard: every shard's K, V gathered; this shard attends over the earlier ones and itself.
    auto g = sh->all_gather({k, v}, q, &q);
    std::vector<Tensor> ks, vs;
    for (int64_t j = 0; j <= sh->rank; ++j) {
      ks.push_back(g[size_t(j)][0]);
      vs.push_back(g[size_t(j)][1]);
    }
    Tensor k_all = ks.size() == 1 ? ks[0] : concat(ks, 1);             // (B, pos0 + T, H, D)
    Tensor v_all = vs.size() == 1 ? vs[0] : concat(vs, 1);
    y = prefix_attention(q, k_all, v_all, 1.0 / std::sqrt(double(D)));
  } else {
    y = causal_attention(q, k, v);
  }
  return o->forward(y.reshape({B, T, H * D}));                          // (B, T, C)
}

Tensor SoftmaxAttention::forward_balanced(const Tensor& x, const SequenceShardHooks& sh) const {
  const int64_t B = x.size(0), T = x.size(1), H = n_heads, D = head_dim, S = sh.size, r = sh.rank;
  COIL_CHECK(T % 2 == 0, "SoftmaxAttention: a load-balanced shard holds two equal chunks, got ", T, " rows");
  const int64_t L = T / 2;  // chunk length; this shard's chunks are r and 2S - 1 - r
  std::vector<Tensor> parts = split(qkv->forward(x), {H * D, H * D, H * D}, 2);
  Tensor q = parts[0].reshape({B, T, H, D}), k = parts[1].reshape({B, T, H, D});
  Tensor v = parts[2].reshape({B, T, H, D});
  const int64_t chunk[2] = {r, 2 * S - 1 - r};
  std::vector<Tensor> qs, ks;
  for (int h = 0; h < 2; ++h) {
    Tensor qh = q.narrow(1, h * L, L), kh = k.narrow(1, h * L, L);
    if (use_rope) {
      qh = rope(qh, chunk[h] * L, rope_theta, bf16_positions);
      kh = rope(kh, chunk[h] * L, rope_theta, bf16_positions);
    }
    qs.push_back(qh);
    ks.push_back(kh);
  }
  Tensor q0 = qs[0];
  auto g = sh.all_gather({concat(ks, 1), v}, q0, &q0);  // per shard: K (rotated), V of its two chunks
  qs[0] = q0;
  // Global chunk c lives on shard c (first half) for c < S, else on shard 2S - 1 - c (second half).
  auto chunk_of = [&](int64_t c, int which) {
    const int64_t owner = c < S ? c : 2 * S - 1 - c, half = c < S ? 0 : 1;
    return g[size_t(owner)][size_t(which)].narrow(1, half * L, L);
  };
  std::vector<Tensor> ys;
  for (int h = 0; h < 2; ++h) {
    std::vector<Tensor> kk, vv;
    for (int64_t c = 0; c <= chunk[h]; ++c) {
      kk.push_back(chunk_of(c, 0));
      vv.push_back(chunk_of(c, 1));
    }
    ys.push_back(prefix_attention(qs[size_t(h)], kk.size() == 1 ? kk[0] : concat(kk, 1),
                                  vv.size() == 1 ? vv[0] : concat(vv, 1), 1.0 / std::sqrt(double(D))));
  }
  return o->forward(concat(ys, 1).reshape({B, T, H * D}));  // (B, T, C)
}

Tensor SoftmaxAttention::forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const {
  COIL_CHECK(x.dim() == 3 && x.size(2) == dim, "SoftmaxAttention: expected x (B, T, ", dim,
             "), got ", x.describe());
  const int64_t B = x.size(0), T = x.size(1), H = n_heads, D = head_dim;
  Tensor k_prev, v_prev;
  int64_t P = 0;
  if (!in.empty()) {
    k_prev = in.get("k");
    v_prev = in.get("v");
    P = k_prev.size(1);
  }
  std::vector<Tensor> parts = split(qkv->forward(x), {H * D, H * D, H * D}, 2);  // 3 x (B, T, HD)
  Tensor q = parts[0].reshape({B, T, H, D});                                  // (B, T, H, D)
  Tensor k = parts[1].reshape({B, T, H, D});                                  // (B, T, H, D)
  if (use_rope) {
    q = rope(q, P, rope_theta, bf16_positions);
    k = rope(k, P, rope_theta, bf16_positions);
  }
  Tensor v = parts[2].reshape({B, T, H, D});                                  // (B, T, H, D)
  Tensor k_all = P ? concat({k_prev, k}, 1) : k;                              // (B, P + T, H, D)
  Tensor v_all = P ? concat({v_prev, v}, 1) : v;
  const double sm = 1.0 / std::sqrt(double(D));
  // One token without gradients (generation, scoring): the fused decode step over the whole cache.
  const bool grads =
      GradMode::is_enabled() && (q.requires_grad() || k_all.requires_grad() || v_all.requires_grad());
  Tensor y = T == 1 && !grads ? attention_decode(q, k_all, v_all, sm)
                              : prefix_attention(q, k_all, v_all, sm);  // (B, T, H, D)
  if (out) {
    out->entries.clear();
    out->set("k", k_all);
    out->set("v", v_all);
  }
  return o->forward(y.reshape({B, T, H * D}));
}

Tensor SoftmaxAttention::step(const Tensor& x, MixerState& state) const {
  COIL_CHECK(x.dim() == 3 && x.size(1) == 1, "SoftmaxAttention::step: expected one token (B, 1, C), got ",
             x.describe());
  MixerState next;
  Tensor y = forward_stateful(x, state, &next);
  state = std::move(next);
  return y;
}

}  // namespace coil
