// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_ semantics): the norm is taken over
// every defined gradient together, accumulated in f64 from per-tensor sums of squares.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace coil {

// The L2 norm of all defined gradients of params, as one vector.
double grad_norm(const std::vector<Tensor>& params);

// Returns the pre-clip total norm. When max_norm > 0 and the norm exceeds it, scales every gradient
// in place by max_norm / (norm + 1e-6). max_norm <= 0 disables clipping; a non-finite norm is
// returned without touching the gradients (the caller decides whether to skip the step).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace coil
