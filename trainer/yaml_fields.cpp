// Strict YAML field readers: typed scalars, range checks and known-key mappings with file:line
// errors.
#include "trainer/yaml_fields.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"

namespace coil::yaml {

namespace {

std::string where(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return file;
  return file + ":" + std::to_string(mark.line + 1);
}

[[noreturn]] void type_error(const YAML::Node& n, const std::string& file, const std::string& path,
                             const char* expected) {
  fail(file, n, path, std::string("expected ") + expected + ", got " + describe(n));
}

std::string plain_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

YAML::Node load_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  COIL_CHECK(in.good(), "cannot open config file '", file, "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    COIL_FAIL(where(file, e.mark), ": malformed YAML: ", e.msg);
  }
}

void fail(const std::string& file, const YAML::Node& node, const std::string& path,
          const std::string& message, const YAML::Mark& fallback) {
  YAML::Mark mark = node.IsDefined() ? node.Mark() : YAML::Mark::null_mark();
  if (mark.is_null()) mark = fallback;
  COIL_FAIL(where(file, mark), ": ", path.empty() ? "" : path + ": ", message);
}

std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing (null)";
  if (n.IsSequence()) return "a sequence";
  if (n.IsMap()) return "a mapping";
  return "'" + n.Scalar() + "'";
}

int64_t read_int(const YAML::Node& n, const std::string& file, const std::string& path) {
  if (!n.IsScalar()) type_error(n, file, path, "an integer");
  const std::string& s = n.Scalar();
  int64_t v = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (ec == std::errc::result_out_of_range)
    fail(file, n, path, "integer '" + s + "' does not fit in 64 bits");
  if (ec != std::errc() || ptr != end || s.empty()) type_error(n, file, path, "an integer");
  return v;
}

double read_double(const YAML::Node& n, const std::string& file, const std::string& path) {
  if (!n.IsScalar()) type_error(n, file, path, "a number");
  const std::string& s = n.Scalar();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || std::isspace(static_cast<unsigned char>(s[0])))
    type_error(n, file, path, "a number");
  if (errno == ERANGE || !std::isfinite(v))
    fail(file, n, path, "expected a finite number, got '" + s + "'");
  return v;
}

bool read_bool(const YAML::Node& n, const std::string& file, const std::string& path) {
  if (n.IsScalar()) {
    static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "Yes",
                                              "YES",  "on",   "On",   "ON"};
    static const std::set<std::string> no = {"false", "False", "FALSE", "no", "No",
                                             "NO",    "off",   "Off",   "OFF"};
    if (yes.count(n.Scalar())) return true;
    if (no.count(n.Scalar())) return false;
  }
  type_error(n, file, path, "a boolean (true or false)");
}

std::string read_string(const YAML::Node& n, const std::string& file, const std::string& path) {
  if (!n.IsScalar()) type_error(n, file, path, "a string");
  return n.Scalar();
}

Field int_field(const std::string& file, const std::string& name, int64_t* dst, int64_t min,
                int64_t max) {
  return {name, [=](const YAML::Node& n, const std::string& path) {
            int64_t v = read_int(n, file, path);
            if (v < min || v > max) {
              std::string range =
                  max == std::numeric_limits<int64_t>::max()
                      ? ">= " + std::to_string(min)
                      : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
              fail(file, n, path, "must be " + range + ", got " + std::to_string(v));
            }
            *dst = v;
          }};
}

Field uint_field(const std::string& file, const std::string& name, uint64_t* dst) {
  return {name, [=](const YAML::Node& n, const std::string& path) {
            int64_t v = read_int(n, file, path);
            if (v < 0) fail(file, n, path, "must be >= 0, got " + std::to_string(v));
            *dst = uint64_t(v);
          }};
}

Field double_field(const std::string& file, const std::string& name, double* dst, double min,
                   bool min_exclusive) {
  return {name, [=](const YAML::Node& n, const std::string& path) {
            double v = read_double(n, file, path);
            if (min_exclusive ? !(v > min) : !(v >= min))
              fail(file, n, path,
                   std::string("must be ") + (min_exclusive ? "> " : ">= ") + plain_number(min) +
                       ", got " + n.Scalar());
            *dst = v;
          }};
}

Field bool_field(const std::string& file, const std::string& name, bool* dst) {
  return {name,
          [=](const YAML::Node& n, const std::string& path) { *dst = read_bool(n, file, path); }};
}

Field string_field(const std::string& file, const std::string& name, std::string* dst,
                   const std::vector<std::string>& choices) {
  return {name, [=](const YAML::Node& n, const std::string& path) {
            std::string v = read_string(n, file, path);
            if (!choices.empty()) {
              bool ok = false;
              std::string list;
              for (const auto& c : choices) {
                ok = ok || c == v;
                list += (list.empty() ? "" : ", ") + c;
              }
              if (!ok) fail(file, n, path, "expected one of " + list + ", got '" + v + "'");
            }
            *dst = v;
          }};
}

void read_mapping(const YAML::Node& node, const std::string& file, const std::string& path,
                  const std::vector<Field>& fields) {
  if (!node.IsMap()) type_error(node, file, path.empty() ? "(document)" : path, "a mapping");
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->first` lives in a temporary proxy
    if (!key.IsScalar()) fail(file, key, path, "expected a plain key, got " + describe(key));
    const std::string name = key.Scalar();
    const std::string key_path = join_path(path, name);
    if (!seen.insert(name).second) fail(file, key, key_path, "duplicate key");
    const Field* field = nullptr;
    for (const auto& f : fields)
      if (f.name == name) field = &f;
    if (!field) {
      std::string valid;
      for (const auto& f : fields) valid += (valid.empty() ? "" : ", ") + f.name;
      fail(file, key, key_path,
           "unknown key (valid keys" + (path.empty() ? std::string() : " of " + path) + ": " +
               valid + ")");
    }
    // A null value ("key:" with nothing after it) is positioned after the key, or nowhere: report
    // the key's line instead.
    if (!it->second.IsNull()) {
      field->read(it->second, key_path);
      continue;
    }
    try {
      field->read(it->second, key_path);
    } catch (const Error& e) {
      const std::string& m = e.message();
      const size_t text = m.rfind(file, 0) == 0 ? m.find(": ", file.size()) : std::string::npos;
      if (text == std::string::npos) throw;
      COIL_FAIL(where(file, key.Mark()), m.substr(text));
    }
  }
}

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

}  // namespace coil::yaml
