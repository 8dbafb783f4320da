// Single-rank pieces of parallel/: SingleCommunicator semantics, the dim helpers, autograd collectives
// returning their input for a group of 1, DataParallel over a group of 1 leaving gradients unchanged.
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "parallel/collectives.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"

namespace coil {
namespace {

TEST(SingleCommunicator, CollectivesAreIdentity) {
  auto c = std::make_shared<SingleCommunicator>();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  for (DType dt : {DType::F32, DType::F64, DType::I32}) {
    Tensor t = Tensor::from_vector({1, -2, 3}, {3}, dt);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
      c->all_reduce(t, op);
      EXPECT_EQ(t.to_vector(), (std::vector<double>{1, -2, 3}));
    }
    if (is_floating(dt)) {
      c->all_reduce(t, ReduceOp::Avg);
      EXPECT_EQ(t.to_vector(), (std::vector<double>{1, -2, 3}));
      c->all_reduce_async(t, ReduceOp::Avg)->wait();
      EXPECT_EQ(t.to_vector(), (std::vector<double>{1, -2, 3}));
    } else {
      EXPECT_THROW(c->all_reduce(t, ReduceOp::Avg), Error);
    }
    Tensor out = Tensor::zeros({3}, dt);
    c->all_gather(t, out);
    EXPECT_EQ(out.to_vector(), t.to_vector());
    Tensor out2 = Tensor::zeros({3}, dt);
    c->reduce_scatter(t, out2, ReduceOp::Sum);
    EXPECT_EQ(out2.to_vector(), t.to_vector());
    c->broadcast(t, 0);
    EXPECT_EQ(t.to_vector(), (std::vector<double>{1, -2, 3}));
  }
  c->barrier();
  Tensor t = Tensor::zeros({2});
  EXPECT_THROW(c->send(t, 0), Error);
  EXPECT_THROW(c->recv(t, 0), Error);
  EXPECT_THROW(c->broadcast(t, 1), Error);
  EXPECT_THROW(c->all_gather(t, Tensor::zeros({3})), Error);
  EXPECT_THROW(c->all_reduce(Tensor::zeros({2, 3}).t()), Error);  // not contiguous
  auto s = c->split(0, 0, "tp");
  EXPECT_EQ(s->size(), 1);
  EXPECT_NE(s->name().find("tp"), std::string::npos);
}

TEST(SingleCommunicator, DimHelpers) {
  SingleCommunicator c;
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F64);
  EXPECT_EQ(all_gather_dim(c, x, 1).to_vector(), x.to_vector());
  EXPECT_EQ(all_gather_dim(c, x, 1).shape(), (Shape{2, 3}));
  EXPECT_EQ(reduce_scatter_dim(c, x, -1).to_vector(), x.to_vector());
  EXPECT_EQ(take_shard(c, x, 0).to_vector(), x.to_vector());
  EXPECT_EQ(all_reduced(c, x).to_vector(), x.to_vector());
}

TEST(AutogradCollectives, SizeOneReturnsInputItself) {
  CommPtr c = std::make_shared<SingleCommunicator>();
  Tensor x = Tensor::from_vector({1, 2, 3, 4}, {2, 2}, DType::F64).set_requires_grad(true);
  EXPECT_TRUE(copy_to_group(x, c).same(x));
  EXPECT_TRUE(reduce_from_group(x, c).same(x));
  EXPECT_TRUE(gather_from_group(x, c, 1).same(x));
  EXPECT_TRUE(scatter_to_group(x, c, 0).same(x));
  EXPECT_TRUE(reduce_scatter_to_group(x, c, 0).same(x));
  EXPECT_TRUE(all_gather_to_group(x, c, -1).same(x));
  EXPECT_THROW(copy_to_group(x, nullptr), Error);
}

TEST(DataParallel, GroupOfOneKeepsGradientsAndBuckets) {
  CommPtr c = std::make_shared<SingleCommunicator>();
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}, DType::F64).set_requires_grad(true);
  Tensor b = Tensor::from_vector({4, 5}, {2}, DType::F64).set_requires_grad(true);
  Tensor unused = Tensor::zeros({2}, DType::F64).set_requires_grad(true);
  DataParallelOptions opt;
  opt.bucket_mb = 16.0 / (1024.0 * 1024.0);  // 16 bytes: every f64 pair of params splits
  DataParallel ddp(c, {a, b, unused}, opt);
  // reverse registration order: unused (16 B) fills bucket 0, then b (16 B), then a
  ASSERT_EQ(ddp.num_buckets(), 3u);
  EXPECT_EQ(ddp.bucket_params(0), (std::vector<size_t>{2}));
  EXPECT_EQ(ddp.bucket_params(2), (std::vector<size_t>{0}));
  for (int step = 0; step < 2; ++step) {
    Tensor loss = sum(a * a) + sum(b) * 3.0;
    loss.backward();
    ddp.finish();
    EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{2, 4, 6}));
    EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{3, 3}));
    EXPECT_EQ(unused.grad().to_vector(), (std::vector<double>{0, 0}));  // zero-filled
    EXPECT_EQ(ddp.buckets_started_in_backward(), 2);  // a's and b's, not unused's
    a.zero_grad();
    b.zero_grad();
    unused.zero_grad();
  }
  EXPECT_DOUBLE_EQ(reduce_mean(*c, 2.5, 4), 2.5);
  EXPECT_EQ(reduce_values(*c, {1, 2}), (std::vector<double>{1, 2}));
}

TEST(DataParallel, AccumulationWithoutSync) {
  CommPtr c = std::make_shared<SingleCommunicator>();
  Tensor a = Tensor::from_vector({1, 2}, {2}, DType::F64).set_requires_grad(true);
  DataParallel ddp(c, {a});
  ddp.set_sync(false);
  sum(a * 2.0).backward();
  ddp.finish();
  ddp.set_sync(true);
  sum(a * 3.0).backward();
  ddp.finish();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{5, 5}));
  // a second backward after the bucket went out but before finish() is a usage error
  sum(a).backward();
  EXPECT_THROW(sum(a).backward(), Error);
}

}  // namespace
}  // namespace coil
