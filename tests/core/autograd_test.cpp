// Autograd engine: shared inputs, reuse of a tensor, accumulation across backward calls, no-grad,
// in-place detection through the version counter, graph release, and activation recompute.
#include <gtest/gtest.h>

#include <cmath>

#include "core/allocator.h"
#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/autograd/recompute.h"
#include "core/ops.h"
#include "core/random.h"

namespace coil {
namespace {

Tensor leaf(const std::vector<double>& v, const Shape& s) {
  Tensor t = Tensor::from_vector(v, s, DType::F64);
  t.set_requires_grad(true);
  return t;
}

void expect_near_vec(const std::vector<double>& a, const std::vector<double>& b, double tol = 1e-12) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol) << "at " << i;
}

TEST(Autograd, SharedInputUsedTwiceSumsGradients) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  y.backward();
  expect_near_vec(x.grad().to_vector(), {3, 5, 7});
}

TEST(Autograd, DiamondGraphVisitsEachNodeOnce) {
  Tensor x = leaf({0.5, -1.0}, {2});
  Tensor a = exp(x);             // shared intermediate
  Tensor y = sum(a * a + a * 3.0);  // dy/dx = (2a + 3) a
  y.backward();
  auto xs = x.to_vector();
  std::vector<double> want;
  for (double v : xs) want.push_back((2 * std::exp(v) + 3) * std::exp(v));
  expect_near_vec(x.grad().to_vector(), want);
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, 2}, {2});
  sum(x * 2.0).backward();
  sum(x * 3.0).backward();
  expect_near_vec(x.grad().to_vector(), {5, 5});
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, GradOfBroadcastIsSummed) {
  Tensor a = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = leaf({10, 20, 30}, {3});
  sum(a * b).backward();
  expect_near_vec(b.grad().to_vector(), {5, 7, 9});
  expect_near_vec(a.grad().to_vector(), {10, 20, 30, 10, 20, 30});
}

TEST(Autograd, NoGradScopeRecordsNothing) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y;
  {
    NoGradGuard g;
    y = exp(x);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_THROW(sum(y).backward(), Error);
  EXPECT_TRUE(GradMode::is_enabled());
}

TEST(Autograd, InPlaceWriteToSavedTensorIsDetected) {
  Tensor x = leaf({0.1, 0.2}, {2});
  Tensor y = x * 2.0;
  Tensor z = exp(y);  // exp saves its output z
  Tensor loss = sum(z);
  z.detach().fill_(0.0);  // writes the saved storage behind autograd's back
  try {
    loss.backward();
    FAIL() << "in-place modification was not detected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("modified in place"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ExpBackward"), std::string::npos) << e.what();
  }
}

TEST(Autograd, InPlaceOnLeafRequiringGradIsRefused) {
  Tensor x = leaf({1, 2}, {2});
  EXPECT_THROW(x.fill_(0.0), Error);
  NoGradGuard g;
  x.fill_(3.0);  // allowed without grad mode (optimizer updates)
  EXPECT_EQ(x.to_vector()[0], 3.0);
}

TEST(Autograd, GraphIsReleasedAfterBackward) {
  int64_t before = Node::live_count();
  {
    Tensor x = leaf({1, 2, 3}, {3});
    Tensor loss = sum(exp(x) * x);
    EXPECT_GT(Node::live_count(), before);
    loss.backward();
  }
  EXPECT_EQ(Node::live_count(), before);
}

TEST(Autograd, NonScalarRootNeedsExplicitGradient) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = x * 3.0;
  EXPECT_THROW(y.backward(), Error);
  y.backward(Tensor::from_vector({1, 10}, {2}, DType::F64));
  expect_near_vec(x.grad().to_vector(), {3, 30});
}

TEST(Autograd, ViewsPropagateGradients) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x.transpose(0, 1).narrow(0, 1, 2).reshape({4});  // x[:, 1:3] in column order
  sum(y * Tensor::from_vector({1, 2, 3, 4}, {4}, DType::F64)).backward();
  // y = [x01, x11, x02, x12]
  expect_near_vec(x.grad().to_vector(), {0, 1, 3, 0, 2, 4});
}

// A two-layer region: recompute must give bit-identical gradients and keep fewer bytes alive.
std::vector<Tensor> region(const Tensor& w1, const Tensor& w2, const std::vector<Tensor>& in) {
  Tensor h = silu(matmul(in[0], w1));
  return {matmul(h, w2) + in[0]};
}

TEST(Autograd, RecomputeGivesIdenticalGradientsAndSavesMemory) {
  Generator gen(7);
  Tensor x0 = Tensor::randn({64, 32}, gen, DType::F64);
  Tensor w1 = Tensor::randn({32, 128}, gen, DType::F64).set_requires_grad(true);
  Tensor w2 = Tensor::randn({128, 32}, gen, DType::F64).set_requires_grad(true);
  Allocator& cpu = allocator_for(DeviceType::CPU);

  auto run = [&](bool use_recompute, int64_t* held_bytes) {
    w1.zero_grad();
    w2.zero_grad();
    Tensor x = x0.clone().set_requires_grad(true);
    int64_t base = cpu.stats(0).current_bytes;
    Tensor y = x;
    for (int layer = 0; layer < 3; ++layer) {
      auto fn = [&](const std::vector<Tensor>& in) { return region(w1, w2, in); };
      y = use_recompute ? recompute(fn, {y})[0] : fn({y})[0];
    }
    Tensor loss = sum(square(y));
    *held_bytes = cpu.stats(0).current_bytes - base;  // activations kept for backward
    loss.backward();
    return std::vector<std::vector<double>>{x.grad().to_vector(), w1.grad().to_vector(),
                                            w2.grad().to_vector(), {loss.item()}};
  };
  int64_t held_plain = 0, held_recompute = 0;
  auto plain = run(false, &held_plain);
  auto rec = run(true, &held_recompute);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(plain[i], rec[i]) << "output " << i;
  EXPECT_LT(held_recompute * 3, held_plain) << "recompute kept " << held_recompute << " bytes vs "
                                            << held_plain;
}

TEST(Autograd, RecomputeReachesParametersWhenInputsNeedNoGrad) {
  Tensor x = Tensor::from_vector({1, 2}, {1, 2}, DType::F64);  // no grad
  Tensor w = leaf({1, 0, 0, 1}, {2, 2});
  auto out = recompute([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{matmul(in[0], w)}; },
                       {x});
  sum(out[0]).backward();
  expect_near_vec(w.grad().to_vector(), {1, 1, 2, 2});
}

}  // namespace
}  // namespace coil

namespace coil {
namespace {

// A gradient shared by two leaves (add's backward sends the same tensor to both) must not alias:
// scaling one leaf's .grad in place (as clipping does) must leave the other's untouched.
TEST(Autograd, LeafGradientsNeverAliasEachOther) {
  Tensor a = Tensor::from_vector({1, 2}, {2}, DType::F64).set_requires_grad(true);
  Tensor b = Tensor::from_vector({3, 4}, {2}, DType::F64).set_requires_grad(true);
  (a + b).backward(Tensor::from_vector({1, 1}, {2}, DType::F64));
  EXPECT_NE(a.grad().storage().get(), b.grad().storage().get());
  {
    NoGradGuard g;
    a.grad().fill_(7.0);
  }
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{1, 1}));
}

}  // namespace
}  // namespace coil
