// The byte-level tokenizer and the tokenizer factory.
#include "data/tokenizer.h"

#include "core/error.h"
#include "data/sentencepiece_tokenizer.h"

namespace coil {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = int32_t(static_cast<unsigned char>(text[i]));
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id == kBos || id == kEos || id == kPad) continue;
    COIL_CHECK(id >= 0 && id < 256, "ByteTokenizer::decode: expected ids in [0, ", kVocab, "), got ", id);
    out.push_back(char(id));
  }
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "bytes") return std::make_unique<ByteTokenizer>();
  return load_sentencepiece(spec);
}

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace coil
