// Strict reading of YAML config files into structs. Every mapping is read against a table of known
// fields: an unknown key, a duplicate key, a wrong type or an out-of-range value throws coil::Error
// as `FILE:LINE: KEY.PATH: what was expected, what was found` (lines 1-based, from yaml-cpp's
// Mark). Shared by the model config (trainer/model_yaml.h) and the run config parsers.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace coil::yaml {

// Parses a whole file. A missing file or malformed YAML throws coil::Error naming the file (and the
// line of the syntax error).
YAML::Node load_file(const std::string& file);

// Throws coil::Error "file:line: path: message"; the line is the node's (or fallback's, when the
// node carries no position, e.g. an absent value).
[[noreturn]] void fail(const std::string& file, const YAML::Node& node, const std::string& path,
                       const std::string& message,
                       const YAML::Mark& fallback = YAML::Mark::null_mark());

// "scalar 'two'", "a sequence", "a mapping", "nothing (null)": how a found value is described.
std::string describe(const YAML::Node& node);

// Typed scalars. Integers are plain decimal; floats accept 1e-5 style; booleans
// true/false/yes/no/on/off.
int64_t read_int(const YAML::Node& n, const std::string& file, const std::string& path);
double read_double(const YAML::Node& n, const std::string& file, const std::string& path);
bool read_bool(const YAML::Node& n, const std::string& file, const std::string& path);
std::string read_string(const YAML::Node& n, const std::string& file, const std::string& path);

// One known key of a mapping: `read` parses the value (its full key path given) into a destination.
struct Field {
  std::string name;
  std::function<void(const YAML::Node& value, const std::string& path)> read;
};

// Field makers. Integer/float ranges are inclusive; `choices` (when not empty) lists the valid
// strings.
Field int_field(const std::string& file, const std::string& name, int64_t* dst, int64_t min,
                int64_t max = std::numeric_limits<int64_t>::max());
Field uint_field(const std::string& file, const std::string& name, uint64_t* dst);
// min_exclusive: the value must be > min (e.g. a positive epsilon); otherwise >= min.
Field double_field(const std::string& file, const std::string& name, double* dst, double min,
                   bool min_exclusive);
Field bool_field(const std::string& file, const std::string& name, bool* dst);
Field string_field(const std::string& file, const std::string& name, std::string* dst,
                   const std::vector<std::string>& choices = {});

// Reads mapping `node` (at key path `path`, "" for the root) field by field, in file order. Throws
// on a non-mapping node, a non-scalar or duplicate key, or a key not in `fields` (listing the valid
// keys).
void read_mapping(const YAML::Node& node, const std::string& file, const std::string& path,
                  const std::vector<Field>& fields);

// "a.b" from parent path "a" and key "b" ("b" when the parent is the root).
std::string join_path(const std::string& parent, const std::string& key);

}  // namespace coil::yaml
