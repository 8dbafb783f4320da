// Harness cases: reductions (sum, mean, max over a dim or everything), cumsum, sum_to (the backward
// of broadcasting) and sum_squares. References loop over the (outer, n, inner) split of the shape.
#include <cmath>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

enum class Red { Sum, Mean, Max };

HostTensor reduce_ref(const HostTensor& x, int64_t dim, bool keepdim, Red kind) {
  const DimSplit s = split_at(x.shape, dim);
  Shape out;
  for (size_t d = 0; d < x.shape.size(); ++d) {
    if (int64_t(d) != s.dim) out.push_back(x.shape[d]);
    else if (keepdim) out.push_back(1);
  }
  HostTensor y = HostTensor::zeros(out);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double acc = kind == Red::Max ? -INFINITY : 0.0;
      for (int64_t k = 0; k < s.n; ++k) {
        const double v = x[(o * s.n + k) * s.inner + i];
        acc = kind == Red::Max ? std::max(acc, v) : acc + v;
      }
      y[o * s.inner + i] = kind == Red::Mean ? acc / double(s.n) : acc;
    }
  return y;
}

OpCase reduce_case(std::string name, Op op, Red kind, InputSpec in, int64_t dim, bool keepdim) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {op};
  if (op == Op::Max) c.covers.push_back(Op::MaxBackward);
  c.inputs = {std::move(in)};
  c.run = [=](const std::vector<Tensor>& x) {
    switch (kind) {
      case Red::Sum: return std::vector<Tensor>{sum(x[0], dim, keepdim)};
      case Red::Mean: return std::vector<Tensor>{mean(x[0], dim, keepdim)};
      default: return std::vector<Tensor>{max(x[0], dim, keepdim)};
    }
  };
  c.reference = [=](const std::vector<HostTensor>& x) {
    return std::vector<HostTensor>{reduce_ref(x[0], dim, keepdim, kind)};
  };
  return c;
}

OpCase reduce_all_case(std::string name, Op op, bool is_mean, InputSpec in) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {op};
  c.inputs = {std::move(in)};
  c.run = [=](const std::vector<Tensor>& x) { return std::vector<Tensor>{is_mean ? mean(x[0]) : sum(x[0])}; };
  c.reference = [=](const std::vector<HostTensor>& x) {
    double acc = 0.0;
    for (double v : x[0].data) acc += v;
    if (is_mean) acc /= double(x[0].numel());
    return std::vector<HostTensor>{HostTensor({acc}, {})};
  };
  return c;
}

OpCase cumsum_case(std::string name, InputSpec in, int64_t dim, bool reverse) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Cumsum};
  c.inputs = {std::move(in)};
  c.run = [=](const std::vector<Tensor>& x) { return std::vector<Tensor>{cumsum(x[0], dim, reverse)}; };
  c.reference = [=](const std::vector<HostTensor>& x) {
    const DimSplit s = split_at(x[0].shape, dim);
    HostTensor y = HostTensor::zeros(x[0].shape);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i)
        for (int64_t t = 0; t < s.n; ++t) {
          double acc = 0.0;
          for (int64_t u = 0; u < s.n; ++u)
            if (reverse ? u >= t : u <= t) acc += x[0][(o * s.n + u) * s.inner + i];
          y[(o * s.n + t) * s.inner + i] = acc;
        }
    return std::vector<HostTensor>{y};
  };
  return c;
}

OpCase sum_to_case(std::string name, InputSpec in, Shape target) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Sum};
  c.inputs = {std::move(in)};
  c.run = [=](const std::vector<Tensor>& x) { return std::vector<Tensor>{sum_to(x[0], target)}; };
  c.reference = [=](const std::vector<HostTensor>& x) {
    // Every element of x lands on the element of `target` it was broadcast from.
    HostTensor y = HostTensor::zeros(target);
    for (int64_t i = 0; i < x[0].numel(); ++i) y[broadcast_source(x[0].shape, i, target)] += x[0][i];
    return std::vector<HostTensor>{y};
  };
  return c;
}

}  // namespace

void add_reduction_cases(std::vector<OpCase>& cases) {
  const Shape s = {3, 4, 5};
  cases.push_back(reduce_case("sum_dim", Op::Sum, Red::Sum, normal(s), 1, false));
  cases.push_back(reduce_case("sum_keepdim_last", Op::Sum, Red::Sum, normal(s), -1, true));
  cases.push_back(reduce_all_case("sum_all", Op::Sum, false, normal(s)));
  cases.push_back(reduce_case("mean_dim", Op::Mean, Red::Mean, normal(s), 0, false));
  cases.push_back(reduce_case("mean_keepdim", Op::Mean, Red::Mean, normal(s), -2, true));
  cases.push_back(reduce_all_case("mean_all", Op::Mean, true, normal({4, 6})));
  cases.push_back(reduce_case("max_dim", Op::Max, Red::Max, separated(s), 1, false));
  cases.push_back(reduce_case("max_keepdim_last", Op::Max, Red::Max, separated({4, 6}), -1, true));
  cases.push_back(cumsum_case("cumsum", normal({3, 5}), 1, false));
  cases.push_back(cumsum_case("cumsum_reverse", normal({4, 3, 2}), 0, true));
  cases.push_back(sum_to_case("sum_to", normal({2, 3, 4}), {3, 1}));
  cases.push_back(sum_to_case("sum_to_leading", normal({2, 3, 4}), {4}));

  OpCase sq;
  sq.name = "sum_squares";
  sq.covers = {Op::SumSquares};
  sq.check_grad = false;
  sq.inputs = {normal(s)};
  sq.run = [](const std::vector<Tensor>& x) { return std::vector<Tensor>{sum_squares(x[0])}; };
  sq.reference = [](const std::vector<HostTensor>& x) {
    double acc = 0.0;
    for (double v : x[0].data) acc += v * v;
    return std::vector<HostTensor>{HostTensor({acc}, {})};
  };
  cases.push_back(sq);
}

}  // namespace coil::harness
