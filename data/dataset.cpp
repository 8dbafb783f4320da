// Shard index files and the multi-shard document view.
#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace coil {

namespace fs = std::filesystem;

void write_shard_index(const std::string& dir, const std::string& split, const std::string& tokenizer_id,
                       const std::vector<ShardIndexEntry>& entries) {
  const fs::path path = fs::path(dir) / (split + ".shards");
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    COIL_CHECK(out.good(), "cannot write shard index '", tmp.string(), "'");
    out << "coil-shards 1 " << tokenizer_id << "\n";
    for (const auto& e : entries) out << e.file << " " << e.num_tokens << " " << e.num_docs << "\n";
    out.flush();
    COIL_CHECK(out.good(), "error writing shard index '", tmp.string(), "'");
  }
  fs::rename(tmp, path);
}

TokenDataset TokenDataset::open_split(const std::string& dir, const std::string& split) {
  const fs::path index = fs::path(dir) / (split + ".shards");
  COIL_CHECK(fs::is_regular_file(index), "shard index '", index.string(), "' is missing (write the ",
             split, " shards with 'coil data tokenize --out ", dir, "')");
  std::ifstream in(index);
  std::string line, magic, tokenizer_id;
  int version = 0;
  COIL_CHECK(std::getline(in, line), "shard index '", index.string(), "' is empty");
  std::istringstream head(line);
  head >> magic >> version >> tokenizer_id;
  COIL_CHECK(magic == "coil-shards" && version == 1, "'", index.string(),
             "' is not a coil shard index (expected a first line 'coil-shards 1 <tokenizer id>')");
  TokenDataset ds;
  int lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    ShardIndexEntry e;
    std::istringstream ls(line);
    COIL_CHECK(ls >> e.file >> e.num_tokens >> e.num_docs, index.string(), ":", lineno,
               ": expected '<file> <tokens> <documents>', got '", line, "'");
    const fs::path shard_path = fs::path(dir) / e.file;
    COIL_CHECK(fs::exists(shard_path), "token shard '", shard_path.string(), "' listed in '",
               index.string(), "' is missing");
    auto s = std::make_shared<Shard>(shard_path.string());
    COIL_CHECK(s->num_tokens() == e.num_tokens && s->num_docs() == e.num_docs, "token shard '",
               shard_path.string(), "' has ", s->num_tokens(), " tokens and ", s->num_docs(),
               " documents, but '", index.string(), "' lists ", e.num_tokens, " and ", e.num_docs);
    COIL_CHECK(s->header().tokenizer_id == tokenizer_id, "token shard '", shard_path.string(),
               "' was written by tokenizer '", s->header().tokenizer_id, "', but '", index.string(),
               "' says '", tokenizer_id, "'");
    ds.add(std::move(s));
  }
  COIL_CHECK(!ds.shards_.empty(), "shard index '", index.string(), "' lists no shards");
  ds.description_ = index.string();
  return ds;
}

TokenDataset TokenDataset::open_files(const std::vector<std::string>& paths) {
  COIL_CHECK(!paths.empty(), "TokenDataset: no shard files given");
  TokenDataset ds;
  for (const auto& p : paths) {
    COIL_CHECK(fs::exists(p), "token shard '", p, "' is missing");
    ds.add(std::make_shared<Shard>(p));
  }
  ds.description_ = paths.size() == 1 ? paths[0] : paths[0] + " and " + std::to_string(paths.size() - 1) + " more";
  return ds;
}

void TokenDataset::add(std::shared_ptr<Shard> s) {
  if (!shards_.empty()) {
    const ShardHeader& a = shards_.front()->header();
    const ShardHeader& b = s->header();
    COIL_CHECK(a.tokenizer_id == b.tokenizer_id && a.vocab_size == b.vocab_size && a.bos_id == b.bos_id &&
                   a.eos_id == b.eos_id && a.pad_id == b.pad_id,
               "token shard '", s->path(), "' (tokenizer '", b.tokenizer_id, "', vocab ", b.vocab_size,
               ") does not match '", shards_.front()->path(), "' (tokenizer '", a.tokenizer_id, "', vocab ",
               a.vocab_size, ")");
  }
  num_tokens_ += s->num_tokens();
  doc_start_.push_back(doc_start_.back() + s->num_docs());
  shards_.push_back(std::move(s));
}

std::pair<const Shard*, uint64_t> TokenDataset::locate(uint64_t d) const {
  COIL_INTERNAL_ASSERT(d < num_docs(), "document ", d, " of ", num_docs());
  const size_t k = size_t(std::upper_bound(doc_start_.begin(), doc_start_.end(), d) - doc_start_.begin()) - 1;
  return {shards_[k].get(), d - doc_start_[k]};
}

uint64_t TokenDataset::doc_length(uint64_t d) const {
  auto [s, local] = locate(d);
  return s->doc_length(local);
}

void TokenDataset::copy_doc_tokens(uint64_t d, uint64_t start, uint64_t n, int32_t* out) const {
  auto [s, local] = locate(d);
  COIL_INTERNAL_ASSERT(start + n <= s->doc_length(local), "copy past the end of document ", d);
  s->copy_tokens(s->doc_begin(local) + start, n, out);
}

std::vector<int32_t> TokenDataset::document(uint64_t d) const {
  std::vector<int32_t> out(doc_length(d));
  copy_doc_tokens(d, 0, out.size(), out.data());
  return out;
}

}  // namespace coil
