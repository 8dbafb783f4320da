// Tensor basics: factories, views share storage, strides, contiguous, dtype conversion (bf16
// rounding), the registry's refusal of unknown (backend, op, dtype), and the generator's state.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"

namespace coil {
namespace {

TEST(Tensor, ViewsShareStorageAndStrides) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = x.t();
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.at({2, 1}), 5.0);
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor n = x.narrow(1, 1, 2);
  EXPECT_EQ(n.to_vector(), (std::vector<double>{1, 2, 4, 5}));
  n.detach().fill_(9);
  EXPECT_EQ(x.to_vector(), (std::vector<double>{0, 9, 9, 3, 9, 9}));
  Tensor e = Tensor::from_vector({1, 2}, {2, 1}).expand({2, 3});
  EXPECT_EQ(e.strides()[1], 0);
  EXPECT_EQ(e.to_vector(), (std::vector<double>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(x.permute({1, 0}).shape(), (Shape{3, 2}));
  EXPECT_EQ(x.reshape({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 2, 3}));
}

TEST(Tensor, ViewOfNonContiguousIsAnErrorButReshapeCopies) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_THROW(x.t().view({6}), Error);
  EXPECT_EQ(x.t().reshape({6}).shape(), (Shape{6}));
  try {
    x.view({4, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("(4, 2)"), std::string::npos);
  }
}

TEST(Tensor, Bf16RoundsToNearestEven) {
  Tensor x = Tensor::from_vector({1.0, 1.00390625, 1.01171875, -3.5}, {4}, DType::F64);
  Tensor b = x.to(DType::BF16);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to the even mantissa (1.0).
  EXPECT_EQ(b.to_vector(), (std::vector<double>{1.0, 1.0, 1.015625, -3.5}));
  EXPECT_EQ(b.to(DType::F32).dtype(), DType::F32);
}

TEST(Tensor, IntegerTensorsRoundTrip) {
  Tensor ids = Tensor::from_ints({3, 1, 4}, {3});
  EXPECT_EQ(ids.dtype(), DType::I32);
  EXPECT_EQ(ids.to_ints(), (std::vector<int64_t>{3, 1, 4}));
  EXPECT_THROW(ids.set_requires_grad(true), Error);
}

TEST(Registry, UnknownBackendOpDtypeFailsLoudly) {
  EXPECT_FALSE(supports(Backend::CPU, Op::Exp, DType::BF16));
  EXPECT_TRUE(supports(Backend::CPU, Op::Exp, DType::F32));
  Tensor x = Tensor::zeros({2}, DType::BF16);
  try {
    exp(x);
    FAIL() << "bf16 exp on the CPU should have no kernel";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("exp"), std::string::npos) << m;
    EXPECT_NE(m.find("cpu"), std::string::npos) << m;
    EXPECT_NE(m.find("bf16"), std::string::npos) << m;
  }
}

TEST(Registry, EveryOpHasACpuKernelInF32AndF64) {
  for (int i = 0; i < kNumOps; ++i) {
    Op op = Op(i);
    EXPECT_TRUE(supports(Backend::CPU, op, DType::F32)) << op_name(op);
    EXPECT_TRUE(supports(Backend::CPU, op, DType::F64)) << op_name(op);
  }
}

TEST(Generator, StateResumesTheSameStream) {
  Generator a(42);
  a.next_normal();
  Generator b(0);
  b.set_state(a.seed(), a.offset());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.next_normal(), b.next_normal());
  Generator c(1);
  Tensor t = Tensor::randn({1000}, c, DType::F64);
  auto v = t.to_vector();
  double m = 0, s = 0;
  for (double x : v) m += x / 1000;
  for (double x : v) s += (x - m) * (x - m) / 1000;
  EXPECT_NEAR(m, 0.0, 0.1);
  EXPECT_NEAR(s, 1.0, 0.15);
}

}  // namespace
}  // namespace coil
