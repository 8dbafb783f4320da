// RMSNorm over the last dim: y = x / sqrt(mean(x^2) + eps) * w, weight initialised to 1. The kernel
// computes the statistics in fp32 whatever the input type (spec section 1).
//
// Tensor parallelism may split the normalised width over ranks (the output norm over H*D of a
// head-sharded mixer): parallel/ then sets sum_across (a differentiable all-reduce of the per-row
// partial sums of squares) and parts (the number of equal slices), so the statistic is the global one.
#pragma once

#include <functional>
#include <utility>

#include "layers/module.h"

namespace coil {

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5, const ParamOptions& opt = {});
  // x (..., C) -> (..., C)
  Tensor forward(const Tensor& x) const;
  // The residual add before the norm, fused: {h = x + res, forward(h)} (the same values as the two
  // steps; composed from them when the width is split).
  std::pair<Tensor, Tensor> forward_add(const Tensor& x, const Tensor& res) const;

  int64_t dim;
  double eps;
  Tensor weight;  // (C), this rank's slice when parts > 1
  std::function<Tensor(const Tensor&)> sum_across;  // unset: the whole width is here
  int64_t parts = 1;
};

}  // namespace coil
