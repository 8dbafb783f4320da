// The data subcommands of `coil`: `data prepare`, `data tokenize`, `data info` and
// `tokenizer train`. Each takes the arguments after its command word and returns the exit status:
// 0 ok, 2 a usage error (message and usage on stderr); a coil::Error propagates to main (exit 1).
#pragma once

#include <string>
#include <vector>

namespace coil::cli {

int run_data_command(const std::vector<std::string>& args);       // after "data"
int run_tokenizer_command(const std::vector<std::string>& args);  // after "tokenizer"

}  // namespace coil::cli
