// Harness cases: the multi-tensor sum of squares of the global gradient norm (op SumSquaresMulti, not
// differentiable) over inputs of different shapes, one of them empty and one a single element: each
// tensor's sum against a plain double sum.
#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

OpCase sum_squares_multi_case(std::string name, std::vector<Shape> shapes) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::SumSquaresMulti};
  c.check_grad = false;
  for (const Shape& s : shapes) c.inputs.push_back(normal(s));
  c.run = [](const std::vector<Tensor>& x) { return std::vector<Tensor>{sum_squares_multi(x)}; };
  c.reference = [](const std::vector<HostTensor>& x) {
    HostTensor out = HostTensor::zeros({int64_t(x.size())});
    for (size_t i = 0; i < x.size(); ++i)
      for (double v : x[i].data) out[int64_t(i)] += v * v;
    return std::vector<HostTensor>{out};
  };
  return c;
}

}  // namespace

void add_multi_tensor_cases(std::vector<OpCase>& cases) {
  cases.push_back(sum_squares_multi_case("sum_squares_multi", {{3, 5}, {7}, {0, 4}, {1}, {2, 3, 40}}));
  cases.push_back(sum_squares_multi_case("sum_squares_multi_one", {{6000}}));
}

}  // namespace coil::harness
