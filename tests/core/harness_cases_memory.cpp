// Harness cases: memory ops (fill, copy in all its front-ends: contiguous, clone, to(dtype), copy_,
// permute/expand materialisation), concat and split, and the optimizer step (AdamW against its closed
// form).
#include <cmath>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

// Concatenation of host tensors along dim (shapes equal elsewhere).
HostTensor concat_ref(const HOuts& xs, int64_t dim) {
  Shape out = xs[0].shape;
  const DimSplit s0 = split_at(out, dim);
  out[size_t(s0.dim)] = 0;
  for (const auto& x : xs) out[size_t(s0.dim)] += x.shape[size_t(s0.dim)];
  HostTensor y = HostTensor::zeros(out);
  int64_t pos = 0;
  for (int64_t o = 0; o < s0.outer; ++o)
    for (const auto& x : xs) {
      const DimSplit s = split_at(x.shape, dim);
      for (int64_t j = 0; j < s.n * s.inner; ++j) y[pos++] = x[o * s.n * s.inner + j];
    }
  return y;
}

OpCase concat_case(std::string name, std::vector<Shape> shapes, int64_t dim) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Concat};
  for (const Shape& s : shapes) c.inputs.push_back(normal(s));
  c.run = [dim](const Outs& x) { return Outs{concat(x, dim)}; };
  c.reference = [dim](const HOuts& x) { return HOuts{concat_ref(x, dim)}; };
  return c;
}

OpCase split_case(std::string name, Shape shape, std::vector<int64_t> sizes, int64_t dim) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {};  // split is views (narrow); listed for its front-end and its backward
  c.dtype_ops = {Op::Copy};
  c.inputs = {normal(shape)};
  c.run = [=](const Outs& x) { return split(x[0], sizes, dim); };
  c.reference = [=](const HOuts& x) {
    const DimSplit s = split_at(x[0].shape, dim);
    HOuts ys;
    int64_t start = 0;
    for (int64_t len : sizes) {
      Shape out = x[0].shape;
      out[size_t(s.dim)] = len;
      HostTensor y = HostTensor::zeros(out);
      for (int64_t o = 0; o < s.outer; ++o)
        for (int64_t k = 0; k < len; ++k)
          for (int64_t i = 0; i < s.inner; ++i)
            y[(o * len + k) * s.inner + i] = x[0][(o * s.n + start + k) * s.inner + i];
      ys.push_back(y);
      start += len;
    }
    return ys;
  };
  return c;
}

OpCase adamw_case(std::string name, AdamWParams p) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::AdamW};
  c.check_grad = false;
  const Shape s = {3, 4};
  // param, grad, m, v; v >= 0 as a second moment is.
  c.inputs = {normal(s), normal(s), normal(s, 0.1), uniform(s, 0.0, 0.1)};
  for (auto& in : c.inputs) in.no_grad().contiguous_only();
  c.run = [p](const Outs& x) {
    adamw_step(x[0], x[1], x[2], x[3], p);
    return Outs{x[0], x[1], x[2], x[3]};
  };
  c.reference = [p](const HOuts& x) {
    HostTensor param = x[0], m = x[2], v = x[3];
    const double bc1 = 1.0 - std::pow(p.beta1, double(p.step)), bc2 = 1.0 - std::pow(p.beta2, double(p.step));
    for (int64_t i = 0; i < param.numel(); ++i) {
      const double g = x[1][i];
      m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * g;
      v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
      const double update = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + p.eps);
      param[i] = param[i] - p.lr * (update + p.weight_decay * param[i]);  // decoupled weight decay
    }
    return HOuts{param, x[1], m, v};
  };
  return c;
}

// AdamWMulti on two quadruples of different shapes; the reference is adamw_case's update on each.
OpCase adamw_multi_case(std::string name, AdamWParams p) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::AdamWMulti};
  c.check_grad = false;
  for (const Shape& s : {Shape{3, 4}, Shape{5}})
    for (InputSpec in : {normal(s), normal(s), normal(s, 0.1), uniform(s, 0.0, 0.1)})
      c.inputs.push_back(in.no_grad().contiguous_only());
  c.run = [p](const Outs& x) {
    adamw_step_multi({x[0], x[4]}, {x[1], x[5]}, {x[2], x[6]}, {x[3], x[7]}, p);
    return x;
  };
  c.reference = [p](const HOuts& x) {
    HOuts out = x;
    const double bc1 = 1.0 - std::pow(p.beta1, double(p.step)), bc2 = 1.0 - std::pow(p.beta2, double(p.step));
    for (size_t q = 0; q < 2; ++q) {
      HostTensor &param = out[4 * q], &m = out[4 * q + 2], &v = out[4 * q + 3];
      for (int64_t i = 0; i < param.numel(); ++i) {
        const double g = x[4 * q + 1][i];
        m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * g;
        v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
        const double update = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + p.eps);
        param[i] = param[i] - p.lr * (update + p.weight_decay * param[i]);
      }
    }
    return out;
  };
  return c;
}

}  // namespace

void add_memory_cases(std::vector<OpCase>& cases) {
  {  // Fill: factories, fill_ / zero_ on contiguous and strided views.
    OpCase c;
    c.name = "fill";
    c.covers = {Op::Fill};
    c.dtype_ops = {Op::Fill, Op::Copy};
    c.check_grad = false;
    c.inputs = {normal({3, 4})};
    c.run = [](const Outs& x) {
      Tensor cols = x[0].clone();
      cols.narrow(-1, 1, 2).fill_(-1.5);           // rows of 2 at stride 4
      Tensor col0 = x[0].clone();
      col0.t().narrow(0, 0, 1).fill_(2.0);         // one column: stride 4 through a transpose
      Tensor zeroed = x[0].clone();
      zeroed.zero_();
      return Outs{cols, col0, zeroed, Tensor::full(x[0].shape(), 0.75, x[0].dtype(), x[0].device()),
                  Tensor::ones({2, 2}, x[0].dtype(), x[0].device())};
    };
    c.reference = [](const HOuts& x) {
      HostTensor cols = x[0], col0 = x[0];
      for (int64_t i = 0; i < 3; ++i) {
        cols[i * 4 + 1] = cols[i * 4 + 2] = -1.5;
        col0[i * 4] = 2.0;
      }
      HostTensor full = HostTensor::zeros({3, 4});
      for (auto& v : full.data) v = 0.75;
      return HOuts{cols, col0, HostTensor::zeros({3, 4}), full, HostTensor({1, 1, 1, 1}, {2, 2})};
    };
    cases.push_back(c);
  }
  {  // contiguous(): a copy only for the non-contiguous layouts (a no-op on contiguous input).
    OpCase c;
    c.name = "copy_contiguous";
    c.covers = {Op::Copy};
    c.inputs = {normal({3, 4})};
    c.run = [](const Outs& x) { return Outs{x[0].contiguous()}; };
    c.reference = [](const HOuts& x) { return HOuts{x[0]}; };
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "clone";
    c.covers = {Op::Copy};
    c.inputs = {normal({2, 3, 4})};
    c.run = [](const Outs& x) { return Outs{x[0].clone()}; };
    c.reference = [](const HOuts& x) { return HOuts{x[0]}; };
    cases.push_back(c);
  }
  {  // Casts. The gradient flows through the f32 and f64 outputs; the f32 rounding makes a step of
     // 1e-6 meaningless, and the map is linear, so the finite differences use a large step.
    OpCase c;
    c.name = "copy_cast";
    c.covers = {Op::Copy};
    c.inputs = {normal({3, 4})};
    c.run = [](const Outs& x) { return Outs{x[0].to(DType::F32), x[0].to(DType::BF16), x[0].to(DType::F64)}; };
    c.reference = [](const HOuts& x) {
      HostTensor f = x[0], h = x[0];
      for (auto& v : f.data) v = round_to(DType::F32, v);
      for (auto& v : h.data) v = round_to(DType::BF16, v);
      return HOuts{f, h, x[0]};
    };
    c.grad_outputs = {true, false, true};
    c.fd_eps = 1e-2;
    c.grad_rtol = c.grad_atol = 1e-4;
    cases.push_back(c);
  }
  {  // copy_ (in place, not recorded): broadcast source, and a transposed destination.
    OpCase c;
    c.name = "copy_inplace";
    c.covers = {Op::Copy};
    c.dtype_ops = {Op::Copy, Op::Fill};
    c.check_grad = false;
    c.inputs = {normal({3, 1}), normal({3, 4})};
    c.run = [](const Outs& x) {
      Tensor b = Tensor::zeros({2, 3, 4}, x[0].dtype(), x[0].device());
      b.copy_(x[0]);
      Tensor t = Tensor::zeros({4, 3}, x[0].dtype(), x[0].device());
      t.t().copy_(x[1]);
      return Outs{b, t};
    };
    c.reference = [](const HOuts& x) {
      HostTensor b = HostTensor::zeros({2, 3, 4}), t = HostTensor::zeros({4, 3});
      for (int64_t i = 0; i < b.numel(); ++i) b[i] = x[0][(i / 4) % 3];
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j) t[j * 3 + i] = x[1][i * 4 + j];
      return HOuts{b, t};
    };
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "permute_contiguous";
    c.covers = {Op::Copy};
    c.inputs = {normal({2, 3, 4})};
    c.run = [](const Outs& x) { return Outs{x[0].permute({2, 0, 1}).contiguous()}; };
    c.reference = [](const HOuts& x) {
      HostTensor y = HostTensor::zeros({4, 2, 3});
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j)
          for (int64_t k = 0; k < 4; ++k) y[(k * 2 + i) * 3 + j] = x[0][(i * 3 + j) * 4 + k];
      return HOuts{y};
    };
    cases.push_back(c);
  }
  {  // expand then materialise: the backward sums the broadcast gradient back.
    OpCase c;
    c.name = "expand_contiguous";
    c.covers = {Op::Copy};
    c.inputs = {normal({3, 1})};
    c.run = [](const Outs& x) { return Outs{x[0].expand({2, 3, 4}).contiguous()}; };
    c.reference = [](const HOuts& x) {
      HostTensor y = HostTensor::zeros({2, 3, 4});
      for (int64_t i = 0; i < y.numel(); ++i) y[i] = x[0][(i / 4) % 3];
      return HOuts{y};
    };
    cases.push_back(c);
  }
  cases.push_back(concat_case("concat", {{2, 3}, {2, 4}, {2, 1}}, 1));
  cases.push_back(concat_case("concat_dim0", {{1, 3, 2}, {3, 3, 2}}, 0));
  cases.push_back(concat_case("concat_neg_dim", {{2, 3, 4}, {2, 1, 4}}, -2));
  cases.push_back(split_case("split", {5, 4}, {2, 3}, 0));
  cases.push_back(split_case("split_last", {3, 6}, {1, 2, 3}, -1));
}

void add_optimizer_cases(std::vector<OpCase>& cases) {
  AdamWParams p;
  p.lr = 0.01;
  p.step = 3;
  cases.push_back(adamw_case("adamw", p));
  AdamWParams q;
  q.lr = 0.05;
  q.beta1 = 0.8;
  q.beta2 = 0.95;
  q.eps = 1e-6;
  q.weight_decay = 0.1;
  q.step = 1;
  cases.push_back(adamw_case("adamw_weight_decay", q));
  cases.push_back(adamw_multi_case("adamw_multi", q));
}

}  // namespace coil::harness
