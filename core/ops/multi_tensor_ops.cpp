// Multi-tensor sum of squares (op SumSquaresMulti): every gradient's squared norm in one op, so the
// CUDA kernels read all of them in a few launches instead of two launches and an allocation per
// tensor through sum_squares; the global norm sums the (n) result on the device and reads it once.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

Tensor sum_squares_multi(const std::vector<Tensor>& xs) {
  COIL_CHECK(!xs.empty(), "sum_squares_multi: no tensors");
  std::vector<Tensor> in;
  in.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    check_floating("sum_squares_multi", xs[i], "input");
    check_same("sum_squares_multi", xs[0], "first input", xs[i], "input");
    in.push_back(xs[i].detach().contiguous());
  }
  Tensor y = Tensor::empty({int64_t(xs.size())}, stat_dtype(xs[0].dtype()), xs[0].device());
  run(make_args(Op::SumSquaresMulti, std::move(in), {y}), xs[0].dtype());
  return y;
}

}  // namespace coil
