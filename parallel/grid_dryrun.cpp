// coil_grid_dryrun: prints the process-grid layout (which world ranks form every dp / tp / sp group)
// without launching anything. Used by launch/mpi/*.sh --dry-run.
//   coil_grid_dryrun --dp 2 --tp 2 [--sp 1] [--order tp,sp,dp] [--world 4]
#include <cstdlib>
#include <iostream>
#include <string>

#include "parallel/grid.h"

int main(int argc, char** argv) {
  try {
    coil::GridShape shape;
    int world = -1;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        COIL_CHECK(i + 1 < argc, "coil_grid_dryrun: ", a, " needs a value");
        return argv[++i];
      };
      if (a == "--dp") shape.dp = std::stoi(value());
      else if (a == "--tp") shape.tp = std::stoi(value());
      else if (a == "--sp") shape.sp = std::stoi(value());
      else if (a == "--order") shape.order = coil::GridShape::parse_order(value());
      else if (a == "--world") world = std::stoi(value());
      else if (a == "-h" || a == "--help") {
        std::cout << "usage: coil_grid_dryrun --dp N --tp N --sp N [--order tp,sp,dp] [--world N]\n";
        return 0;
      } else {
        COIL_FAIL("coil_grid_dryrun: unknown argument '", a, "' (see --help)");
      }
    }
    coil::GridLayout layout(shape, world < 0 ? shape.world_size() : world);
    std::cout << layout.describe();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
