// The NCCL communicator on CUDA tensors against values known in closed form: all_reduce (sum, avg,
// max; f32, f64, i64; blocking and async), reduce_scatter, all_gather, broadcast, send / recv chains
// and rings, split, in f32 and bf16 (bf16 sums rounded once), CPU tensors through the host
// communicator, and the refusal of two ranks on one GPU. Rank r uses GPU r; every
// test skips itself when the node has fewer GPUs than ranks (nccl_main.cpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "nccl_test_util.h"
#include "parallel/data_parallel.h"

namespace coil {
namespace {

using nccl_test::nccl;
using nccl_test::world;

Device gpu() { return Device::cuda(world()->rank()); }

std::vector<double> host(const Tensor& t) { return t.to(Device::cpu()).to_vector(); }

Tensor on_gpu(const std::vector<double>& v, DType dt) {
  return Tensor::from_vector(v, {int64_t(v.size())}, DType::F64).to(dt).to(gpu());
}

// v rounded to dt and back (bf16 keeps 8 significant bits: the sums of 4 or 8 ranks need it).
std::vector<double> rounded(const std::vector<double>& v, DType dt) {
  return Tensor::from_vector(v, {int64_t(v.size())}, DType::F64).to(dt).to_vector();
}

class NcclTyped : public ::testing::TestWithParam<DType> {};

TEST(Nccl, AllReduceSumAvgMax) {
  COIL_NEED_NCCL();
  const int n = nccl()->size(), r = nccl()->rank();
  for (DType dt : {DType::F32, DType::F64}) {
    std::vector<double> x, sum, mx;
    for (int i = 0; i < 37; ++i) {  // an odd count: no alignment luck
      x.push_back((r + 1) * (i + 1));
      sum.push_back((i + 1) * n * (n + 1) / 2.0);
      mx.push_back((i + 1) * n);
    }
    Tensor s = on_gpu(x, dt);
    nccl()->all_reduce(s, ReduceOp::Sum);
    EXPECT_EQ(host(s), sum) << dtype_name(dt);
    Tensor a = on_gpu(x, dt);
    nccl()->all_reduce(a, ReduceOp::Avg);
    std::vector<double> avg;
    for (double v : sum) avg.push_back(v / n);
    const std::vector<double> got = host(a);
    for (size_t i = 0; i < avg.size(); ++i) EXPECT_NEAR(got[i], avg[i], 1e-6 * avg[i]) << dtype_name(dt);
    Tensor m = on_gpu(x, dt);
    nccl()->all_reduce(m, ReduceOp::Max);
    EXPECT_EQ(host(m), mx) << dtype_name(dt);
  }
  Tensor i = Tensor::from_ints({int64_t(r) << 33, -r}, {2}, DType::I64).to(gpu());
  nccl()->all_reduce(i, ReduceOp::Sum);
  const std::vector<int64_t> gi = i.to(Device::cpu()).to_ints();
  EXPECT_EQ(gi[0], (int64_t(n) * (n - 1) / 2) << 33);  // beyond 32 bits: really 64-bit integers
  EXPECT_EQ(gi[1], -int64_t(n) * (n - 1) / 2);
}

TEST(Nccl, AsyncAllReduceIsStreamOrdered) {
  COIL_NEED_NCCL();
  const int n = nccl()->size(), r = nccl()->rank();
  // Several in flight, then a kernel on the same stream reads them (as DataParallel's buckets).
  std::vector<Tensor> ts;
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < 4; ++k) {
    ts.push_back(Tensor::full({1000 + k}, double(r + k), DType::F32, gpu()));
    works.push_back(nccl()->all_reduce_async(ts.back(), ReduceOp::Avg));
  }
  for (int k = 0; k < 4; ++k) {
    works[size_t(k)]->wait();
    const std::vector<double> got = host(ts[size_t(k)] * 2.0);
    const double want = 2.0 * ((n - 1) / 2.0 + k);
    for (double v : got) ASSERT_NEAR(v, want, 1e-6) << "bucket " << k;
  }
}

TEST_P(NcclTyped, ReduceScatterAllGatherBroadcast) {
  COIL_NEED_NCCL();
  const DType dt = GetParam();
  const int n = nccl()->size(), r = nccl()->rank();
  constexpr int kBlock = 5;
  // all_gather: rank b's block is b*10 + j (exact in bf16 for these sizes).
  std::vector<double> mine, gathered;
  for (int j = 0; j < kBlock; ++j) mine.push_back(r * 10 + j);
  for (int b = 0; b < n; ++b)
    for (int j = 0; j < kBlock; ++j) gathered.push_back(b * 10 + j);
  Tensor out = Tensor::zeros({int64_t(n) * kBlock}, dt, gpu());
  nccl()->all_gather(on_gpu(mine, dt), out);
  EXPECT_EQ(host(out), gathered) << dtype_name(dt);
  // broadcast from the last rank
  Tensor b = on_gpu(mine, dt);
  nccl()->broadcast(b, n - 1);
  std::vector<double> last;
  for (int j = 0; j < kBlock; ++j) last.push_back((n - 1) * 10 + j);
  EXPECT_EQ(host(b), last) << dtype_name(dt);
  // reduce_scatter and all_reduce (bf16: reduced in f32 and rounded once; these sums are exact)
  // Expected: the exact sum of the (rounded) inputs, rounded once.
  std::vector<double> in, want;
  for (int blk = 0; blk < n; ++blk)
    for (int j = 0; j < kBlock; ++j) in.push_back((r + 1) * (blk * kBlock + j + 1));
  for (int j = 0; j < kBlock; ++j) {
    double sum = 0;
    for (int q = 0; q < n; ++q) sum += rounded({double((q + 1) * (r * kBlock + j + 1))}, dt)[0];
    want.push_back(sum);
  }
  Tensor rs = Tensor::zeros({kBlock}, dt, gpu());
  nccl()->reduce_scatter(on_gpu(in, dt), rs, ReduceOp::Sum);
  EXPECT_EQ(host(rs), rounded(want, dt)) << dtype_name(dt);
  Tensor ar = on_gpu(mine, dt);
  nccl()->all_reduce(ar, ReduceOp::Sum);
  std::vector<double> colsum;
  for (int j = 0; j < kBlock; ++j) colsum.push_back(10.0 * n * (n - 1) / 2.0 + double(n) * j);
  EXPECT_EQ(host(ar), rounded(colsum, dt)) << dtype_name(dt);
  Tensor am = on_gpu(mine, dt);
  nccl()->all_reduce_async(am, ReduceOp::Max)->wait();
  EXPECT_EQ(host(am), last) << dtype_name(dt);
  if (dt == DType::BF16) {
    // One rounding of the exact sum: each 2^-9 alone is below bf16's spacing at 1 (2^-7), so
    // adding them to 1 one at a time in bf16 would lose them; with 4 or more ranks their sum is not.
    Tensor tiny = on_gpu({r == 0 ? 1.0 : 1.0 / 512}, dt);
    nccl()->all_reduce(tiny, ReduceOp::Sum);
    Tensor ref = Tensor::from_vector({1.0 + (n - 1) / 512.0}, {1}, DType::F64).to(DType::BF16);
    EXPECT_EQ(host(tiny), ref.to_vector()) << "n " << n;
    // avg (groups of two reduce the bf16 tensor itself): rank r holds 2 (r + 1), the mean is n + 1.
    Tensor avg = on_gpu({2.0 * (r + 1), -4.0 * (r + 1)}, dt);
    nccl()->all_reduce(avg, ReduceOp::Avg);
    EXPECT_EQ(host(avg), (std::vector<double>{double(n + 1), -2.0 * (n + 1)})) << "n " << n;
  }
  // the along-a-dimension helpers the layers use go through the same calls
  Tensor x2 = Tensor::from_vector(mine, {1, kBlock}, DType::F64).to(dt).to(gpu());
  Tensor g2 = all_gather_dim(*nccl(), x2, 1);
  ASSERT_EQ(g2.shape(), (Shape{1, int64_t(n) * kBlock}));
  EXPECT_EQ(host(g2), gathered) << dtype_name(dt);
}

TEST_P(NcclTyped, SendRecvChainAndRing) {
  COIL_NEED_NCCL();
  const DType dt = GetParam();
  const int n = nccl()->size(), r = nccl()->rank();
  if (n == 1) GTEST_SKIP() << "send / recv need two ranks";
  // Chain as parallel/sequence.cpp: receive from r - 1, add one, send to r + 1.
  Tensor v = Tensor::zeros({7}, dt, gpu());
  if (r > 0) nccl()->recv(v, r - 1, 3);
  Tensor next = v + Tensor::ones({7}, dt, gpu());
  if (r < n - 1) nccl()->send(next.contiguous(), r + 1, 3);
  EXPECT_EQ(host(v), std::vector<double>(7, double(r))) << dtype_name(dt);
  // Ring, even ranks sending first (odd sizes too: the last rank's pair closes the ring).
  const int to = (r + 1) % n, from = (r + n - 1) % n;
  Tensor mine = Tensor::full({3}, double(r + 1), dt, gpu());
  Tensor got = Tensor::zeros({3}, dt, gpu());
  if (r % 2 == 0) {
    nccl()->send(mine, to);
    nccl()->recv(got, from);
  } else {
    nccl()->recv(got, from);
    nccl()->send(mine, to);
  }
  EXPECT_EQ(host(got), std::vector<double>(3, double(from + 1))) << dtype_name(dt);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NcclTyped, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Nccl, SplitGroups) {
  COIL_NEED_NCCL();
  const int n = nccl()->size(), r = nccl()->rank();
  // Even and odd ranks, ordered by descending world rank: the group rank follows the key.
  CommPtr g = nccl()->split(r % 2, n - r, "parity");
  std::vector<int> members;
  for (int q = 0; q < n; ++q)
    if (q % 2 == r % 2) members.push_back(q);
  ASSERT_EQ(g->size(), int(members.size()));
  int expect_rank = 0;
  for (int q : members) expect_rank += q > r;
  EXPECT_EQ(g->rank(), expect_rank);
  Tensor t = Tensor::full({9}, double(r + 1), DType::F32, gpu());
  g->all_reduce(t, ReduceOp::Sum);
  double want = 0;
  for (int q : members) want += q + 1;
  EXPECT_EQ(host(t), std::vector<double>(9, want));
  // The group's host side splits alike: a host value reduces over the same members.
  EXPECT_EQ(reduce_values(*g, {double(r + 1)})[0], want);
  // A group of groups: split the group again into singletons.
  CommPtr solo = g->split(g->rank(), 0, "solo");
  EXPECT_EQ(solo->size(), 1);
  Tensor s = Tensor::full({4}, 3.0, DType::F32, gpu());
  solo->all_reduce(s, ReduceOp::Sum);
  EXPECT_EQ(host(s), std::vector<double>(4, 3.0));
}

TEST(Nccl, CpuTensorsGoThroughTheHostCommunicator) {
  COIL_NEED_NCCL();
  const int n = nccl()->size(), r = nccl()->rank();
  // The trainer's metric reductions are host doubles (reduce_values).
  EXPECT_EQ(reduce_values(*nccl(), {1.0, double(r)})[1], n * (n - 1) / 2.0);
  Tensor c = Tensor::full({3}, double(r), DType::F64);
  nccl()->all_reduce(c, ReduceOp::Max);
  EXPECT_EQ(c.to_vector(), std::vector<double>(3, double(n - 1)));
  if (n > 1) {  // the sp chain sends its metadata as CPU ints
    Tensor meta = Tensor::from_ints({r, 42}, {2}, DType::I64);
    if (r == 0) nccl()->send(meta, 1, 5);
    if (r == 1) {
      nccl()->recv(meta, 0, 5);
      EXPECT_EQ(meta.to_ints(), (std::vector<int64_t>{0, 42}));
    }
  }
  // Mixed CPU / CUDA buffers are an error, not a silent copy.
  Tensor in = Tensor::zeros({2}, DType::F32, gpu());
  Tensor out = Tensor::zeros({2 * int64_t(n)}, DType::F32);
  EXPECT_THROW(nccl()->all_gather(in, out), Error);
}

TEST(Nccl, TwoRanksOnOneGpuAreRefused) {
  COIL_NEED_NCCL();
  if (world()->size() == 1) GTEST_SKIP() << "needs two ranks";
  // Every rank asks for GPU 0: refused on every rank, before NCCL, naming the way out.
  try {
    NcclCommunicator dup(world(), 0, "dup");
    ADD_FAILURE() << "two ranks on GPU 0 were accepted";
  } catch (const Error& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("would both use GPU"), std::string::npos) << m;
    EXPECT_NE(m.find("parallel.backend: mpi"), std::string::npos) << m;
  }
  // The world is still usable afterwards (nothing was left half made).
  cudaSetDevice(world()->rank());
  Tensor t = Tensor::ones({2}, DType::F32, gpu());
  nccl()->all_reduce(t, ReduceOp::Sum);
  EXPECT_EQ(host(t), std::vector<double>(2, double(world()->size())));
}

TEST(Nccl, ARankWithoutItsGpuFailsEveryRank) {
  COIL_NEED_NCCL();
  const int n = world()->size(), r = world()->rank();
  if (n == 1) GTEST_SKIP() << "needs two ranks";
  // The last rank asks for a device it does not have: every rank fails (none waits forever), the
  // last one with its own reason, the others naming it.
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  try {
    NcclCommunicator bad(world(), r == n - 1 ? count : r, "bad");
    ADD_FAILURE() << "a rank without its GPU was accepted";
  } catch (const Error& e) {
    const std::string m = e.message();
    if (r == n - 1)
      EXPECT_NE(m.find("asks for CUDA device"), std::string::npos) << m;
    else
      EXPECT_NE(m.find("rank " + std::to_string(n - 1) + " could not set up NCCL"), std::string::npos) << m;
  }
  cudaSetDevice(r);  // the failed binding may have left another current device
  Tensor t = Tensor::ones({2}, DType::F32, gpu());
  nccl()->all_reduce(t, ReduceOp::Sum);
  EXPECT_EQ(host(t), std::vector<double>(2, double(n)));
}

}  // namespace
}  // namespace coil
