// RMSNorm: a thin wrapper over the fused rms_norm op.
#include "layers/norm.h"

#include "core/ops.h"

namespace coil {

RMSNorm::RMSNorm(int64_t c, double eps_, const ParamOptions& opt) : dim(c), eps(eps_) {
  COIL_CHECK(c > 0, "RMSNorm: expected a positive dim, got ", c);
  COIL_CHECK(eps_ > 0, "RMSNorm: expected eps > 0, got ", eps_);
  weight = register_parameter("weight", Tensor::ones({c}, opt.dtype, opt.device));
}

Tensor RMSNorm::forward(const Tensor& x) const {
  if (!sum_across) return rms_norm(x, weight, eps);
  // Split width: mean(x^2) over every rank's slice, composed from ops (1/sqrt as exp(-log / 2)).
  Tensor ss = sum_across(sum(square(x), -1, true));                  // (..., 1)
  Tensor inv = exp(scale(log(scale(ss, 1.0 / double(dim * parts), eps)), -0.5));
  return x * inv * weight;
}

std::pair<Tensor, Tensor> RMSNorm::forward_add(const Tensor& x, const Tensor& res) const {
  if (sum_across) {
    Tensor h = x + res;
    return {h, forward(h)};
  }
  return add_rms_norm(x, res, weight, eps);
}

}  // namespace coil
