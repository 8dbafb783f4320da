// Mamba-2 mixer (spec/models.md section 8, mamba_ssm Mamba2 semantics, ngroups 1):
//   zxbcdt = h W_in, channels [z0 | x0 | z | x | B | C | dt] of widths [d_mlp, d_mlp, d_ssm, d_ssm, N, N, H]
//   xBC = silu(causal_dwconv(x | B | C))          (conv with bias, width d_conv)
//   dt = softplus(raw + dt_bias), A = -exp(A_log), per head: S_t = e^{A dt_t} S_{t-1} + dt_t x_t B_t^T,
//   y_t = S_t C_t + D x_t, y = RMSNormGated(y * silu(z)) per head (group size = head_dim),
//   out = [silu(z0) * x0 | y] W_out.
// d_ssm = n_ssm_heads * head_dim (all of d_inner when n_ssm_heads = 0); d_mlp = d_inner - d_ssm is the
// gated-MLP branch of the paper's one-head variant ("mamba2-paper"). forward runs the chunked SSD.
// MixerState: "ssm" (B, H, head_dim, d_state) and "conv" (B, d_conv - 1, d_ssm + 2 d_state), the raw
// (pre-conv) x | B | C rows of the last d_conv - 1 tokens.
#pragma once

#include <memory>
#include <string>

#include "layers/config.h"
#include "layers/linear.h"
#include "layers/mixer.h"
#include "layers/ssm_scan.h"

namespace coil {

// Named option sets: "mamba2" (every channel an SSM head: the paper's text) and "mamba2-paper" (one
// SSM head of 64 channels, d_conv 2, expand 1, the rest a gated-MLP branch: the paper's code).
Mamba2Options mamba2_preset(const std::string& name);
// Throws coil::Error naming the first bad field of o for a model of width d_model.
void validate_mamba2_options(const Mamba2Options& o, int64_t d_model);

class Mamba2 : public Mixer {
 public:
  Mamba2(int64_t dim, const Mamba2Options& options, Generator& gen, const ParamOptions& opt = {});
  // x (B, T, C) -> (B, T, C), chunked SSD from a zero state.
  Tensor forward(const Tensor& x) const override;
  Tensor forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const override;
  Tensor step(const Tensor& x, MixerState& state) const override;
  int64_t decode_state_values(int64_t /*context*/) const override {
    return n_heads * head_dim * d_state + (d_conv - 1) * conv_dim;
  }
  // Any form; kQuadratic only from an empty state and without *out.
  Tensor forward_form(const Tensor& x, ScanForm form, const MixerState& in, MixerState* out) const;
  static int64_t count_parameters(int64_t dim, const Mamba2Options& options);

  int64_t dim, d_inner, d_ssm, d_mlp, n_heads, head_dim, d_state, d_conv, conv_dim;
  int64_t chunk_size;
  std::shared_ptr<Linear> in_proj;   // weight (2 d_inner + 2 N + H, C)
  Tensor conv_weight;                // (conv_dim, d_conv), conv_dim = d_ssm + 2 N
  Tensor conv_bias;                  // (conv_dim)
  Tensor dt_bias;                    // (H)
  Tensor A_log;                      // (H)
  Tensor D;                          // (H)
  Tensor norm_weight;                // (d_ssm), the gated RMSNorm's weight
  std::shared_ptr<Linear> out_proj;  // weight (C, d_inner)
};

}  // namespace coil
