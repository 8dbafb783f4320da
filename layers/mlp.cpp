// SwiGLU MLP: two projections up, the fused swiglu, one projection down.
#include "layers/mlp.h"

#include "core/ops.h"

namespace coil {

SwiGLUMLP::SwiGLUMLP(int64_t dim, int64_t hidden, Generator& gen, const ParamOptions& opt) {
  gate = register_module("gate", std::make_shared<Linear>(dim, hidden, false, gen, opt));
  up = register_module("up", std::make_shared<Linear>(dim, hidden, false, gen, opt));
  down = register_module("down", std::make_shared<Linear>(hidden, dim, false, gen, opt));
}

Tensor SwiGLUMLP::forward(const Tensor& x) const {
  return down->forward(swiglu(gate->forward(x), up->forward(x)));  // (..., hidden) -> (..., C)
}

}  // namespace coil
