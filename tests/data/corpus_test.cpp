// Corpus JSONL reading and tokenizing a corpus into shards with the byte tokenizer.
#include "data/corpus.h"

#include <gtest/gtest.h>

#include <sstream>

#include "core/error.h"
#include "data/dataset.h"
#include "data/tokenize_corpus.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

namespace coil {
namespace {

using datatest::TempDir;

TEST(CorpusJsonl, ParsesEscapesAndUnicode) {
  CorpusDocument d;
  std::string err;
  ASSERT_TRUE(parse_document_line(
      R"({"id": "kjv/Gen-1", "source": "kjv", "n": 3, "ok": true, "text": "a\"b\\c\nd\tA\u00e9\u2019\ud83d\udc0b/\/"})",
      d, err))
      << err;
  EXPECT_EQ(d.id, "kjv/Gen-1");
  EXPECT_EQ(d.source, "kjv");
  EXPECT_EQ(d.text, "a\"b\\c\nd\tA\xc3\xa9\xe2\x80\x99\xf0\x9f\x90\x8b//");
  ASSERT_TRUE(parse_document_line(R"({"text":"raw UTF-8 é stays"})", d, err)) << err;
  EXPECT_EQ(d.text, "raw UTF-8 é stays");
}

TEST(CorpusJsonl, RejectsMalformedLines) {
  CorpusDocument d;
  std::string err;
  for (const char* bad : {R"({"text": "unterminated)", R"(["text"])", R"({"id": "x"})",
                          R"({"text": "a"} extra)", R"({"text" "a"})", R"({"text": "\q"})"}) {
    EXPECT_FALSE(parse_document_line(bad, d, err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(CorpusJsonl, ErrorsNameFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("train.jsonl");
  std::ofstream(path) << "{\"text\": \"one\"}\n\n{\"text\": \"two\"}\nnot json\n";
  std::vector<std::string> seen;
  try {
    for_each_document(path, [&](CorpusDocument&& d) { seen.push_back(d.text); });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(path + ":4"), std::string::npos) << e.message();
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"one", "two"}));
  try {
    corpus_split_path(dir.path().string(), "heldout");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("heldout.jsonl"), std::string::npos) << e.message();
  }
}

TEST(TokenizeCorpus, BytesRoundTripThroughShards) {
  TempDir dir;
  const std::vector<std::string> train = {"First document.\nTwo lines.", "", "Third: naïve “quotes”.",
                                          std::string(300, 'z')};
  const std::vector<std::string> heldout = {"Held out."};
  datatest::write_jsonl(dir.file("train.jsonl"), train);
  datatest::write_jsonl(dir.file("heldout.jsonl"), heldout);
  ByteTokenizer tok;
  TokenizeOptions opt;
  opt.corpus_dir = dir.path().string();
  opt.out_dir = dir.file("shards");
  opt.shard_tokens = 40;  // forces several shards; documents are never split
  opt.threads = 3;
  std::ostringstream log;
  const auto reports = tokenize_corpus(tok, opt, log);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].docs, train.size());
  EXPECT_GE(reports[0].shards, 3u);
  const TokenDataset ds = TokenDataset::open_split(opt.out_dir, "train");
  ASSERT_EQ(ds.num_docs(), train.size());
  EXPECT_EQ(ds.tokenizer_id(), "bytes-v1");
  EXPECT_EQ(ds.vocab_size(), 259);
  EXPECT_EQ(ds.eos_id(), ByteTokenizer::kEos);
  for (size_t d = 0; d < train.size(); ++d) EXPECT_EQ(tok.decode(ds.document(d)), train[d]) << d;
  const TokenDataset held = TokenDataset::open_split(opt.out_dir, "heldout");
  ASSERT_EQ(held.num_docs(), 1u);
  EXPECT_EQ(tok.decode(held.document(0)), heldout[0]);
  // Same shards whatever the thread count.
  opt.out_dir = dir.file("shards1");
  opt.threads = 1;
  tokenize_corpus(tok, opt, log);
  const TokenDataset ds1 = TokenDataset::open_split(opt.out_dir, "train");
  for (size_t d = 0; d < train.size(); ++d) EXPECT_EQ(ds1.document(d), ds.document(d));
}

}  // namespace
}  // namespace coil
