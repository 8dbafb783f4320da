// Rank arithmetic of the process grid and the split of the world into its groups.
#include "parallel/grid.h"

#include <algorithm>
#include <sstream>

namespace coil {

const char* axis_name(Axis a) {
  switch (a) {
    case Axis::DP: return "dp";
    case Axis::TP: return "tp";
    case Axis::SP: return "sp";
  }
  return "?";
}

std::array<Axis, 3> GridShape::parse_order(const std::string& text) {
  std::array<Axis, 3> out{};
  std::vector<std::string> parts;
  std::stringstream ss(text);
  for (std::string p; std::getline(ss, p, ',');) parts.push_back(p);
  COIL_CHECK(parts.size() == 3, "grid order '", text,
             "': expected the three axes tp, sp, dp separated by commas, innermost first");
  bool seen[3] = {false, false, false};
  for (size_t i = 0; i < 3; ++i) {
    const std::string& p = parts[i];
    Axis a = p == "dp" ? Axis::DP : p == "tp" ? Axis::TP : p == "sp" ? Axis::SP : Axis(255);
    COIL_CHECK(int(a) <= 2, "grid order '", text, "': unknown axis '", p, "' (expected dp, tp or sp)");
    COIL_CHECK(!seen[int(a)], "grid order '", text, "': axis ", p, " appears twice");
    seen[int(a)] = true;
    out[i] = a;
  }
  return out;
}

std::string GridShape::order_str() const {
  return std::string(axis_name(order[0])) + "," + axis_name(order[1]) + "," + axis_name(order[2]);
}

GridLayout::GridLayout(const GridShape& shape, int world_size) : shape_(shape), world_size_(world_size) {
  COIL_CHECK(shape.dp >= 1 && shape.tp >= 1 && shape.sp >= 1, "grid sizes must be >= 1, got dp ",
             shape.dp, ", tp ", shape.tp, ", sp ", shape.sp);
  bool seen[3] = {false, false, false};
  for (Axis a : shape.order) seen[int(a)] = true;
  COIL_CHECK(seen[0] && seen[1] && seen[2], "grid order ", shape.order_str(),
             " must name each of dp, tp, sp once");
  COIL_CHECK(shape.world_size() == world_size, "the grid dp ", shape.dp, " x tp ", shape.tp, " x sp ",
             shape.sp, " = ", shape.world_size(), " ranks does not match the ", world_size,
             " processes launched");
}

int GridLayout::stride(Axis a) const {
  int s = 1;
  for (Axis b : shape_.order) {
    if (b == a) return s;
    s *= shape_.size(b);
  }
  return s;
}

GridCoords GridLayout::coords(int rank) const {
  COIL_CHECK(rank >= 0 && rank < world_size_, "rank ", rank, " is outside the grid of ", world_size_);
  GridCoords c;
  c.dp = (rank / stride(Axis::DP)) % shape_.dp;
  c.tp = (rank / stride(Axis::TP)) % shape_.tp;
  c.sp = (rank / stride(Axis::SP)) % shape_.sp;
  return c;
}

int GridLayout::rank_of(const GridCoords& c) const {
  return c.dp * stride(Axis::DP) + c.tp * stride(Axis::TP) + c.sp * stride(Axis::SP);
}

std::vector<int> GridLayout::group_ranks(Axis axis, int rank) const {
  GridCoords c = coords(rank);
  std::vector<int> out;
  for (int i = 0; i < shape_.size(axis); ++i) {
    GridCoords d = c;
    (axis == Axis::DP ? d.dp : axis == Axis::TP ? d.tp : d.sp) = i;
    out.push_back(rank_of(d));
  }
  return out;
}

std::vector<std::vector<int>> GridLayout::all_groups(Axis axis) const {
  std::vector<std::vector<int>> out;
  for (int r = 0; r < world_size_; ++r) {
    auto g = group_ranks(axis, r);
    if (*std::min_element(g.begin(), g.end()) == r) out.push_back(g);
  }
  return out;
}

std::vector<int> GridLayout::dp_sp_group_ranks(int rank) const {
  GridCoords c = coords(rank);
  std::vector<int> out;
  for (int d = 0; d < shape_.dp; ++d)
    for (int s = 0; s < shape_.sp; ++s) out.push_back(rank_of({d, c.tp, s}));
  return out;
}

std::string GridLayout::describe() const {
  std::ostringstream os;
  os << "process grid: " << world_size_ << " ranks = dp " << shape_.dp << " x tp " << shape_.tp
     << " x sp " << shape_.sp << " (order innermost first: " << shape_.order_str() << ")\n";
  for (Axis a : {Axis::TP, Axis::SP, Axis::DP}) {
    os << "  " << axis_name(a) << " groups:";
    for (const auto& g : all_groups(a)) {
      os << " [";
      for (size_t i = 0; i < g.size(); ++i) os << (i ? " " : "") << g[i];
      os << "]";
    }
    os << "\n";
  }
  os << "  rank -> (dp, tp, sp):";
  for (int r = 0; r < world_size_; ++r) {
    GridCoords c = coords(r);
    os << (r % 8 == 0 ? "\n   " : "") << " " << r << "->(" << c.dp << "," << c.tp << "," << c.sp << ")";
  }
  os << "\n";
  return os.str();
}

ProcessGrid::ProcessGrid(CommPtr world, const GridShape& shape)
    : world_(std::move(world)), layout_(shape, world_->size()), coords_(layout_.coords(world_->rank())) {
  const int r = world_->rank();
  // color = the group's smallest world rank (unique per group), key = position in the group.
  auto make = [&](const std::vector<int>& ranks, const char* label) {
    const int color = *std::min_element(ranks.begin(), ranks.end());
    const int key = int(std::find(ranks.begin(), ranks.end(), r) - ranks.begin());
    CommPtr c = world_->split(color, key, label);
    COIL_INTERNAL_ASSERT(c->size() == int(ranks.size()) && c->rank() == key, label, " group of rank ",
                         r, " has size ", c->size(), " rank ", c->rank());
    return c;
  };
  dp_ = make(layout_.group_ranks(Axis::DP, r), "dp");
  tp_ = make(layout_.group_ranks(Axis::TP, r), "tp");
  sp_ = make(layout_.group_ranks(Axis::SP, r), "sp");
  dp_sp_ = make(layout_.dp_sp_group_ranks(r), "dp_sp");
}

}  // namespace coil
