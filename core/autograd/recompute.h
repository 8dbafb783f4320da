// Activation recompute. recompute(fn, inputs) runs fn with grad mode off, so none of the tensors its
// ops would save for backward are kept; only `inputs` are saved. In backward it runs fn again with
// grad mode on, on detached copies of the inputs, backpropagates the incoming gradients through that
// fresh graph, and returns the inputs' gradients. Parameters that fn uses (leaves captured by the
// closure) receive their gradients from that nested pass. fn must be deterministic.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace coil {

using RecomputeFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
std::vector<Tensor> recompute(const RecomputeFn& fn, const std::vector<Tensor>& inputs);

}  // namespace coil
