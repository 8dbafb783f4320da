// Command-line helpers shared by the `coil` subcommands, on CLI11. Each command builds a CLI::App for
// the words after its command word, gives every App (and subcommand) its hand-written usage text, and
// parses through parse_and_run, which keeps coil's exit-code contract:
//   0  the command ran, or --help printed the usage of the (sub)command it was given on;
//   2  a usage error: "<command>: <message naming the flag>", a blank line and that usage on stderr;
//   1  a coil::Error, which parse_and_run lets through to the caller ("error: <message>").
// Everything here is inline: launch/eval_commands.cpp is also compiled alone into the eval tests.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace coil::cli {

constexpr int kUsageError = 2;

// A command-line mistake found after parsing (a value that depends on another, a bad task name):
// reported like a CLI11 parse error, with the usage of the command.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Shows `usage` as app's --help and under its usage errors (the text names the options in coil's
// words, which CLI11's generated help would not).
inline void set_usage(CLI::App* app, const char* usage) {
  app->formatter_fn([usage](const CLI::App*, std::string, CLI::AppFormatMode) { return std::string(usage); });
}

// Parses an integer >= min: the whole string, or a message naming the value.
inline std::string check_int(const std::string& v, int64_t min) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size()) return "expects an integer, got '" + v + "'";
  if (x < min) return "must be >= " + std::to_string(min) + ", got " + v;
  return "";
}

// Validators checked on the text before CLI11 converts it, so that the message says what was wanted.
inline CLI::Validator int_at_least(int64_t min) {
  return CLI::Validator([min](std::string& v) { return check_int(v, min); }, "INT>=" + std::to_string(min));
}

inline CLI::Validator number() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        size_t used = 0;
        try {
          (void)std::stod(v, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        return used == 0 || used != v.size() ? "expects a number, got '" + v + "'" : "";
      },
      "NUMBER");
}

inline CLI::Validator one_of(std::vector<std::string> choices) {
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i)
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  return CLI::Validator(
      [choices, list](std::string& v) -> std::string {
        return std::find(choices.begin(), choices.end(), v) == choices.end()
                   ? "expects " + list + ", got '" + v + "'"
                   : "";
      },
      list);
}

// The deepest subcommand the parse chose (app itself when none): the one whose usage applies.
inline const CLI::App* chosen_command(const CLI::App& app) {
  const CLI::App* at = &app;
  for (auto subs = at->get_subcommands(); !subs.empty(); subs = at->get_subcommands()) at = subs.front();
  return at;
}

// "coil data prepare": the names from the root App (named "coil <command>") down to the chosen one.
inline std::string command_name(const CLI::App& app) {
  std::string name;
  for (const CLI::App* a = chosen_command(app); a != nullptr; a = a->get_parent())
    name = a->get_name() + (name.empty() ? "" : " " + name);
  return name;
}

// Parses args (the words after the command word) into app, then runs body and returns its status.
// error_prefix heads usage-error messages; empty means "<command name>: ".
inline int parse_and_run(CLI::App& app, const std::vector<std::string>& args, const std::function<int()>& body,
                         std::ostream& out = std::cout, std::ostream& err = std::cerr,
                         const std::string& error_prefix = "") {
  auto usage_error = [&](const std::string& message) {
    err << (error_prefix.empty() ? command_name(app) + ": " : error_prefix) << message << "\n\n" << app.help();
    return kUsageError;
  };
  try {
    // CLI11 takes the words last first.
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return 0;
  } catch (const CLI::RequiredError& e) {
    // CLI11 checks required options before unknown ones: name the unknown word, the likelier slip.
    const std::vector<std::string> extra = app.remaining(true);
    return usage_error(extra.empty() ? std::string(e.what()) : "unknown option or argument '" + extra.front() + "'");
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }
  try {
    return body();
  } catch (const UsageError& e) {
    return usage_error(e.what());
  }
}

}  // namespace coil::cli
