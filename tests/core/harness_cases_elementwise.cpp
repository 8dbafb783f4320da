// Harness cases: elementwise unary and binary ops (numpy broadcasting in the binary ones). The
// references are scalar formulas applied on host vectors.
#include <cmath>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

OpCase unary(std::string name, Op op, InputSpec in, std::function<Tensor(const Tensor&)> f,
             std::function<double(double)> ref) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {op};
  c.inputs = {std::move(in)};
  c.run = [f](const std::vector<Tensor>& x) { return std::vector<Tensor>{f(x[0])}; };
  c.reference = [ref](const std::vector<HostTensor>& x) {
    HostTensor y = x[0];
    for (auto& v : y.data) v = ref(v);
    return std::vector<HostTensor>{y};
  };
  return c;
}

OpCase binary(std::string name, Op op, InputSpec a, InputSpec b,
              std::function<Tensor(const Tensor&, const Tensor&)> f, std::function<double(double, double)> ref) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {op};
  c.inputs = {std::move(a), std::move(b)};
  c.run = [f](const std::vector<Tensor>& x) { return std::vector<Tensor>{f(x[0], x[1])}; };
  c.reference = [ref](const std::vector<HostTensor>& x) {
    const Shape out = host_broadcast_shape(x[0].shape, x[1].shape);
    HostTensor y = HostTensor::zeros(out);
    for (int64_t i = 0; i < y.numel(); ++i)
      y[i] = ref(x[0][broadcast_source(out, i, x[0].shape)], x[1][broadcast_source(out, i, x[1].shape)]);
    return std::vector<HostTensor>{y};
  };
  return c;
}

double softplus_ref(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

void add_elementwise_cases(std::vector<OpCase>& cases) {
  const Shape s = {3, 4, 5};
  // --- unary
  cases.push_back(unary("exp", Op::Exp, normal(s), [](const Tensor& x) { return exp(x); },
                        [](double x) { return std::exp(x); }));
  cases.push_back(unary("log", Op::Log, positive(s), [](const Tensor& x) { return log(x); },
                        [](double x) { return std::log(x); }));
  cases.push_back(unary("softplus", Op::Softplus, normal(s, 2.0), [](const Tensor& x) { return softplus(x); },
                        softplus_ref));
  // Large |x|: log(1 + e^x) must neither overflow (x = 100) nor lose everything to rounding (x = -30).
  cases.push_back(unary("softplus_extreme", Op::Softplus,
                        float_values({2, 6}, {-100, -50, -30, -20, -5, -0.5, 0.5, 5, 20, 30, 50, 100}),
                        [](const Tensor& x) { return softplus(x); }, softplus_ref));
  cases.push_back(unary("sigmoid", Op::Sigmoid, normal(s, 2.0), [](const Tensor& x) { return sigmoid(x); },
                        sigmoid_ref));
  cases.push_back(unary("silu", Op::Silu, normal(s, 2.0), [](const Tensor& x) { return silu(x); },
                        [](double x) { return x * sigmoid_ref(x); }));
  cases.push_back(unary("relu", Op::Relu, away_from_kinks(s), [](const Tensor& x) { return relu(x); },
                        [](double x) { return x > 0 ? x : 0.0; }));
  cases.back().covers.push_back(Op::ReluBackward);
  cases.push_back(unary("square", Op::Square, normal(s), [](const Tensor& x) { return square(x); },
                        [](double x) { return x * x; }));
  cases.push_back(unary("scale", Op::Scale, normal(s), [](const Tensor& x) { return scale(x, 1.5, -0.25); },
                        [](double x) { return 1.5 * x - 0.25; }));
  cases.push_back(unary("neg", Op::Scale, normal({4, 3}), [](const Tensor& x) { return -x; },
                        [](double x) { return -x; }));

  // --- binary
  auto add_f = [](const Tensor& a, const Tensor& b) { return add(a, b); };
  auto sub_f = [](const Tensor& a, const Tensor& b) { return sub(a, b); };
  auto mul_f = [](const Tensor& a, const Tensor& b) { return mul(a, b); };
  auto div_f = [](const Tensor& a, const Tensor& b) { return div(a, b); };
  auto add_r = [](double a, double b) { return a + b; };
  auto sub_r = [](double a, double b) { return a - b; };
  auto mul_r = [](double a, double b) { return a * b; };
  auto div_r = [](double a, double b) { return a / b; };
  cases.push_back(binary("add", Op::Add, normal(s), normal(s), add_f, add_r));
  cases.push_back(binary("add_broadcast", Op::Add, normal({2, 3, 4}), normal({3, 1}), add_f, add_r));
  cases.push_back(binary("sub", Op::Sub, normal({3, 4}), normal({3, 4}), sub_f, sub_r));
  cases.push_back(binary("sub_broadcast", Op::Sub, normal({4}), normal({3, 4}), sub_f, sub_r));
  cases.push_back(binary("mul", Op::Mul, normal({3, 4}), normal({3, 4}), mul_f, mul_r));
  cases.push_back(binary("mul_broadcast", Op::Mul, normal({2, 1, 4}), normal({3, 1}), mul_f, mul_r));
  cases.push_back(binary("mul_scalar_tensor", Op::Mul, normal({2, 3}), normal({}), mul_f, mul_r));
  cases.push_back(binary("div", Op::Div, normal({3, 4}), positive({3, 4}), div_f, div_r));
  cases.push_back(binary("div_broadcast", Op::Div, normal({2, 3, 4}), positive({4}), div_f, div_r));
}

}  // namespace coil::harness
