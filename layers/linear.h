// Linear and Embedding. Linear follows PyTorch: weight (out, in), y = x W^T + b, default init
// U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, or N(0, init_std) for the weight when given (the
// untied lm_head). Embedding is a (V, C) table initialised N(0, 0.02) (spec section 1).
#pragma once

#include <optional>

#include "core/random.h"
#include "layers/module.h"

namespace coil {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen,
         const ParamOptions& opt = {}, std::optional<double> init_std = std::nullopt);
  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;
  static int64_t count_parameters(int64_t in_features, int64_t out_features, bool bias) {
    return in_features * out_features + (bias ? out_features : 0);
  }

  int64_t in_features, out_features;
  Tensor weight;  // (out, in)
  Tensor bias;    // (out) or undefined
};

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& gen, const ParamOptions& opt = {},
            double init_std = 0.02);
  // ids (...) i32 -> (..., C)
  Tensor forward(const Tensor& ids) const;
  static int64_t count_parameters(int64_t num_embeddings, int64_t dim) { return num_embeddings * dim; }

  int64_t num_embeddings, dim;
  Tensor weight;  // (V, C)
};

}  // namespace coil
