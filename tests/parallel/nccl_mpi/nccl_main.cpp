// main of the NCCL test binary (tests/parallel/nccl_mpi/nccl_test.cpp): MPI is initialized once, the
// NCCL world (one GPU per rank, device = world rank) is made once when this node has a GPU per rank,
// every rank runs every test, and the process exits non-zero on every rank when any rank failed.
// Runs alone (world of 1) or under mpirun. When every test skipped itself (no GPU, or fewer GPUs
// than ranks) it prints one line CTest's SKIP_REGULAR_EXPRESSION turns into "skipped".
#include <gtest/gtest.h>

#include <iostream>

#include "nccl_test_util.h"
#include "parallel/mpi_communicator.h"
#include "../mpi/rank_failures.h"

namespace coil::nccl_test {
CommPtr& world() {
  static CommPtr w;
  return w;
}
CommPtr& nccl() {
  static CommPtr n;
  return n;
}
int& gpu_count() {
  static int c = 0;
  return c;
}
}  // namespace coil::nccl_test

int main(int argc, char** argv) {
  using namespace coil::nccl_test;
  coil::MpiRuntime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  world() = mpi.world();
  const int rank = world()->rank(), n = world()->size();
  if (rank != 0) {
    // Only rank 0 prints the run; the others print their failures, prefixed with the rank.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new coil::testing::RankFailurePrinter(rank));
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  // Every rank must agree whether the NCCL world exists: the smallest count decides.
  coil::Tensor c = coil::Tensor::from_ints({count}, {1}, coil::DType::I64);
  world()->all_reduce(c, coil::ReduceOp::Max);
  coil::Tensor neg = coil::Tensor::from_ints({-count}, {1}, coil::DType::I64);
  world()->all_reduce(neg, coil::ReduceOp::Max);
  gpu_count() = int(-neg.to_ints()[0]);
  int failed = 0;
  if (gpu_count() >= n) {
    try {
      nccl() = std::make_shared<coil::NcclCommunicator>(world(), rank, "world");
    } catch (const coil::Error& e) {
      std::cerr << "[rank " << rank << "] NCCL world: " << e.message() << std::endl;
      failed = 1;
    }
  }
  if (!failed) failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  const auto* unit = ::testing::UnitTest::GetInstance();
  if (rank == 0 && !failed && unit->test_to_run_count() > 0 &&
      unit->skipped_test_count() == unit->test_to_run_count())
    std::cout << "coil-nccl-test: all tests skipped (" << gpu_count() << " GPU(s) per node, " << n
              << " rank(s): NCCL needs one GPU per rank)" << std::endl;
  coil::Tensor f = coil::Tensor::from_ints({failed}, {1});
  world()->all_reduce(f, coil::ReduceOp::Max);
  failed = int(f.to_ints()[0]);
  if (rank == 0 && failed) std::cerr << "at least one rank failed" << std::endl;
  nccl().reset();
  world().reset();
  return failed;
}
