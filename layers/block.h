// Pre-norm residual block of the Llama-2 backbone: h = x + mixer(norm1(x)); out = h + mlp(norm2(h)).
// With recompute, the whole block runs inside coil::recompute: only its input is kept for backward
// and the activations are rebuilt during the backward pass.
#pragma once

#include <memory>

#include "layers/config.h"
#include "layers/mixer.h"
#include "layers/mlp.h"
#include "layers/norm.h"

namespace coil {

// The mixer named by config.mixer.
std::shared_ptr<Mixer> make_mixer(const ModelConfig& config, Generator& gen,
                                  const ParamOptions& opt = {});
int64_t count_mixer_parameters(const ModelConfig& config);

class Block : public Module {
 public:
  Block(const ModelConfig& config, Generator& gen, const ParamOptions& opt = {});
  // x (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x) const;
  static int64_t count_parameters(const ModelConfig& config);

  bool recompute;
  std::shared_ptr<RMSNorm> norm1;    // weight (C)
  std::shared_ptr<Mixer> mixer;
  std::shared_ptr<RMSNorm> norm2;    // weight (C)
  std::shared_ptr<SwiGLUMLP> mlp;

 private:
  Tensor forward_impl(const Tensor& x) const;
};

}  // namespace coil
