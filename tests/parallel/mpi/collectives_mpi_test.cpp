// Every flat collective's values on P ranks (any P >= 2), and every autograd collective's backward
// against its conjugate, computed by hand from known per-rank inputs.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "mpi_test_util.h"
#include "parallel/collectives.h"

namespace coil {
namespace {

using coil::testing::world;

// value of element i on rank r
double f(int r, int64_t i) { return 100.0 * (r + 1) + double(i); }

Tensor rank_tensor(int r, const Shape& shape, DType dt = DType::F64, double scale = 1.0) {
  std::vector<double> v(size_t(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * f(r, int64_t(i));
  return Tensor::from_vector(v, shape, dt);
}

TEST(MpiCollectives, AllReduce) {
  auto& c = *world();
  const int P = c.size(), r = c.rank();
  for (DType dt : {DType::F32, DType::F64, DType::I32, DType::I64}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      if (op == ReduceOp::Avg && !is_floating(dt)) continue;
      Tensor t = rank_tensor(r, {5}, dt);
      c.all_reduce(t, op);
      for (int64_t i = 0; i < 5; ++i) {
        double s = 0, m = -1e300;
        for (int q = 0; q < P; ++q) s += f(q, i), m = std::max(m, f(q, i));
        const double want = op == ReduceOp::Sum ? s : op == ReduceOp::Avg ? s / P : m;
        EXPECT_DOUBLE_EQ(t.to_vector()[size_t(i)], want) << dtype_name(dt) << " " << reduce_op_name(op);
      }
    }
  }
  Tensor t = rank_tensor(r, {4});
  c.all_reduce_async(t, ReduceOp::Avg)->wait();
  EXPECT_DOUBLE_EQ(t.to_vector()[3], 100.0 * (P + 1) / 2.0 + 3);
  EXPECT_THROW(c.all_reduce(Tensor::zeros({2}, DType::I32), ReduceOp::Avg), Error);
}

// bf16 (activations and gradients of bf16 autocast under tp / sp on ranks sharing a GPU) reduces
// in f64 and rounds once: 1 plus P - 1 times 2^-9 is 1 + (P - 1) / 512 rounded, where adding the
// 2^-9 one at a time in bf16 (spacing 2^-7 at 1) would lose each; avg and max, async and
// reduce-scatter take the same route.
TEST(MpiCollectives, Bf16ReducesOnceRounded) {
  auto& c = *world();
  const int P = c.size(), r = c.rank();
  auto bf16 = [](double v) { return Tensor::from_vector({v}, {1}, DType::F64).to(DType::BF16).to_vector()[0]; };
  Tensor t = Tensor::from_vector({r == 0 ? 1.0 : 1.0 / 512, 2.0 * (r + 1), -double(r)}, {3}, DType::BF16);
  c.all_reduce(t, ReduceOp::Sum);
  EXPECT_EQ(t.to_vector(), (std::vector<double>{bf16(1.0 + (P - 1) / 512.0), double(P * (P + 1)),
                                                bf16(-P * (P - 1) / 2.0)}));
  Tensor a = Tensor::from_vector({2.0 * (r + 1), double(r)}, {2}, DType::BF16);
  c.all_reduce_async(a, ReduceOp::Avg)->wait();
  EXPECT_EQ(a.to_vector(), (std::vector<double>{double(P + 1), bf16((P - 1) / 2.0)}));
  Tensor m = Tensor::from_vector({double(r), -double(r)}, {2}, DType::BF16);
  c.all_reduce(m, ReduceOp::Max);
  EXPECT_EQ(m.to_vector(), (std::vector<double>{double(P - 1), 0.0}));
  std::vector<double> in(size_t(2 * P));
  for (int q = 0; q < P; ++q) in[size_t(2 * q)] = q == r ? 1.0 : 1.0 / 512, in[size_t(2 * q + 1)] = r + 1;
  Tensor out = Tensor::zeros({2}, DType::BF16);
  c.reduce_scatter(Tensor::from_vector(in, {2 * P}, DType::BF16), out, ReduceOp::Sum);
  EXPECT_EQ(out.to_vector(), (std::vector<double>{bf16(1.0 + (P - 1) / 512.0), double(P * (P + 1) / 2)}));
}

TEST(MpiCollectives, ReduceScatterAllGatherBroadcast) {
  auto& c = *world();
  const int P = c.size(), r = c.rank();
  for (DType dt : {DType::F32, DType::F64, DType::I32}) {
    Tensor in = rank_tensor(r, {int64_t(P) * 3}, dt);
    Tensor out = Tensor::zeros({3}, dt);
    c.reduce_scatter(in, out, ReduceOp::Sum);
    for (int64_t i = 0; i < 3; ++i) {
      double s = 0;
      for (int q = 0; q < P; ++q) s += f(q, r * 3 + i);
      EXPECT_DOUBLE_EQ(out.to_vector()[size_t(i)], s) << dtype_name(dt);
    }
    Tensor g = Tensor::zeros({int64_t(P), 2}, dt);
    c.all_gather(rank_tensor(r, {2}, dt), g);
    for (int q = 0; q < P; ++q)
      for (int64_t i = 0; i < 2; ++i) EXPECT_DOUBLE_EQ(g.at({q, i}), f(q, i)) << dtype_name(dt);
    const int root = P - 1;
    Tensor b = rank_tensor(r, {3}, dt);
    c.broadcast(b, root);
    EXPECT_EQ(b.to_vector(), rank_tensor(root, {3}, dt).to_vector());
  }
  // along a dimension: x (2, 3) per rank -> (2, 3P)
  Tensor x = rank_tensor(r, {2, 3});
  Tensor y = all_gather_dim(c, x, 1);
  ASSERT_EQ(y.shape(), (Shape{2, 3 * int64_t(P)}));
  for (int q = 0; q < P; ++q) EXPECT_DOUBLE_EQ(y.at({1, q * 3 + 2}), f(q, 5));
  Tensor z = reduce_scatter_dim(c, rank_tensor(r, {2, 2 * int64_t(P)}), 1);
  ASSERT_EQ(z.shape(), (Shape{2, 2}));
  double s = 0;
  for (int q = 0; q < P; ++q) s += f(q, 1 * 2 * P + r * 2 + 1);
  EXPECT_DOUBLE_EQ(z.at({1, 1}), s);
  EXPECT_THROW(reduce_scatter_dim(c, Tensor::zeros({2, 2 * int64_t(P) + 1}), 1), Error);
}

TEST(MpiCollectives, SendRecvRingAndSplit) {
  auto& c = *world();
  const int P = c.size(), r = c.rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  Tensor out = rank_tensor(r, {4}, DType::F32);
  Tensor in = Tensor::zeros({4}, DType::F32);
  // even ranks send first: no deadlock even for blocking sends
  if (r % 2 == 0) {
    c.send(out, next, 7);
    c.recv(in, prev, 7);
  } else {
    c.recv(in, prev, 7);
    c.send(out, next, 7);
  }
  EXPECT_EQ(in.to_vector(), rank_tensor(prev, {4}, DType::F32).to_vector());
  EXPECT_THROW(c.send(out, r, 0), Error);
  EXPECT_THROW(c.send(out, P, 0), Error);
  c.barrier();
  // split into even / odd ranks, reversed order inside
  CommPtr half = c.split(r % 2, -r, "parity");
  const int hs = (P + 1 - r % 2) / 2;
  EXPECT_EQ(half->size(), hs);
  EXPECT_EQ(half->rank(), hs - 1 - r / 2);
  Tensor t = Tensor::from_vector({double(r)}, {1}, DType::F64);
  half->all_reduce(t);
  double want = 0;
  for (int q = r % 2; q < P; q += 2) want += q;
  EXPECT_DOUBLE_EQ(t.item(), want);
}

TEST(MpiCollectives, FailingMpiCallThrowsWithMpiErrorString) {
  // a negative color other than MPI_UNDEFINED is invalid: MPI returns an error, coil throws
  try {
    world()->split(-7, 0, "bad");
    ADD_FAILURE() << "expected coil::Error";
  } catch (const Error& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("MPI_Comm_split"), std::string::npos) << m;
    EXPECT_NE(m.find("failed: "), std::string::npos) << m;
    if (world()->rank() == 0) std::cout << "MPI error as reported: " << m << "\n";
  }
}

// --- autograd collectives: forward values and backward = conjugate ------------------------------------
struct Case {
  CommPtr c = world();
  int P = c->size(), r = c->rank();
};

TEST(MpiAutogradCollectives, CopyToGroupBackwardAllReduces) {
  Case k;
  Tensor x = rank_tensor(k.r, {3}).set_requires_grad(true);
  Tensor y = copy_to_group(x, k.c);
  EXPECT_EQ(y.to_vector(), x.to_vector());
  Tensor w = rank_tensor(k.r, {3}, DType::F64, 0.01);
  sum(y * w).backward();
  for (int64_t i = 0; i < 3; ++i) {
    double s = 0;
    for (int q = 0; q < k.P; ++q) s += 0.01 * f(q, i);
    EXPECT_NEAR(x.grad().to_vector()[size_t(i)], s, 1e-12);
  }
}

TEST(MpiAutogradCollectives, ReduceFromGroupBackwardIsIdentity) {
  Case k;
  Tensor x = rank_tensor(k.r, {3}).set_requires_grad(true);
  Tensor y = reduce_from_group(x, k.c);
  for (int64_t i = 0; i < 3; ++i) {
    double s = 0;
    for (int q = 0; q < k.P; ++q) s += f(q, i);
    EXPECT_DOUBLE_EQ(y.to_vector()[size_t(i)], s);
  }
  Tensor w = rank_tensor(k.r, {3}, DType::F64, 0.01);
  sum(y * w).backward();
  EXPECT_EQ(x.grad().to_vector(), w.to_vector());
}

TEST(MpiAutogradCollectives, GatherFromGroupBackwardTakesOwnSlice) {
  Case k;
  Tensor x = rank_tensor(k.r, {2, 3}).set_requires_grad(true);
  Tensor y = gather_from_group(x, k.c, 1);  // (2, 3P)
  for (int q = 0; q < k.P; ++q) EXPECT_DOUBLE_EQ(y.at({0, q * 3 + 1}), f(q, 1));
  Tensor W = rank_tensor(0, {2, 3 * int64_t(k.P)}, DType::F64, 0.5);  // replicated
  sum(y * W).backward();
  Tensor want = W.narrow(1, k.r * 3, 3).contiguous();
  EXPECT_EQ(x.grad().to_vector(), want.to_vector());
}

TEST(MpiAutogradCollectives, ScatterToGroupBackwardAllGathers) {
  Case k;
  Tensor x = rank_tensor(0, {3 * int64_t(k.P), 2}).set_requires_grad(true);  // replicated
  Tensor y = scatter_to_group(x, k.c, 0);  // (3, 2)
  EXPECT_EQ(y.to_vector(), x.detach().narrow(0, k.r * 3, 3).contiguous().to_vector());
  Tensor w = rank_tensor(k.r, {3, 2}, DType::F64, 0.25);
  sum(y * w).backward();
  for (int q = 0; q < k.P; ++q)
    for (int64_t i = 0; i < 6; ++i)
      EXPECT_DOUBLE_EQ(x.grad().at({q * 3 + i / 2, i % 2}), 0.25 * f(q, i));
}

TEST(MpiAutogradCollectives, ReduceScatterBackwardAllGathers) {
  Case k;
  Tensor x = rank_tensor(k.r, {2 * int64_t(k.P), 3}).set_requires_grad(true);
  Tensor y = reduce_scatter_to_group(x, k.c, 0);  // (2, 3)
  for (int64_t i = 0; i < 6; ++i) {
    double s = 0;
    for (int q = 0; q < k.P; ++q) s += f(q, k.r * 6 + i);
    EXPECT_DOUBLE_EQ(y.to_vector()[size_t(i)], s);
  }
  Tensor w = rank_tensor(k.r, {2, 3}, DType::F64, 0.125);
  sum(y * w).backward();
  for (int q = 0; q < k.P; ++q)
    for (int64_t i = 0; i < 6; ++i)
      EXPECT_DOUBLE_EQ(x.grad().at({q * 2 + i / 3, i % 3}), 0.125 * f(q, i));
}

TEST(MpiAutogradCollectives, AllGatherBackwardReduceScatters) {
  Case k;
  Tensor x = rank_tensor(k.r, {2, 3}).set_requires_grad(true);
  Tensor y = all_gather_to_group(x, k.c, 1);  // (2, 3P)
  for (int q = 0; q < k.P; ++q) EXPECT_DOUBLE_EQ(y.at({1, q * 3}), f(q, 3));
  Tensor W = rank_tensor(k.r, {2, 3 * int64_t(k.P)}, DType::F64, 0.5);  // differs per rank
  sum(y * W).backward();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      double s = 0;
      for (int q = 0; q < k.P; ++q) s += 0.5 * f(q, i * 3 * k.P + k.r * 3 + j);
      EXPECT_DOUBLE_EQ(x.grad().at({i, j}), s);
    }
}

// A composed Megatron MLP-like chain: copy_to_group -> local op -> reduce_from_group equals the
// single-rank result and its gradient (the sum over ranks of the local chains' gradients).
TEST(MpiAutogradCollectives, ComposedChainMatchesSerial) {
  Case k;
  Tensor x = Tensor::from_vector({0.5, -1.0, 2.0}, {3}, DType::F64).set_requires_grad(true);
  Tensor h = copy_to_group(x, k.c);
  Tensor part = h * double(k.r + 1);              // rank r's shard of a "weight": (r+1)
  Tensor y = reduce_from_group(part, k.c);        // = x * sum_r (r+1)
  const double S = k.P * (k.P + 1) / 2.0;
  sum(square(y)).backward();
  for (int64_t i = 0; i < 3; ++i) {
    const double xi = x.detach().to_vector()[size_t(i)];
    EXPECT_DOUBLE_EQ(y.to_vector()[size_t(i)], xi * S);
    EXPECT_DOUBLE_EQ(x.grad().to_vector()[size_t(i)], 2 * xi * S * S);
  }
}

}  // namespace
}  // namespace coil
