// Softmax attention mixer (spec/models.md section 3): qkv = x W_qkv with channel layout [Q | K | V],
// each head a contiguous block of D channels; RoPE (interleaved pairs, theta) on q and k; causal
// softmax(s q k^T) v with s = 1/sqrt(D); heads merged and projected by W_o. No biases.
// forward uses the fused causal attention op; forward_stateful / step attend over a KV prefix.
#pragma once

#include <memory>

#include "layers/linear.h"
#include "layers/mixer.h"

namespace coil {

class SoftmaxAttention : public Mixer {
 public:
  SoftmaxAttention(int64_t dim, int64_t n_heads, int64_t head_dim, double rope_theta,
                   Generator& gen, const ParamOptions& opt = {});
  // x (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x) const override;
  // State: "k" (post-RoPE) and "v", (B, P, H, D) for the P earlier tokens: the KV cache. The shard's
  // RoPE positions start at P.
  Tensor forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const override;
  Tensor step(const Tensor& x, MixerState& state) const override;
  int64_t decode_state_values(int64_t context) const override { return 2 * n_heads * head_dim * context; }
  static int64_t count_parameters(int64_t dim, int64_t n_heads, int64_t head_dim) {
    return Linear::count_parameters(dim, 3 * n_heads * head_dim, false) +
           Linear::count_parameters(n_heads * head_dim, dim, false);
  }

  int64_t dim, n_heads, head_dim;
  double rope_theta;
  bool use_rope = true;         // off: no positional encoding (the hybrid study's attention layers)
  bool bf16_positions = false;  // RoPE positions rounded to bf16 (reproduces the paper's baseline)
  std::shared_ptr<Linear> qkv;  // weight (3HD, C)
  std::shared_ptr<Linear> o;    // weight (C, HD)

 private:
  // The load-balanced sequence shard (SequenceShardHooks::balanced).
  Tensor forward_balanced(const Tensor& x, const SequenceShardHooks& sh) const;
};

}  // namespace coil
