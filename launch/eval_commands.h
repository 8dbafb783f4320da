// `coil eval`: evaluate a checkpoint on downstream tasks, compare result files, generate text.
//   coil eval --checkpoint PATH --tasks LIST [--out results.json] ...
//   coil eval compare A.json B.json ...
//   coil eval generate --checkpoint PATH --prompt TEXT ...
// args are the words after "eval". Returns the exit status: 0 ok, 2 a usage error (message and
// usage on err), 1 a coil::Error (message on err).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace coil {

int eval_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace coil
