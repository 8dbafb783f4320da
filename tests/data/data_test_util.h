// Helpers of the data tests: a temporary directory removed at the end of a test, a tiny corpus
// writer, and a shard set built from token lists.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/shard.h"

namespace coil::datatest {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("coil_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Escapes a string for a JSON string literal (enough for the test texts).
inline std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default: o += c;
    }
  }
  return o;
}

inline void write_jsonl(const std::string& path, const std::vector<std::string>& texts) {
  std::ofstream out(path);
  for (size_t i = 0; i < texts.size(); ++i)
    out << "{\"id\": \"t/" << i << "\", \"source\": \"t\", \"text\": \"" << json_escape(texts[i]) << "\"}\n";
}

// A shard of the given documents (vocab 1000; BOS 1, EOS 2, PAD 3) at dir/name.
inline std::string write_shard(const fs::path& dir, const std::string& name,
                               const std::vector<std::vector<int32_t>>& docs, uint32_t vocab = 1000,
                               const std::string& tokenizer_id = "test-v1") {
  const std::string path = (dir / name).string();
  ShardWriter w(path, tokenizer_id, vocab, 1, 2, 3);
  for (const auto& d : docs) w.add_document(d);
  w.finish();
  return path;
}

// A one-shard dataset of documents whose tokens encode (document, position): doc d of length
// lengths[d] holds tokens 10 + (d * 37 + p) % 900, so tests can find where a token came from.
inline TokenDataset numbered_dataset(const fs::path& dir, const std::vector<int>& lengths) {
  std::vector<std::vector<int32_t>> docs;
  for (size_t d = 0; d < lengths.size(); ++d) {
    std::vector<int32_t> t;
    for (int p = 0; p < lengths[d]; ++p) t.push_back(int32_t(10 + (int(d) * 37 + p) % 900));
    docs.push_back(t);
  }
  return TokenDataset::open_files({write_shard(dir, "numbered.bin", docs)});
}

}  // namespace coil::datatest
