// Tokenizers: text <-> token ids. One interface for the byte-level tokenizer (always built) and the
// SentencePiece BPE tokenizer (built with libsentencepiece). encode() adds no BOS/EOS: the shard
// writer stores plain document tokens and the loader inserts BOS/EOS/PAD. id() names the tokenizer
// exactly (kind, vocabulary and a hash of the model) and is stored in every shard header, so shards
// and the tokenizer that reads them can be checked against each other.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coil {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // BOS, EOS and PAD ids are skipped; every other id must be < vocab_size().
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual std::string id() const = 0;  // at most 191 bytes (the shard header's field)
};

// Byte-level tokenizer. Ids 0..255 are the bytes of the UTF-8 text; 256 = BOS, 257 = EOS, 258 = PAD;
// vocab_size 259. Round trip is exact for any byte string. id() = "bytes-v1".
class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBos = 256, kEos = 257, kPad = 258, kVocab = 259;
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return kVocab; }
  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }
  int32_t pad_id() const override { return kPad; }
  std::string id() const override { return "bytes-v1"; }
};

// "bytes" -> ByteTokenizer; anything else is the path of a SentencePiece .model file (an error
// naming the path when it does not load, or when coil was built without SentencePiece).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

// 64-bit FNV-1a, used for tokenizer ids and the shard header checksum.
uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull);

}  // namespace coil
