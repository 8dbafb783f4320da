// The process grid: world = dp x tp x sp ranks. The order lists the axes from innermost (fastest
// varying world rank) to outermost; the default {tp, sp, dp} keeps a tp group on consecutive ranks,
// i.e. inside a node. GridLayout is the pure rank arithmetic (no communication: the dry run prints it);
// ProcessGrid builds one communicator per group from the world communicator, once, and is passed to
// whoever needs a group.
//   coordinate of rank r on axis a = (r / stride(a)) % size(a), stride = product of inner axis sizes.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace coil {

enum class Axis { DP, TP, SP };
const char* axis_name(Axis a);

struct GridShape {
  int dp = 1, tp = 1, sp = 1;
  std::array<Axis, 3> order = {Axis::TP, Axis::SP, Axis::DP};  // innermost first
  int size(Axis a) const { return a == Axis::DP ? dp : a == Axis::TP ? tp : sp; }
  int world_size() const { return dp * tp * sp; }
  // "tp,sp,dp" (innermost first; each axis exactly once) -> order. Throws naming the bad text.
  static std::array<Axis, 3> parse_order(const std::string& text);
  std::string order_str() const;  // "tp,sp,dp"
};

struct GridCoords {
  int dp = 0, tp = 0, sp = 0;
  int get(Axis a) const { return a == Axis::DP ? dp : a == Axis::TP ? tp : sp; }
  bool operator==(const GridCoords&) const = default;
};

class GridLayout {
 public:
  // Throws coil::Error when dp * tp * sp != world_size (naming all four numbers) or a size is < 1.
  GridLayout(const GridShape& shape, int world_size);
  const GridShape& shape() const { return shape_; }
  int world_size() const { return world_size_; }
  GridCoords coords(int rank) const;
  int rank_of(const GridCoords& c) const;
  // World ranks of the `axis` group that contains `rank`, ordered by their coordinate on that axis
  // (position i has coordinate i, so the group rank equals the coordinate).
  std::vector<int> group_ranks(Axis axis, int rank) const;
  // Every group of an axis, each as above, ordered by their smallest world rank.
  std::vector<std::vector<int>> all_groups(Axis axis) const;
  // World ranks that share rank's tp coordinate (the dp x sp ranks, dp outer): parameters replicated
  // across sequence shards reduce their gradients over this group.
  std::vector<int> dp_sp_group_ranks(int rank) const;
  // The whole layout: sizes, order, every group of every axis, every rank's coordinates.
  std::string describe() const;

 private:
  int stride(Axis a) const;
  GridShape shape_;
  int world_size_;
};

class ProcessGrid {
 public:
  // Collective over world: splits it into the dp, tp, sp and dp_sp groups of the layout.
  ProcessGrid(CommPtr world, const GridShape& shape);
  const GridLayout& layout() const { return layout_; }
  const GridCoords& coords() const { return coords_; }
  int world_rank() const { return world_->rank(); }
  const CommPtr& world() const { return world_; }
  const CommPtr& dp() const { return dp_; }
  const CommPtr& tp() const { return tp_; }
  const CommPtr& sp() const { return sp_; }
  const CommPtr& dp_sp() const { return dp_sp_; }
  const CommPtr& group(Axis a) const { return a == Axis::DP ? dp_ : a == Axis::TP ? tp_ : sp_; }
  std::string describe() const { return layout_.describe(); }

 private:
  CommPtr world_;
  GridLayout layout_;
  GridCoords coords_;
  CommPtr dp_, tp_, sp_, dp_sp_;
};

}  // namespace coil
