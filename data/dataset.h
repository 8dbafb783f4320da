// A token dataset: the shards of one split ("train" or "heldout") seen as one list of documents.
// `coil data tokenize` writes DIR/<split>-NNNNN.bin shards and DIR/<split>.shards, an index whose
// lines are
//     coil-shards 1 <tokenizer id>
//     <file name> <token count> <document count>      (one line per shard, in order)
// Opening a split reads the index and opens (validates) every shard it lists: a missing shard, one
// whose counts differ from the index, or shards of different tokenizers are errors naming the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/shard.h"

namespace coil {

struct ShardIndexEntry {
  std::string file;  // relative to the index's directory
  uint64_t num_tokens = 0;
  uint64_t num_docs = 0;
};

void write_shard_index(const std::string& dir, const std::string& split, const std::string& tokenizer_id,
                       const std::vector<ShardIndexEntry>& entries);

class TokenDataset {
 public:
  // The shards listed by DIR/<split>.shards.
  static TokenDataset open_split(const std::string& dir, const std::string& split);
  // Explicit shard files, in order (no index).
  static TokenDataset open_files(const std::vector<std::string>& paths);

  uint64_t num_docs() const { return doc_start_.back(); }
  uint64_t num_tokens() const { return num_tokens_; }
  uint64_t doc_length(uint64_t d) const;
  // Copies tokens [start, start + n) of document d into out (n <= doc_length(d) - start).
  void copy_doc_tokens(uint64_t d, uint64_t start, uint64_t n, int32_t* out) const;
  std::vector<int32_t> document(uint64_t d) const;

  const ShardHeader& header() const { return shards_.front()->header(); }  // tokenizer, vocab, specials
  const std::string& tokenizer_id() const { return header().tokenizer_id; }
  int32_t vocab_size() const { return int32_t(header().vocab_size); }
  int32_t bos_id() const { return header().bos_id; }
  int32_t eos_id() const { return header().eos_id; }
  int32_t pad_id() const { return header().pad_id; }
  const std::string& description() const { return description_; }  // for messages
  size_t num_shards() const { return shards_.size(); }

 private:
  void add(std::shared_ptr<Shard> s);
  std::pair<const Shard*, uint64_t> locate(uint64_t d) const;  // shard and local document
  std::vector<std::shared_ptr<Shard>> shards_;
  std::vector<uint64_t> doc_start_{0};  // (num_shards + 1) first global document of each shard
  uint64_t num_tokens_ = 0;
  std::string description_;
};

}  // namespace coil
