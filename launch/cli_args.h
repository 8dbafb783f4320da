// Command-line helpers shared by the `coil` subcommands (hand-parsed until the move to CLI11).
#pragma once

#include <string>

namespace coil::cli {

// "--flag=value" -> {flag, value, inline_value = true}; anything else -> {arg, "", false} (the value, if
// the flag takes one, is then the next argument).
struct FlagArg {
  std::string flag;
  std::string value;
  bool inline_value = false;
};

inline FlagArg split_flag(const std::string& arg) {
  if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos)
    return {arg.substr(0, eq), arg.substr(eq + 1), true};
  return {arg, "", false};
}

}  // namespace coil::cli
