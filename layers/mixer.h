// Mixer: the token-mixing half of a block (softmax attention now; the linear / 2Mamba mixers of
// spec/models.md sections 2-8 later). It maps the normed residual stream (B, T, C) to (B, T, C).
#pragma once

#include "layers/module.h"

namespace coil {

class Mixer : public Module {
 public:
  // x (B, T, C) -> (B, T, C); causal: output t depends on inputs 0..t only.
  virtual Tensor forward(const Tensor& x) const = 0;
};

}  // namespace coil
