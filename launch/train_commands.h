// The training subcommands of `coil`: `train` and `checkpoint info`. Each takes the arguments after
// its command word and returns the exit status: 0 ok, 2 a usage error (message and usage on
// stderr); a coil::Error propagates to main (exit 1).
#pragma once

#include <string>
#include <vector>

namespace coil::cli {

int run_train_command(const std::vector<std::string>& args);       // after "train"
int run_checkpoint_command(const std::vector<std::string>& args);  // after "checkpoint"

}  // namespace coil::cli
