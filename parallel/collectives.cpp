// The conjugate collective pairs, each recorded as one FunctionNode whose backward calls the
// non-differentiable helpers of communicator.h. The group is captured by shared pointer, so it lives
// as long as the graph that uses it.
#include "parallel/collectives.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace coil {
namespace {
void check_group(const CommPtr& g, const char* op) {
  COIL_CHECK(g != nullptr, op, ": no communicator given (pass the grid's group)");
}
}  // namespace

Tensor copy_to_group(const Tensor& x, const CommPtr& group) {
  check_group(group, "copy_to_group");
  if (group->size() == 1) return x;
  Tensor out = x.detach();  // identity: shares x's storage
  record("copy_to_group", {x}, {out}, [group](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
    return std::vector<Tensor>{all_reduced(*group, g[0], ReduceOp::Sum)};
  });
  return out;
}

Tensor reduce_from_group(const Tensor& x, const CommPtr& group) {
  check_group(group, "reduce_from_group");
  if (group->size() == 1) return x;
  Tensor out = all_reduced(*group, x, ReduceOp::Sum);
  record("reduce_from_group", {x}, {out},
         [](const std::vector<Tensor>& g, const std::vector<Tensor>&) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor gather_from_group(const Tensor& x, const CommPtr& group, int64_t dim) {
  check_group(group, "gather_from_group");
  if (group->size() == 1) return x;
  Tensor out = all_gather_dim(*group, x, dim);
  record("gather_from_group", {x}, {out},
         [group, dim](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
           return std::vector<Tensor>{take_shard(*group, g[0], dim)};
         });
  return out;
}

Tensor scatter_to_group(const Tensor& x, const CommPtr& group, int64_t dim) {
  check_group(group, "scatter_to_group");
  if (group->size() == 1) return x;
  Tensor out = take_shard(*group, x, dim);
  record("scatter_to_group", {x}, {out},
         [group, dim](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
           return std::vector<Tensor>{all_gather_dim(*group, g[0], dim)};
         });
  return out;
}

Tensor reduce_scatter_to_group(const Tensor& x, const CommPtr& group, int64_t dim) {
  check_group(group, "reduce_scatter_to_group");
  if (group->size() == 1) return x;
  Tensor out = reduce_scatter_dim(*group, x, dim, ReduceOp::Sum);
  record("reduce_scatter_to_group", {x}, {out},
         [group, dim](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
           return std::vector<Tensor>{all_gather_dim(*group, g[0], dim)};
         });
  return out;
}

Tensor all_gather_to_group(const Tensor& x, const CommPtr& group, int64_t dim) {
  check_group(group, "all_gather_to_group");
  if (group->size() == 1) return x;
  Tensor out = all_gather_dim(*group, x, dim);
  record("all_gather_to_group", {x}, {out},
         [group, dim](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
           return std::vector<Tensor>{reduce_scatter_dim(*group, g[0], dim, ReduceOp::Sum)};
         });
  return out;
}

Tensor sum_over_group(const Tensor& x, const CommPtr& group) {
  check_group(group, "sum_over_group");
  if (group->size() == 1) return x;
  Tensor out = all_reduced(*group, x.contiguous(), ReduceOp::Sum);
  record("sum_over_group", {x}, {out}, [group](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
    return std::vector<Tensor>{all_reduced(*group, g[0].contiguous(), ReduceOp::Sum)};
  });
  return out;
}

}  // namespace coil
