// Training metrics: the FLOP estimate behind MFU, human-readable progress fields, and a JSONL
// writer (one JSON object per line; non-finite numbers are written as null, which JSON lacks
// otherwise).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "layers/config.h"

namespace coil {

// Training FLOPs per token: 6 * parameters (forward 2, backward 4 per weight per token), plus for
// softmax attention layers the score and value products, 6 * L * T * H * D (12 * L * T * H * D for
// full T x T products, halved by the causal mask). Linear mixers are counted by their weights only.
double train_flops_per_token(const ModelConfig& config, int64_t num_parameters, int64_t seq_len);

// "1:02:03", "4:05" (h:mm:ss or m:ss).
std::string format_duration(double seconds);
// "12.3 MiB"
std::string format_bytes(int64_t bytes);

// Appends one JSON object per write() to a file (created with its directory; appended on resume).
class JsonlWriter {
 public:
  using Value = std::variant<int64_t, double, std::string>;
  JsonlWriter() = default;
  explicit JsonlWriter(const std::string& path);
  bool is_open() const { return out_.is_open(); }
  void write(const std::vector<std::pair<std::string, Value>>& fields);

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace coil
