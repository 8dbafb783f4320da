// Softmax attention mixer: projections, head split, RoPE and the fused causal attention op.
#include "layers/attention.h"

#include "core/ops.h"

namespace coil {

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
  Tensor q = rope(parts[0].reshape({B, T, H, D}), 0, rope_theta);       // (B, T, H, D)
  Tensor k = rope(parts[1].reshape({B, T, H, D}), 0, rope_theta);       // (B, T, H, D)
  Tensor v = parts[2].reshape({B, T, H, D});                            // (B, T, H, D)
  Tensor y = causal_attention(q, k, v);                                 // (B, T, H, D)
  return o->forward(y.reshape({B, T, H * D}));                          // (B, T, C)
}

}  // namespace coil
