// Collectives as autograd ops: Megatron's conjugate pairs (tensor_parallel/mappings.py). Each forward
// collective's backward is its conjugate, so a parallel layer composes them like any other op:
//   copy_to_group            fwd identity              bwd all-reduce (sum)
//   reduce_from_group        fwd all-reduce (sum)      bwd identity
//   gather_from_group        fwd all-gather along dim  bwd take this rank's slice
//   scatter_to_group         fwd take this rank's slice bwd all-gather along dim
//   reduce_scatter_to_group  fwd reduce-scatter (sum)  bwd all-gather along dim
//   all_gather_to_group      fwd all-gather along dim  bwd reduce-scatter (sum)
//   sum_over_group           fwd all-reduce (sum)      bwd all-reduce (sum)
// gather_from_group / scatter_to_group assume the computation around them is replicated over the group
// (the incoming gradient is the same on every rank); the all_gather / reduce_scatter pair assumes it
// differs per rank (sequence parallel). Every op returns its input itself for a group of size 1.
// Slices along dim are equal: dim must divide by the group size.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace coil {

Tensor copy_to_group(const Tensor& x, const CommPtr& group);
Tensor reduce_from_group(const Tensor& x, const CommPtr& group);
Tensor gather_from_group(const Tensor& x, const CommPtr& group, int64_t dim);
Tensor scatter_to_group(const Tensor& x, const CommPtr& group, int64_t dim);
Tensor reduce_scatter_to_group(const Tensor& x, const CommPtr& group, int64_t dim);
Tensor all_gather_to_group(const Tensor& x, const CommPtr& group, int64_t dim);
Tensor sum_over_group(const Tensor& x, const CommPtr& group);

}  // namespace coil
