// Tokenizes a prepared corpus into token shards: DIR/train.jsonl and DIR/heldout.jsonl become
// OUT/train-00000.bin ... and OUT/heldout-00000.bin ... with their indexes OUT/train.shards and
// OUT/heldout.shards (see dataset.h and shard.h). Documents keep their corpus order and are never
// split across shards.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace coil {

struct TokenizeOptions {
  std::string corpus_dir;
  std::string out_dir;
  uint64_t shard_tokens = uint64_t(1) << 27;  // a new shard starts past this many tokens
  int threads = 0;                            // encoding threads; 0: hardware concurrency
  std::vector<std::string> splits = {"train", "heldout"};
};

struct TokenizeSplitReport {
  std::string split;
  uint64_t docs = 0, tokens = 0, text_bytes = 0, shards = 0;
  double seconds = 0;
};

std::vector<TokenizeSplitReport> tokenize_corpus(const Tokenizer& tok, const TokenizeOptions& opt,
                                                 std::ostream& log);

}  // namespace coil
