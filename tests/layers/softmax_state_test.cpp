// Softmax attention's KV-prefix path: shards and single-token steps reproduce the full forward, and
// gradients flow into the earlier shard through the passed K/V.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "core/random.h"
#include "layers/attention.h"

namespace coil {
namespace {

double max_rel(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector(), y = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / std::max(den, 1e-300);
}

TEST(SoftmaxState, ShardsAndStepsMatchFullForward) {
  Generator gen(3);
  ParamOptions opt{DType::F64, Device::cpu()};
  SoftmaxAttention att(32, 2, 16, 10000.0, gen, opt);
  Tensor x = Tensor::randn({2, 16, 32}, gen, DType::F64);
  Tensor full = att.forward(x);

  MixerState st;
  std::vector<Tensor> outs;
  int64_t off = 0;
  for (int64_t len : {5, 6, 5}) {
    MixerState next;
    outs.push_back(att.forward_stateful(x.narrow(1, off, len), st, &next));
    st = next;
    off += len;
  }
  EXPECT_LT(max_rel(concat(outs, 1), full), 1e-12);
  EXPECT_EQ(st.get("k").size(1), 16);
  EXPECT_EQ(st.values_per_sequence(), att.decode_state_values(16));

  MixerState dec;
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < 16; ++t) steps.push_back(att.step(x.narrow(1, t, 1), dec));
  EXPECT_LT(max_rel(concat(steps, 1), full), 1e-12);
}

TEST(SoftmaxState, GradientsThroughThePrefixMatchTheFullRun) {
  Generator gen(5);
  ParamOptions opt{DType::F64, Device::cpu()};
  SoftmaxAttention att(16, 2, 8, 10000.0, gen, opt);
  Tensor x0 = Tensor::randn({1, 10, 16}, gen, DType::F64);
  Tensor r = Tensor::randn({1, 10, 16}, gen, DType::F64);

  Tensor x = x0.clone().set_requires_grad(true);
  sum(att.forward(x) * r).backward();
  std::vector<double> want = x.grad().to_vector();
  Tensor want_wqkv = att.qkv->weight.grad().clone(), want_wo = att.o->weight.grad().clone();

  const std::vector<std::vector<int64_t>> splits = {{4, 6}, {3, 1, 6}, {2, 3, 4, 1}};
  for (const auto& lens : splits) {
    att.zero_grad();
    Tensor xs = x0.clone().set_requires_grad(true);
    MixerState st;
    std::vector<Tensor> ys;
    int64_t off = 0;
    for (int64_t len : lens) {
      MixerState next;
      ys.push_back(att.forward_stateful(xs.narrow(1, off, len), st, &next));
      st = next;
      off += len;
    }
    sum(concat(ys, 1) * r).backward();
    Tensor got = xs.grad();
    EXPECT_LT(max_rel(got, Tensor::from_vector(want, got.shape(), DType::F64)), 1e-12)
        << lens.size() << " shards";
    EXPECT_LT(max_rel(att.qkv->weight.grad(), want_wqkv), 1e-12) << lens.size() << " shards";
    EXPECT_LT(max_rel(att.o->weight.grad(), want_wo), 1e-12) << lens.size() << " shards";
  }
}

}  // namespace
}  // namespace coil

namespace coil {
namespace {

// The paper's baseline rounded RoPE positions to bf16: identical to exact positions below 256, and
// different above (positions 257 and 256 collapse onto one grid point), in every path.
TEST(SoftmaxState, Bf16PositionsMatchExactBelow256AndDifferAbove) {
  Generator gen(9);
  ParamOptions opt{DType::F64, Device::cpu()};
  SoftmaxAttention exact(16, 2, 8, 10000.0, gen, opt);
  Generator gen2(9);
  SoftmaxAttention rounded(16, 2, 8, 10000.0, gen2, opt);
  rounded.bf16_positions = true;
  Tensor x = Tensor::randn({1, 300, 16}, gen, DType::F64);
  Tensor ye = exact.forward(x), yr = rounded.forward(x);
  EXPECT_LT(max_rel(ye.narrow(1, 0, 256), yr.narrow(1, 0, 256)), 1e-13);
  EXPECT_GT(max_rel(ye.narrow(1, 256, 44), yr.narrow(1, 256, 44)), 1e-6);
  // The stateful path applies the same rounding to its shard offsets.
  MixerState s1, s2;
  Tensor a = rounded.forward_stateful(x.narrow(1, 0, 270), MixerState{}, &s1);
  Tensor b = rounded.forward_stateful(x.narrow(1, 270, 30), s1, &s2);
  EXPECT_LT(max_rel(concat({a, b}, 1), yr), 1e-12);
}

}  // namespace
}  // namespace coil
