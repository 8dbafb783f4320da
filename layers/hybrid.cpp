// HybridLayer: the per-letter sublayer of a Mamba-2-Hybrid stack and its closed-form parameter count.
#include "layers/hybrid.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/recompute.h"
#include "core/ops.h"
#include "layers/attention.h"
#include "layers/mamba2.h"

namespace coil {

void validate_layer_pattern(const std::string& pattern) {
  COIL_CHECK(!pattern.empty(), "model config: mixer hybrid needs a layer_pattern (e.g. 'M-M-M*-M-M-')");
  for (size_t i = 0; i < pattern.size(); ++i)
    COIL_CHECK(pattern[i] == 'M' || pattern[i] == '*' || pattern[i] == '-',
               "model config: layer_pattern '", pattern, "' has '", pattern[i], "' at position ", i,
               " (expected M = Mamba-2, * = attention, - = MLP)");
}

HybridLayer::HybridLayer(char kind_, const ModelConfig& c, Generator& gen, const ParamOptions& opt)
    : kind(kind_), recompute(c.recompute) {
  norm = register_module("norm", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, opt));
  if (kind == 'M') {
    mixer = register_module("mixer", std::make_shared<Mamba2>(c.d_model, c.mamba2, gen, opt));
  } else if (kind == '*') {
    auto att = std::make_shared<SoftmaxAttention>(c.d_model, c.n_heads, c.head_dim, c.rope_theta,
                                                  gen, opt);
    att->use_rope = c.hybrid_attention_rope;
    att->bf16_positions = c.rope_bf16_positions;
    mixer = register_module("mixer", att);
  } else if (kind == '-') {
    mlp = register_module("mlp", std::make_shared<SwiGLUMLP>(c.d_model, c.mlp_hidden, gen, opt));
  } else {
    COIL_FAIL("HybridLayer: unknown layer kind '", kind, "' (expected M, * or -)");
  }
}

int64_t HybridLayer::count_parameters(char kind, const ModelConfig& c) {
  if (kind == 'M') return c.d_model + Mamba2::count_parameters(c.d_model, c.mamba2);
  if (kind == '*')
    return c.d_model + SoftmaxAttention::count_parameters(c.d_model, c.n_heads, c.head_dim);
  if (kind == '-') return c.d_model + SwiGLUMLP::count_parameters(c.d_model, c.mlp_hidden);
  COIL_FAIL("HybridLayer: unknown layer kind '", kind, "' (expected M, * or -)");
}

Tensor HybridLayer::forward_impl(const Tensor& x) const {
  Tensor h = norm->forward(x);                                 // (B, T, C)
  return x + (mixer ? mixer->forward(h) : mlp->forward(h));    // (B, T, C)
}

Tensor HybridLayer::forward(const Tensor& x) const {
  if (!recompute || !GradMode::is_enabled()) return forward_impl(x);
  return coil::recompute(
      [this](const std::vector<Tensor>& in) { return std::vector<Tensor>{forward_impl(in[0])}; },
      {x})[0];
}

}  // namespace coil
