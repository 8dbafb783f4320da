// Linear and Embedding: parameter creation and the forward through the core ops.
#include "layers/linear.h"

#include <cmath>

#include "core/ops.h"

namespace coil {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Generator& gen, const ParamOptions& opt,
               std::optional<double> init_std)
    : in_features(in), out_features(out) {
  COIL_CHECK(in > 0 && out > 0, "Linear: expected positive sizes, got in=", in, ", out=", out);
  const double bound = 1.0 / std::sqrt(double(in));  // PyTorch's kaiming_uniform(a=sqrt(5)) bound
  weight = register_parameter(
      "weight", init_std ? Tensor::randn({out, in}, gen, opt.dtype, opt.device, 0.0, *init_std)
                         : Tensor::uniform({out, in}, gen, -bound, bound, opt.dtype, opt.device));
  if (has_bias)
    bias = register_parameter("bias",
                              Tensor::uniform({out}, gen, -bound, bound, opt.dtype, opt.device));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

Embedding::Embedding(int64_t v, int64_t c, Generator& gen, const ParamOptions& opt,
                     double init_std)
    : num_embeddings(v), dim(c) {
  COIL_CHECK(v > 0 && c > 0, "Embedding: expected positive sizes, got V=", v, ", C=", c);
  weight = register_parameter("weight",
                              Tensor::randn({v, c}, gen, opt.dtype, opt.device, 0.0, init_std));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

}  // namespace coil
