// main of the MPI test binary: MPI is initialized once (MpiRuntime), every rank runs every test, and
// the process exits non-zero on every rank when any rank failed (so mpirun and CTest report it).
// Ranks other than 0 print only their failures, prefixed with the rank.
#include <gtest/gtest.h>

#include <iostream>

#include "mpi_test_util.h"
#include "parallel/mpi_communicator.h"
#include "rank_failures.h"

namespace coil::testing {
CommPtr& world() {
  static CommPtr w;
  return w;
}
}  // namespace coil::testing

int main(int argc, char** argv) {
  coil::MpiRuntime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  coil::testing::world() = mpi.world();
  const int rank = coil::testing::world()->rank();
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new coil::testing::RankFailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  coil::Tensor f = coil::Tensor::from_ints({failed}, {1});
  coil::testing::world()->all_reduce(f, coil::ReduceOp::Max);
  failed = int(f.to_ints()[0]);
  if (rank == 0 && failed) std::cerr << "at least one rank failed" << std::endl;
  coil::testing::world().reset();
  return failed;
}
