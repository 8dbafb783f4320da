// The byte-level tokenizer (exact round trip, special ids) and the tokenizer factory's errors.
#include "data/tokenizer.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "data/sentencepiece_tokenizer.h"

namespace coil {
namespace {

TEST(ByteTokenizer, RoundTripsEveryByte) {
  ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  const auto ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[size_t(b)], b);
  EXPECT_EQ(tok.decode(ids), all);
}

TEST(ByteTokenizer, RoundTripsUtf8Text) {
  ByteTokenizer tok;
  const std::string text = "In the beginning\n\tGod’s “Word” — naïve café, 日本語 🐋\r\n";
  const auto ids = tok.encode(text);
  EXPECT_EQ(ids.size(), text.size());  // one id per byte
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(ByteTokenizer, SpecialIdsAndDecodeSkipsThem) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(tok.bos_id(), 256);
  EXPECT_EQ(tok.eos_id(), 257);
  EXPECT_EQ(tok.pad_id(), 258);
  EXPECT_EQ(tok.id(), "bytes-v1");
  const std::vector<int32_t> ids = {256, 'h', 'i', 257, 258, 258};
  EXPECT_EQ(tok.decode(ids), "hi");
  const std::vector<int32_t> bad = {'a', 300};
  EXPECT_THROW(tok.decode(bad), Error);
}

TEST(TokenizerFactory, BytesAndMissingModel) {
  EXPECT_EQ(load_tokenizer("bytes")->id(), "bytes-v1");
  try {
    load_tokenizer("/nonexistent/dir/tok.model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/nonexistent/dir/tok.model"), std::string::npos) << e.message();
  }
}

TEST(TokenizerFactory, Fnv1aKnownValues) {
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
}

}  // namespace
}  // namespace coil
