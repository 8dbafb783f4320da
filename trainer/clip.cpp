// Gradient norm and clipping through the sum_squares and scale ops.
#include "trainer/clip.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"

namespace coil {

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  double total = 0.0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) total += sum_squares(g).item();
  }
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm <= 0 || !std::isfinite(norm) || norm <= max_norm) return norm;
  const double c = max_norm / (norm + 1e-6);  // the 1e-6 matches PyTorch
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) g.copy_(scale(g, c));
  }
  return norm;
}

}  // namespace coil
