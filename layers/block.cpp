// Block: the residual wiring, the mixer factory and the recompute switch.
#include "layers/block.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/recompute.h"
#include "core/ops.h"
#include "layers/attention.h"
#include "layers/linear_mixer.h"
#include "layers/mamba1.h"
#include "layers/mamba2.h"

namespace coil {

std::shared_ptr<Mixer> make_mixer(const ModelConfig& c, Generator& gen, const ParamOptions& opt) {
  if (c.mixer == "softmax") {
    auto att = std::make_shared<SoftmaxAttention>(c.d_model, c.n_heads, c.head_dim, c.rope_theta,
                                                  gen, opt);
    att->bf16_positions = c.rope_bf16_positions;
    return att;
  }
  if (c.mixer == "linear") return std::make_shared<LinearAttentionMixer>(c, gen, opt);
  if (c.mixer == "mamba2") return std::make_shared<Mamba2>(c.d_model, c.mamba2, gen, opt);
  if (c.mixer == "mamba1") return std::make_shared<Mamba1>(c.d_model, c.mamba1, gen, opt);
  COIL_FAIL("unknown mixer '", c.mixer, "' (expected softmax, linear, mamba2, mamba1)");
}

int64_t count_mixer_parameters(const ModelConfig& c) {
  if (c.mixer == "softmax") return SoftmaxAttention::count_parameters(c.d_model, c.n_heads, c.head_dim);
  if (c.mixer == "linear") return LinearAttentionMixer::count_parameters(c);
  if (c.mixer == "mamba2") return Mamba2::count_parameters(c.d_model, c.mamba2);
  if (c.mixer == "mamba1") return Mamba1::count_parameters(c.d_model, c.mamba1);
  COIL_FAIL("unknown mixer '", c.mixer, "' (expected softmax, linear, mamba2, mamba1)");
}

Block::Block(const ModelConfig& c, Generator& gen, const ParamOptions& opt)
    : recompute(c.recompute) {
  norm1 = register_module("norm1", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, opt));
  mixer = register_module("mixer", make_mixer(c, gen, opt));
  norm2 = register_module("norm2", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, opt));
  mlp = register_module("mlp", std::make_shared<SwiGLUMLP>(c.d_model, c.mlp_hidden, gen, opt));
}

int64_t Block::count_parameters(const ModelConfig& c) {
  return 2 * c.d_model + count_mixer_parameters(c) +
         SwiGLUMLP::count_parameters(c.d_model, c.mlp_hidden);
}

Tensor Block::forward_impl(const Tensor& x) const {
  // h = x + mixer(norm1(x)) and norm2(h) in one fused op (one pass over the residual stream).
  auto [h, n] = norm2->forward_add(x, mixer->forward(norm1->forward(x)));  // (B, T, C) each
  return h + mlp->forward(n);                                              // (B, T, C)
}

Tensor Block::forward(const Tensor& x) const {
  // Recompute only pays off when a graph is being recorded.
  if (!recompute || !GradMode::is_enabled()) return forward_impl(x);
  return coil::recompute(
      [this](const std::vector<Tensor>& in) { return std::vector<Tensor>{forward_impl(in[0])}; },
      {x})[0];
}

}  // namespace coil
