// RMSNorm over the last dim: y = x / sqrt(mean(x^2) + eps) * w, weight initialised to 1. The kernel
// computes the statistics in fp32 whatever the input type (spec section 1).
#pragma once

#include "layers/module.h"

namespace coil {

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5, const ParamOptions& opt = {});
  // x (..., C) -> (..., C)
  Tensor forward(const Tensor& x) const;

  int64_t dim;
  double eps;
  Tensor weight;  // (C)
};

}  // namespace coil
