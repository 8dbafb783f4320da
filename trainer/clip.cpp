// Gradient norm and clipping through the sum_squares and scale ops.
#include "trainer/clip.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"

namespace coil {

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  // Each gradient's sum of squares stays on its device; a device's partials are gathered, widened to
  // f64 and summed there, so the host reads one number per device instead of one per tensor (each
  // read waits for the device: a per-tensor read cost a GPU step ~200 round trips).
  std::vector<std::vector<Tensor>> groups;  // partials of one device and dtype each
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor ss = sum_squares(g).reshape({1});
    auto it = std::find_if(groups.begin(), groups.end(), [&](const std::vector<Tensor>& e) {
      return e[0].device() == ss.device() && e[0].dtype() == ss.dtype();
    });
    if (it == groups.end()) groups.push_back({ss});
    else it->push_back(ss);
  }
  double total = 0.0;
  for (const std::vector<Tensor>& parts : groups) {
    const Tensor all = parts.size() == 1 ? parts[0] : concat(parts, 0);
    total += sum(all.to(DType::F64)).item();
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
