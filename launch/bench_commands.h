// `coil bench`: measured performance, the source of the rows in docs/PERFORMANCE.md.
//   coil bench train   end-to-end training steps of a model config: tokens/s, MFU, peak memory
// Takes the arguments after "bench" and returns the exit status (0 ok, 2 a usage error); a
// coil::Error propagates to main (exit 1).
#pragma once

#include <string>
#include <vector>

namespace coil::cli {

int run_bench_command(const std::vector<std::string>& args);  // after "bench"

}  // namespace coil::cli
