// The NCCL communicator (built with COIL_HAVE_NCCL) against the MPI one: every collective, send /
// recv and split on CUDA tensors, one GPU per rank. Skips itself only when this node has fewer GPUs
// than ranks.
#include <gtest/gtest.h>

#ifdef COIL_HAVE_NCCL
#include <cuda_runtime.h>

#include "mpi_test_util.h"
#include "parallel/nccl_communicator.h"

namespace coil {
namespace {

using coil::testing::world;

TEST(MpiNccl, CollectivesMatchMpi) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  const int n = world()->size(), r = world()->rank();
  if (count < n) GTEST_SKIP() << "needs one GPU per rank: " << count << " GPUs for " << n << " ranks";
  NcclCommunicator nccl(*world(), r);
  const Device dev = Device::cuda(r);
  auto host = [](const Tensor& t) { return t.to(Device::cpu()).to_vector(); };
  Tensor x = Tensor::from_vector({1.0 + r, 2.0 * r, -3.0, 0.5 * r}, {4}, DType::F32);
  // all_reduce sum / max
  Tensor a = x.to(dev);
  nccl.all_reduce(a, ReduceOp::Sum);
  EXPECT_EQ(host(a), all_reduced(*world(), x, ReduceOp::Sum).to_vector());
  Tensor m = x.to(dev);
  nccl.all_reduce(m, ReduceOp::Max);
  EXPECT_EQ(host(m), all_reduced(*world(), x, ReduceOp::Max).to_vector());
  // async
  Tensor b = x.to(dev);
  nccl.all_reduce_async(b, ReduceOp::Sum)->wait();
  EXPECT_EQ(host(b), all_reduced(*world(), x, ReduceOp::Sum).to_vector());
  // all_gather / reduce_scatter
  Tensor g = Tensor::zeros({4 * n}, DType::F32, dev);
  nccl.all_gather(x.to(dev), g);
  Tensor gm = Tensor::zeros({4 * n}, DType::F32);
  world()->all_gather(x, gm);
  EXPECT_EQ(host(g), gm.to_vector());
  Tensor rs = Tensor::zeros({4}, DType::F32, dev);
  nccl.reduce_scatter(g, rs, ReduceOp::Sum);
  Tensor rsm = Tensor::zeros({4}, DType::F32);
  world()->reduce_scatter(gm, rsm, ReduceOp::Sum);
  EXPECT_EQ(host(rs), rsm.to_vector());
  // broadcast from the last rank
  Tensor bc = x.to(dev);
  nccl.broadcast(bc, n - 1);
  Tensor bcm = x.clone();
  world()->broadcast(bcm, n - 1);
  EXPECT_EQ(host(bc), bcm.to_vector());
  // send / recv around a ring (even ranks send first)
  if (n > 1) {
    Tensor got = Tensor::zeros({4}, DType::F32, dev);
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    if (r % 2 == 0) {
      nccl.send(x.to(dev), next);
      nccl.recv(got, prev);
    } else {
      nccl.recv(got, prev);
      nccl.send(x.to(dev), next);
    }
    EXPECT_EQ(host(got), (std::vector<double>{1.0 + prev, 2.0 * prev, -3.0, 0.5 * prev}));
  }
  // split into singletons: each all-reduce is the identity
  CommPtr solo = nccl.split(r, 0, "solo");
  EXPECT_EQ(solo->size(), 1);
  Tensor s = x.to(dev);
  solo->all_reduce(s, ReduceOp::Sum);
  EXPECT_EQ(host(s), x.to_vector());
}

}  // namespace
}  // namespace coil
#endif
