// Elementwise unary and binary ops with broadcasting. Unary kernels see contiguous inputs; binary
// kernels see both operands expanded (stride 0) to the output shape. Backward formulas are written
// with other ops; broadcast gradients are summed back with sum_to.
#include <cmath>

#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

namespace {

Tensor unary(Op op, const Tensor& x_in, const OpAttrs& attrs = {}) {
  check_floating(op_name(op), x_in, "input");
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  KernelArgs a = make_args(op, {x}, {y});
  a.attrs = attrs;
  run(a, x.dtype());
  return y;
}

}  // namespace

Tensor exp(const Tensor& x_in) {
  Tensor x = autocast_f32(x_in);  // decays and softmax weights: fp32 under autocast
  Tensor y = unary(Op::Exp, x);
  record("ExpBackward", {x}, {y}, [](const Grads& g, const Grads& s) { return Grads{g[0] * s[0]}; }, {y});
  return y;
}

Tensor log(const Tensor& x_in) {
  Tensor x = autocast_f32(x_in);
  Tensor y = unary(Op::Log, x);
  record("LogBackward", {x}, {y}, [](const Grads& g, const Grads& s) { return Grads{g[0] / s[0]}; }, {x});
  return y;
}

Tensor softplus(const Tensor& x_in) {
  Tensor x = autocast_f32(x_in);  // log decays: fp32 under autocast
  Tensor y = unary(Op::Softplus, x);
  record("SoftplusBackward", {x}, {y},
         [](const Grads& g, const Grads& s) { return Grads{g[0] * sigmoid(s[0])}; }, {x});
  return y;
}

Tensor sigmoid(const Tensor& x) {
  Tensor y = unary(Op::Sigmoid, x);
  record("SigmoidBackward", {x}, {y},
         [](const Grads& g, const Grads& s) {  // y (1 - y)
           return Grads{g[0] * s[0] * scale(s[0], -1.0, 1.0)};
         },
         {y});
  return y;
}

Tensor silu(const Tensor& x) {
  Tensor y = unary(Op::Silu, x);
  record("SiluBackward", {x}, {y},
         [](const Grads& g, const Grads& s) {  // s + x s (1 - s) with s = sigmoid(x)
           Tensor sg = sigmoid(s[0]);
           return Grads{g[0] * (sg + s[0] * sg * scale(sg, -1.0, 1.0))};
         },
         {x});
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = unary(Op::Relu, x);
  record("ReluBackward", {x}, {y},
         [](const Grads& g, const Grads& s) {
           Tensor gy = g[0].contiguous();
           Tensor dx = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
           run(make_args(Op::ReluBackward, {gy, s[0]}, {dx}), gy.dtype());
           return Grads{dx};
         },
         {x.contiguous()});
  return y;
}

Tensor square(const Tensor& x) {
  Tensor y = unary(Op::Square, x);
  record("SquareBackward", {x}, {y},
         [](const Grads& g, const Grads& s) { return Grads{g[0] * scale(s[0], 2.0)}; }, {x});
  return y;
}

Tensor scale(const Tensor& x, double alpha, double beta) {
  OpAttrs at;
  at.alpha = alpha;
  at.beta = beta;
  Tensor y = unary(Op::Scale, x, at);
  record("ScaleBackward", {x}, {y},
         [alpha](const Grads& g, const Grads&) { return Grads{scale(g[0], alpha)}; });
  return y;
}

Tensor neg(const Tensor& x) { return scale(x, -1.0); }

namespace {

Tensor binary(Op op, const Tensor& a, const Tensor& b) {
  const char* name = op_name(op);
  check_floating(name, a, "lhs");
  check_floating(name, b, "rhs");
  check_same(name, a, "lhs", b, "rhs");
  Shape out_shape;
  try {
    out_shape = broadcast_shapes(a.shape(), b.shape());
  } catch (const Error& e) {
    COIL_FAIL(name, ": ", e.message());
  }
  Tensor y = Tensor::empty(out_shape, a.dtype(), a.device());
  run(make_args(op, {a.detach().expand(out_shape), b.detach().expand(out_shape)}, {y}), a.dtype());
  return y;
}

}  // namespace

Tensor add(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  autocast_promote({&a, &b});
  Tensor y = binary(Op::Add, a, b);
  Shape sa = a.shape(), sb = b.shape();
  record("AddBackward", {a, b}, {y}, [sa, sb](const Grads& g, const Grads&) {
    return Grads{sum_to(g[0], sa), sum_to(g[0], sb)};
  });
  return y;
}

Tensor sub(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  autocast_promote({&a, &b});
  Tensor y = binary(Op::Sub, a, b);
  Shape sa = a.shape(), sb = b.shape();
  record("SubBackward", {a, b}, {y}, [sa, sb](const Grads& g, const Grads&) {
    return Grads{sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
  });
  return y;
}

Tensor mul(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  autocast_promote({&a, &b});
  Tensor y = binary(Op::Mul, a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  record("MulBackward", {a, b}, {y},
         [ga, gb](const Grads& g, const Grads& s) {
           // A broadcast operand's gradient is a sum of products (Mamba-2's D, gated-norm weights):
           // on the CPU in f32 the products are summed in f64 and rounded once, as the CPU kernels'
           // reductions are; rounding each product first put ~5e-6 of the sum's scale into D's
           // gradient, which sequence / tensor shards then round differently (issue 5).
           auto reduced = [](const Tensor& dy, const Tensor& other, const Shape& shape) {
             if (dy.shape() == shape || dy.dtype() != DType::F32 || !dy.device().is_cpu())
               return sum_to(dy * other, shape);
             return sum_to(dy.to(DType::F64) * other.to(DType::F64), shape).to(DType::F32);
           };
           return Grads{ga ? reduced(g[0], s[1], s[0].shape()) : Tensor(),
                        gb ? reduced(g[0], s[0], s[1].shape()) : Tensor()};
         },
         {a, b});
  return y;
}

Tensor div(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  autocast_promote({&a, &b});
  Tensor y = binary(Op::Div, a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  record("DivBackward", {a, b}, {y},
         [ga, gb](const Grads& g, const Grads& s) {
           Tensor ga_t = ga ? sum_to(g[0] / s[1], s[0].shape()) : Tensor();
           Tensor gb_t = gb ? sum_to(neg(g[0] * s[0] / square(s[1])), s[1].shape()) : Tensor();
           return Grads{ga_t, gb_t};
         },
         {a, b});
  return y;
}

}  // namespace coil
