// The process grid's rank arithmetic (no communication): coordinates, groups for several shapes and
// orders, and the start-up errors that name the numbers that disagree.
#include <gtest/gtest.h>

#include "parallel/grid.h"

namespace coil {
namespace {

using Groups = std::vector<std::vector<int>>;

TEST(GridLayout, Dp2Tp2DefaultOrder) {
  GridShape s;
  s.dp = 2;
  s.tp = 2;
  GridLayout g(s, 4);
  EXPECT_EQ(g.all_groups(Axis::TP), (Groups{{0, 1}, {2, 3}}));  // tp innermost
  EXPECT_EQ(g.all_groups(Axis::DP), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(g.all_groups(Axis::SP), (Groups{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(g.coords(3), (GridCoords{1, 1, 0}));
  for (int r = 0; r < 4; ++r) EXPECT_EQ(g.rank_of(g.coords(r)), r);
}

TEST(GridLayout, Dp2Tp2DpInnermost) {
  GridShape s;
  s.dp = 2;
  s.tp = 2;
  s.order = GridShape::parse_order("dp,sp,tp");
  GridLayout g(s, 4);
  EXPECT_EQ(g.all_groups(Axis::DP), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(g.all_groups(Axis::TP), (Groups{{0, 2}, {1, 3}}));
}

TEST(GridLayout, Sp2Dp2BothOrders) {
  GridShape s;
  s.sp = 2;
  s.dp = 2;
  GridLayout g(s, 4);  // tp, sp, dp: sp innermost of the non-trivial axes
  EXPECT_EQ(g.all_groups(Axis::SP), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(g.all_groups(Axis::DP), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(g.dp_sp_group_ranks(1), (std::vector<int>{0, 1, 2, 3}));
  s.order = GridShape::parse_order("tp,dp,sp");
  GridLayout h(s, 4);
  EXPECT_EQ(h.all_groups(Axis::DP), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(h.all_groups(Axis::SP), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(h.coords(2), (GridCoords{0, 0, 1}));
}

TEST(GridLayout, Dp2Tp2Sp2) {
  GridShape s;
  s.dp = s.tp = s.sp = 2;
  GridLayout g(s, 8);
  EXPECT_EQ(g.group_ranks(Axis::TP, 5), (std::vector<int>{4, 5}));
  EXPECT_EQ(g.group_ranks(Axis::SP, 5), (std::vector<int>{5, 7}));
  EXPECT_EQ(g.group_ranks(Axis::DP, 5), (std::vector<int>{1, 5}));
  EXPECT_EQ(g.dp_sp_group_ranks(5), (std::vector<int>{1, 3, 5, 7}));
  const std::string d = g.describe();
  EXPECT_NE(d.find("tp groups: [0 1] [2 3] [4 5] [6 7]"), std::string::npos) << d;
  EXPECT_NE(d.find("dp groups: [0 4] [1 5] [2 6] [3 7]"), std::string::npos) << d;
}

TEST(GridLayout, MismatchNamesTheNumbers) {
  GridShape s;
  s.dp = 2;
  s.tp = 3;
  try {
    GridLayout g(s, 4);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("dp 2 x tp 3 x sp 1 = 6"), std::string::npos) << m;
    EXPECT_NE(m.find("4 processes"), std::string::npos) << m;
  }
  EXPECT_THROW(GridShape::parse_order("tp,tp,dp"), Error);
  EXPECT_THROW(GridShape::parse_order("tp,xp,dp"), Error);
  EXPECT_THROW(GridShape::parse_order("tp,dp"), Error);
}

TEST(ProcessGrid, SingleRankWorld) {
  ProcessGrid grid(std::make_shared<SingleCommunicator>(), GridShape{});
  EXPECT_EQ(grid.dp()->size(), 1);
  EXPECT_EQ(grid.tp()->size(), 1);
  EXPECT_EQ(grid.sp()->size(), 1);
  EXPECT_EQ(grid.coords(), (GridCoords{0, 0, 0}));
  GridShape bad;
  bad.tp = 2;
  EXPECT_THROW(ProcessGrid(std::make_shared<SingleCommunicator>(), bad), Error);
}

}  // namespace
}  // namespace coil
