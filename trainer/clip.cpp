// Gradient norm and clipping through the sum_squares_multi and scale ops.
#include "trainer/clip.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"

namespace coil {

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  // The gradients of one device and dtype go through one sum_squares_multi (a few launches over all
  // of them, not two per tensor); their squared norms, widened to f64, are summed on the device and
  // the host reads one number per group (each read waits for the device: a per-tensor read cost a
  // GPU step ~200 round trips). Per-tensor sums added in f64, as the sharded model's norm does.
  std::vector<std::vector<Tensor>> groups;  // gradients of one device and dtype each
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const std::vector<Tensor>& e) {
      return e[0].device() == g.device() && e[0].dtype() == g.dtype();
    });
    if (it == groups.end()) groups.push_back({g});
    else it->push_back(g);
  }
  double total = 0.0;
  for (const std::vector<Tensor>& grads : groups)
    total += sum(sum_squares_multi(grads).to(DType::F64)).item();
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
