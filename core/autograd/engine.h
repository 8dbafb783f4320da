// The reverse pass. backward() collects every node reachable from the roots, counts how many
// gradients each one waits for, and runs a node only when all of them arrived (a topological order),
// summing gradients that reach the same output twice. It is reentrant (the recompute node runs a
// nested backward) and runs every backward function with grad mode off.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace coil {

// roots[i] receives grad_roots[i] (undefined: ones for a one-element root, else an error).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
              bool retain_graph = false);

}  // namespace coil
