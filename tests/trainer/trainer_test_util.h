// What the trainer tests share: a fresh scratch folder per test and process, whole-file reads (to
// check that bad input leaves checkpoints byte for byte as they were), and running the built `coil`.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace coil::trainertest {

namespace fs = std::filesystem;

// An empty folder <tmp>/coil_trainer_<name>_<pid> (emptied if it exists).
inline fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("coil_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs cmd through the shell -> (exit status, stderr and, with keep_stdout, stdout).
inline std::pair<int, std::string> run_command(const std::string& cmd, bool keep_stdout = true) {
  FILE* p = ::popen((cmd + (keep_stdout ? " 2>&1" : " 2>&1 >/dev/null")).c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace coil::trainertest
