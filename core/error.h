// Errors and checks. COIL_CHECK is for conditions a caller can violate (bad shape, bad config): it
// throws coil::Error with a message that says what was expected and what was found. COIL_INTERNAL_ASSERT
// is for invariants of coil itself: a failure is a bug in coil, and the message says so.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace coil {

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, const char* file, int line)
      : std::runtime_error(what + " (" + file + ":" + std::to_string(line) + ")"),
        message_(what), file_(file), line_(line) {}
  const std::string& message() const { return message_; }  // without the file:line suffix
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string message_;
  const char* file_;
  int line_;
};

namespace detail {
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  ((os << args), ...);
  return os.str();
}
}  // namespace detail

}  // namespace coil

// COIL_CHECK(cond, "expected ", a, ", got ", b): message pieces are streamed together.
#define COIL_CHECK(cond, ...)                                                      \
  do {                                                                             \
    if (!(cond)) [[unlikely]]                                                      \
      throw ::coil::Error(::coil::detail::str_cat(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

#define COIL_FAIL(...) throw ::coil::Error(::coil::detail::str_cat(__VA_ARGS__), __FILE__, __LINE__)

#define COIL_INTERNAL_ASSERT(cond, ...)                                                     \
  do {                                                                                      \
    if (!(cond)) [[unlikely]]                                                               \
      throw ::coil::Error(::coil::detail::str_cat("internal error (a bug in coil): ", #cond, \
                                                  " failed. ", ##__VA_ARGS__),              \
                          __FILE__, __LINE__);                                              \
  } while (0)
