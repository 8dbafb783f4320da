// SentencePiece BPE (compiled only when coil has libsentencepiece): train on a tiny corpus, then
// encode/decode round trips, special ids, the id string, byte fallback and shards.
#include "data/sentencepiece_tokenizer.h"

#include <gtest/gtest.h>

#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/tokenize_corpus.h"
#include "../data_test_util.h"

namespace coil {
namespace {

namespace fs = std::filesystem;

using datatest::TempDir;

// A few hundred sentences over a small word list, with punctuation, digits and newlines.
std::vector<std::string> tiny_corpus() {
  const char* words[] = {"the", "whale", "ship", "captain", "sea", "harpoon", "white", "voyage",
                         "sailor", "deep", "water", "storm", "wind", "boat", "island", "night"};
  Generator g(3);
  std::vector<std::string> docs;
  for (int d = 0; d < 120; ++d) {
    std::string text;
    for (int s = 0; s < 6; ++s) {
      for (int w = 0; w < 8; ++w) {
        text += words[g.next_u64() % 16];
        text += w == 7 ? ". " : " ";
      }
      if (s % 2) text += "In " + std::to_string(1800 + int(g.next_u64() % 100)) + ",\n";
    }
    docs.push_back(text);
  }
  return docs;
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    datatest::write_jsonl(dir_->file("train.jsonl"), tiny_corpus());
    datatest::write_jsonl(dir_->file("heldout.jsonl"), {"the whale sails at night. In 1851,\nthe end."});
    SentencePieceTrainOptions opt;
    opt.corpus_dir = dir_->path().string();
    opt.out_prefix = dir_->file("tok/tiny");
    opt.vocab_size = 400;
    opt.threads = 2;
    std::ostringstream log;
    model_ = new std::string(train_sentencepiece(opt, log));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static TempDir* dir_;
  static std::string* model_;
};
TempDir* SentencePieceTest::dir_ = nullptr;
std::string* SentencePieceTest::model_ = nullptr;

TEST_F(SentencePieceTest, TrainsAndLoads) {
  EXPECT_TRUE(have_sentencepiece());
  EXPECT_TRUE(fs::exists(*model_));
  EXPECT_TRUE(fs::exists(dir_->file("tok/tiny.vocab")));
  const auto tok = load_tokenizer(*model_);
  EXPECT_EQ(tok->vocab_size(), 400);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 3);
  EXPECT_EQ(tok->id().rfind("spm-400-", 0), 0u) << tok->id();
  EXPECT_EQ(tok->id().size(), std::string("spm-400-").size() + 16);
  EXPECT_EQ(load_tokenizer(*model_)->id(), tok->id());  // the id is a function of the model
}

TEST_F(SentencePieceTest, EncodeDecodeRoundTrip) {
  const auto tok = load_tokenizer(*model_);
  for (const std::string text : {"the whale sails at night.", "In 1851,\nthe captain  saw\tthe sea.",
                                 "unseen words: Queequeg’s naïve 日本 🐋 {}[]", "", "  leading spaces"}) {
    const auto ids = tok->encode(text);
    for (int32_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok->vocab_size());
    }
    EXPECT_EQ(tok->decode(ids), text) << text;
  }
  // Merges make frequent words shorter than their bytes.
  EXPECT_LT(tok->encode("the whale ship captain").size(), std::string("the whale ship captain").size() / 2);
  // BOS/EOS/PAD are skipped by decode.
  auto ids = tok->encode("the sea");
  ids.insert(ids.begin(), tok->bos_id());
  ids.push_back(tok->eos_id());
  ids.push_back(tok->pad_id());
  EXPECT_EQ(tok->decode(ids), "the sea");
}

TEST_F(SentencePieceTest, TokenizesIntoUint16Shards) {
  const auto tok = load_tokenizer(*model_);
  TokenizeOptions opt;
  opt.corpus_dir = dir_->path().string();
  opt.out_dir = dir_->file("shards");
  std::ostringstream log;
  tokenize_corpus(*tok, opt, log);
  const TokenDataset held = TokenDataset::open_split(opt.out_dir, "heldout");
  EXPECT_EQ(held.header().token_bytes, 2u);
  EXPECT_EQ(held.tokenizer_id(), tok->id());
  EXPECT_EQ(tok->decode(held.document(0)), "the whale sails at night. In 1851,\nthe end.");
}

TEST(SentencePieceErrors, BadModelAndVocab) {
  TempDir dir;
  const std::string junk = dir.file("junk.model");
  std::ofstream(junk) << "not a model";
  try {
    load_tokenizer(junk);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(junk), std::string::npos) << e.message();
  }
  SentencePieceTrainOptions opt;
  opt.corpus_dir = dir.path().string();
  opt.out_prefix = dir.file("m");
  opt.vocab_size = 100;
  std::ostringstream log;
  EXPECT_THROW(train_sentencepiece(opt, log), Error);
  opt.vocab_size = 1000;
  EXPECT_THROW(train_sentencepiece(opt, log), Error);  // no train.jsonl
}

}  // namespace
}  // namespace coil
