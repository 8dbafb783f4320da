// ProcessGrid on real ranks: the communicators of every group contain exactly the world ranks the
// layout names (checked by all-gathering world ranks inside each group). Needs 4 ranks; skipped
// otherwise except the layout/world mismatch check.
#include <gtest/gtest.h>

#include "mpi_test_util.h"
#include "parallel/grid.h"

namespace coil {
namespace {

using coil::testing::world;

std::vector<int> members(Communicator& g, int world_rank) {
  Tensor mine = Tensor::from_ints({world_rank}, {1});
  Tensor all = Tensor::zeros({g.size()}, DType::I32);
  g.all_gather(mine, all);
  std::vector<int> out;
  for (int64_t v : all.to_ints()) out.push_back(int(v));
  return out;
}

void check_grid(const GridShape& shape, const std::vector<std::vector<int>>& tp,
                const std::vector<std::vector<int>>& sp, const std::vector<std::vector<int>>& dp) {
  ProcessGrid grid(world(), shape);
  const int r = grid.world_rank();
  auto find = [&](const std::vector<std::vector<int>>& groups) {
    for (const auto& g : groups)
      for (int x : g)
        if (x == r) return g;
    return std::vector<int>{};
  };
  EXPECT_EQ(members(*grid.tp(), r), find(tp)) << shape.order_str();
  EXPECT_EQ(members(*grid.sp(), r), find(sp)) << shape.order_str();
  EXPECT_EQ(members(*grid.dp(), r), find(dp)) << shape.order_str();
  EXPECT_EQ(grid.tp()->rank(), grid.coords().tp);
  EXPECT_EQ(grid.dp()->rank(), grid.coords().dp);
  EXPECT_EQ(grid.sp()->rank(), grid.coords().sp);
  EXPECT_EQ(members(*grid.dp_sp(), r), grid.layout().dp_sp_group_ranks(r));
}

TEST(Mpi4Ranks, GridDp2Tp2) {
  ASSERT_EQ(world()->size(), 4) << "the Mpi4Ranks suite runs under mpirun -np 4 only";
  GridShape s;
  s.dp = 2;
  s.tp = 2;
  check_grid(s, {{0, 1}, {2, 3}}, {{0}, {1}, {2}, {3}}, {{0, 2}, {1, 3}});
  s.order = GridShape::parse_order("dp,tp,sp");
  check_grid(s, {{0, 2}, {1, 3}}, {{0}, {1}, {2}, {3}}, {{0, 1}, {2, 3}});
}

TEST(Mpi4Ranks, GridSp2Dp2) {
  ASSERT_EQ(world()->size(), 4) << "the Mpi4Ranks suite runs under mpirun -np 4 only";
  GridShape s;
  s.sp = 2;
  s.dp = 2;
  check_grid(s, {{0}, {1}, {2}, {3}}, {{0, 1}, {2, 3}}, {{0, 2}, {1, 3}});
  s.order = GridShape::parse_order("sp,dp,tp");
  check_grid(s, {{0}, {1}, {2}, {3}}, {{0, 1}, {2, 3}}, {{0, 2}, {1, 3}});
  s.order = GridShape::parse_order("dp,sp,tp");
  check_grid(s, {{0}, {1}, {2}, {3}}, {{0, 2}, {1, 3}}, {{0, 1}, {2, 3}});
}

TEST(MpiGrid, WorldMismatchFailsAtStart) {
  GridShape s;
  s.dp = world()->size() + 1;
  EXPECT_THROW(ProcessGrid(world(), s), Error);
}

}  // namespace
}  // namespace coil
