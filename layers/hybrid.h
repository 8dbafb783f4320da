// Mamba-2-Hybrid stacks (spec/models.md section 8, arXiv 2406.07887): ModelConfig.mixer "hybrid" builds
// one pre-norm residual layer per letter of layer_pattern (the pattern's length is the layer count;
// n_layers is not used): x + f(RMSNorm(x)) with f
//   'M' Mamba-2 (config.mamba2),
//   '*' softmax self-attention (n_heads x head_dim, plain MHA; RoPE only with hybrid_attention_rope:
//       the 8B study's attention layers have no positional encoding),
//   '-' SwiGLU MLP (mlp_hidden).
// State-dict names: layers.<i>.norm.weight, then layers.<i>.mixer.* ('M', '*') or layers.<i>.mlp.* ('-').
#pragma once

#include <memory>
#include <string>

#include "layers/config.h"
#include "layers/mixer.h"
#include "layers/mlp.h"
#include "layers/norm.h"

namespace coil {

// Throws coil::Error unless the pattern is non-empty and made of 'M', '*' and '-' only.
void validate_layer_pattern(const std::string& pattern);

class HybridLayer : public Module {
 public:
  HybridLayer(char kind, const ModelConfig& config, Generator& gen, const ParamOptions& opt = {});
  // x (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x) const;
  static int64_t count_parameters(char kind, const ModelConfig& config);

  char kind;
  bool recompute;
  std::shared_ptr<RMSNorm> norm;    // weight (C)
  std::shared_ptr<Mixer> mixer;     // 'M' and '*' layers
  std::shared_ptr<SwiGLUMLP> mlp;   // '-' layers

 private:
  Tensor forward_impl(const Tensor& x) const;
};

}  // namespace coil
