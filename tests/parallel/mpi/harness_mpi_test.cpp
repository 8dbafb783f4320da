// The MPI test harness itself: with COIL_TEST_FAIL_ON_RANK=k set, rank k fails this test, and the
// whole binary must then exit non-zero (CTest runs it that way with WILL_FAIL). Without it, it passes.
#include <gtest/gtest.h>

#include <cstdlib>

#include "mpi_test_util.h"

namespace coil {
namespace {

TEST(MpiHarness, FailureOnOneRankFailsEveryRank) {
  const char* k = std::getenv("COIL_TEST_FAIL_ON_RANK");
  if (k && std::atoi(k) == coil::testing::world()->rank()) ADD_FAILURE() << "forced failure on this rank";
}

}  // namespace
}  // namespace coil
