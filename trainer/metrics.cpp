// FLOP estimate, formatting helpers and the JSONL writer.
#include "trainer/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace coil {

double train_flops_per_token(const ModelConfig& c, int64_t num_parameters, int64_t seq_len) {
  int64_t attention_layers = 0;
  if (c.mixer == "softmax") attention_layers = c.n_layers;
  if (c.mixer == "hybrid")
    for (char ch : c.layer_pattern) attention_layers += ch == '*';
  return 6.0 * double(num_parameters) +
         6.0 * double(attention_layers) * double(seq_len) * double(c.n_heads * c.head_dim);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = int64_t(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600),
                  (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  const double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  return buf;
}

JsonlWriter::JsonlWriter(const std::string& path) : path_(path) {
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  out_.open(path, std::ios::app);
  COIL_CHECK(out_.is_open(), "metrics: cannot open '", path, "' for appending");
}

namespace {

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

}  // namespace

void JsonlWriter::write(const std::vector<std::pair<std::string, Value>>& fields) {
  if (!out_.is_open()) return;
  std::string line = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) line += ", ";
    append_json_string(line, fields[i].first);
    line += ": ";
    const Value& v = fields[i].second;
    if (const int64_t* n = std::get_if<int64_t>(&v)) {
      line += std::to_string(*n);
    } else if (const double* d = std::get_if<double>(&v)) {
      if (std::isfinite(*d)) {
        char buf[64];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *d);
        line.append(buf, end);
      } else {
        line += "null";
      }
    } else {
      append_json_string(line, std::get<std::string>(v));
    }
  }
  line += "}\n";
  out_ << line << std::flush;
  COIL_CHECK(out_.good(), "metrics: writing '", path_, "' failed");
}

}  // namespace coil
