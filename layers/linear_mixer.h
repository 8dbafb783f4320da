// LinearAttentionMixer: the configurable linear-attention mixer of spec/models.md section 2 (steps
// 1-12), covering the linear baselines and ablations (section 4), Mamba-2S (5), 2Mamba, 2Mamba + dt and
// 2Mamba-E (6). I = H * D is the inner width. The math lives in layers/linattn.h.
//
// State (MixerState entries; values per sequence = decode_state_values):
//   power 1 / 2: "S" (B, H, F, D) numerator, "z" (B, H, F) denominator (sm norm only), "conv"
//     (B, w-1, 3I) the last w-1 RAW (pre-conv) qkv rows (conv only). F = D (power 1) or D (D+1)/2
//     (power 2, the symmetric feature map of linattn.h; 2080 for D = 64): the same representation in
//     the chunked training path, between shards and in decoding. s is folded into the keys (S holds
//     sum e^{..} phi(s k) v^T, as in the spec).
//   power exp: "k" (B, P, H, D) post-activation keys, "v" (B, P, H, D) values (after dt), "acs"
//     (B, P, H) the cumulative log decay of every earlier token, rebased so the last one is 0
//     (A-mask only; an incoming prefix may use any base), "conv" as above.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layers/config.h"
#include "layers/linattn.h"
#include "layers/linear.h"
#include "layers/mixer.h"
#include "layers/norm.h"

namespace coil {

// The options of a named row of the paper's tables. Throws coil::Error listing the valid names.
LinearMixerOptions linear_preset(const std::string& name);
const std::vector<std::string>& linear_preset_names();
// Throws coil::Error naming the first bad field of o.
void validate_linear_options(const LinearMixerOptions& o);

class LinearAttentionMixer : public Mixer {
 public:
  // The causal depthwise conv over the 3I qkv channels: weight (3I, w), bias (3I).
  struct Conv : Module {
    Conv(int64_t channels, int64_t width, Generator& gen, const ParamOptions& opt);
    Tensor weight;  // (3I, w), U(-1/sqrt(w), 1/sqrt(w))
    Tensor bias;    // (3I),    U(-1/sqrt(w), 1/sqrt(w))
  };

  LinearAttentionMixer(int64_t dim, int64_t n_heads, int64_t head_dim, const LinearMixerOptions& o,
                       double norm_eps, Generator& gen, const ParamOptions& opt = {});
  LinearAttentionMixer(const ModelConfig& c, Generator& gen, const ParamOptions& opt = {})
      : LinearAttentionMixer(c.d_model, c.n_heads, c.head_dim, c.linear, c.norm_eps, gen, opt) {}

  // x (B, T, C) -> (B, T, C) in options.form ("auto": quadratic up to options.chunked_from tokens,
  // chunked above; power exp: always the masked quadratic form).
  Tensor forward(const Tensor& x) const override;
  // Chunked form (power exp: attention over the prefix) from the state `in` (empty = start).
  Tensor forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const override;
  // One token through the recurrent form (power exp: the KV cache).
  Tensor step(const Tensor& x, MixerState& state) const override;
  int64_t decode_state_values(int64_t context) const override;

  static int64_t count_parameters(int64_t dim, int64_t n_heads, int64_t head_dim,
                                  const LinearMixerOptions& o);
  static int64_t count_parameters(const ModelConfig& c) {
    return count_parameters(c.d_model, c.n_heads, c.head_dim, c.linear);
  }
  // The spec's per-head decode state of 2Mamba with the symmetric map: F D + F + (w-1) 3 D, F =
  // D (D+1)/2 (135,392 for D = 64, w = 2). decode_state_values / H equals it for power 2.
  static int64_t symmetric_state_values_per_head(int64_t head_dim, int64_t conv_width);

  int64_t dim, n_heads, head_dim;
  LinearMixerOptions options;
  std::shared_ptr<Linear> qkv;    // weight (3I, C), no bias; channels [Q | K | V], head h at h*D
  std::shared_ptr<Conv> conv;     // conv_width > 0
  std::shared_ptr<Linear> W_dt;   // weight (H, C), no bias; value_dt or the original A-mask
  std::shared_ptr<Linear> W_A;    // weight (H, C), no bias; softplus A-mask
  Tensor A_log;                   // (H), log U[1, 16]; original A-mask
  Tensor D;                       // (H, D), init 1; d_residual
  std::shared_ptr<Linear> W_z;    // weight (I, C), bias (I); z_gate
  std::shared_ptr<RMSNorm> norm;  // weight (I); output norm
  std::shared_ptr<Linear> o;      // weight (C, I), no bias

 private:
  enum class Form { Quadratic, Chunked, Recurrent };
  // Steps 1-12 for every form; `in`/`out` may be null (no state).
  Tensor run(const Tensor& x, Form form, const MixerState* in, MixerState* out) const;
  bool has_dt() const { return options.value_dt || options.a_mask == "original"; }
  LinAttnOptions math_options() const;
};

}  // namespace coil
