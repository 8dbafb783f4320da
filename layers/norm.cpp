// RMSNorm: a thin wrapper over the fused rms_norm op.
#include "layers/norm.h"

#include "core/ops.h"

namespace coil {

RMSNorm::RMSNorm(int64_t c, double eps_, const ParamOptions& opt) : dim(c), eps(eps_) {
  COIL_CHECK(c > 0, "RMSNorm: expected a positive dim, got ", c);
  COIL_CHECK(eps_ > 0, "RMSNorm: expected eps > 0, got ", eps_);
  weight = register_parameter("weight", Tensor::ones({c}, opt.dtype, opt.device));
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

}  // namespace coil
