// The SwiGLU MLP of the Llama-2 backbone: down(silu(gate(x)) * up(x)), no biases. gate and up map
// C -> hidden (the paper uses hidden = 2C), down maps hidden -> C; all use the PyTorch default init.
#pragma once

#include <memory>

#include "layers/linear.h"

namespace coil {

class SwiGLUMLP : public Module {
 public:
  SwiGLUMLP(int64_t dim, int64_t hidden, Generator& gen, const ParamOptions& opt = {});
  // x (..., C) -> (..., C)
  Tensor forward(const Tensor& x) const;
  static int64_t count_parameters(int64_t dim, int64_t hidden) { return 3 * dim * hidden; }

  std::shared_ptr<Linear> gate;  // weight (hidden, C)
  std::shared_ptr<Linear> up;    // weight (hidden, C)
  std::shared_ptr<Linear> down;  // weight (C, hidden)
};

}  // namespace coil
