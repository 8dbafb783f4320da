// Token shards: write/read round trip (uint16 and uint32), the exact file layout, and that truncated,
// foreign, wrong-version, corrupt and inconsistent files give a coil::Error naming the file.
#include "data/shard.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "data/dataset.h"
#include "data_test_util.h"

namespace coil {
namespace {

namespace fs = std::filesystem;

using datatest::TempDir;
using datatest::write_shard;

const std::vector<std::vector<int32_t>> kDocs = {{5, 6, 7}, {}, {999, 0, 4, 4}, {8}};

// Expects fn to throw a coil::Error whose message contains every needle.
template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "expected a coil::Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(e.message().find(n), std::string::npos) << e.message();
  }
}

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(Shard, RoundTripUint16) {
  TempDir dir;
  const std::string path = write_shard(dir.path(), "a.bin", kDocs);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  Shard s(path);
  EXPECT_EQ(s.header().version, kShardVersion);
  EXPECT_EQ(s.header().token_bytes, 2u);
  EXPECT_EQ(s.header().vocab_size, 1000u);
  EXPECT_EQ(s.header().tokenizer_id, "test-v1");
  EXPECT_EQ(s.header().bos_id, 1);
  EXPECT_EQ(s.header().eos_id, 2);
  EXPECT_EQ(s.header().pad_id, 3);
  ASSERT_EQ(s.num_docs(), kDocs.size());
  EXPECT_EQ(s.num_tokens(), 8u);
  for (size_t d = 0; d < kDocs.size(); ++d) EXPECT_EQ(s.document(d), kDocs[d]) << d;
  // Layout: 256-byte header, 8 x 2 token bytes (already a multiple of 8), 5 x 8 offset bytes.
  EXPECT_EQ(fs::file_size(path), 256u + 16u + 40u);
  const std::string bytes = read_file(path);
  EXPECT_EQ(bytes.substr(0, 8), "COILTOKS");
  uint16_t t2;
  std::memcpy(&t2, bytes.data() + 256 + 2 * 3, 2);
  EXPECT_EQ(t2, 999);  // first token of document 2
}

TEST(Shard, RoundTripUint32AndPadding) {
  TempDir dir;
  const std::vector<std::vector<int32_t>> docs = {{70000, 1, 2}, {69999}};
  const std::string path = write_shard(dir.path(), "b.bin", docs, 100000);
  Shard s(path);
  EXPECT_EQ(s.header().token_bytes, 4u);
  EXPECT_EQ(s.document(0), docs[0]);
  EXPECT_EQ(s.document(1), docs[1]);
  EXPECT_EQ(fs::file_size(path), 256u + 16u + 24u);  // 4 x 4 bytes of tokens, 3 offsets
  // uint16 with an odd token count pads to 8 bytes.
  const std::string p2 = write_shard(dir.path(), "c.bin", {{1, 2, 3}});
  EXPECT_EQ(fs::file_size(p2), 256u + 8u + 16u);
  EXPECT_EQ(Shard(p2).document(0), (std::vector<int32_t>{1, 2, 3}));
}

TEST(Shard, EmptyShard) {
  TempDir dir;
  Shard s(write_shard(dir.path(), "e.bin", {}));
  EXPECT_EQ(s.num_docs(), 0u);
  EXPECT_EQ(s.num_tokens(), 0u);
}

TEST(Shard, WriterRejectsOutOfVocabTokens) {
  TempDir dir;
  ShardWriter w(dir.file("x.bin"), "t", 10, 1, 2, 3);
  const std::vector<int32_t> bad = {1, 10};
  EXPECT_THROW(w.add_document(bad), Error);
  const std::vector<int32_t> neg = {-1};
  EXPECT_THROW(w.add_document(neg), Error);
}

TEST(Shard, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  {
    ShardWriter w(dir.file("u.bin"), "t", 10, 1, 2, 3);
    const std::vector<int32_t> doc = {1, 2};
    w.add_document(doc);
  }  // destroyed without finish(), as when tokenizing throws
  EXPECT_FALSE(fs::exists(dir.file("u.bin")));
  EXPECT_FALSE(fs::exists(dir.file("u.bin.tmp")));
}

TEST(ShardErrors, MissingFile) {
  TempDir dir;
  expect_error([&] { Shard s(dir.file("nope.bin")); }, {"nope.bin", "cannot open"});
}

TEST(ShardErrors, TruncatedShardNamesTheFile) {
  TempDir dir;
  const std::string path = write_shard(dir.path(), "t.bin", kDocs);
  const std::string bytes = read_file(path);
  write_file(path, bytes.substr(0, bytes.size() - 8));  // one offset short
  expect_error([&] { Shard s(path); }, {path, "truncated", std::to_string(bytes.size())});
  write_file(path, bytes.substr(0, 100));  // shorter than the header
  expect_error([&] { Shard s(path); }, {path, "truncated", "header"});
  write_file(path, "");
  expect_error([&] { Shard s(path); }, {path, "truncated"});
}

TEST(ShardErrors, WrongMagicNamesTheFile) {
  TempDir dir;
  const std::string path = dir.file("foreign.bin");
  write_file(path, std::string(4096, 'x'));
  expect_error([&] { Shard s(path); }, {path, "not a coil token shard"});
  // A real shard with one magic byte changed.
  const std::string p2 = write_shard(dir.path(), "m.bin", kDocs);
  std::string bytes = read_file(p2);
  bytes[3] = 'X';
  write_file(p2, bytes);
  expect_error([&] { Shard s(p2); }, {p2, "magic"});
}

TEST(ShardErrors, WrongVersionNamesTheFile) {
  TempDir dir;
  const std::string path = write_shard(dir.path(), "v.bin", kDocs);
  std::string bytes = read_file(path);
  const uint32_t v2 = 2;
  std::memcpy(bytes.data() + 8, &v2, 4);
  write_file(path, bytes);
  expect_error([&] { Shard s(path); }, {path, "version 2", "reads version 1"});
}

TEST(ShardErrors, CorruptHeaderTrailingBytesAndBadTokens) {
  TempDir dir;
  const std::string path = write_shard(dir.path(), "c.bin", kDocs);
  const std::string good = read_file(path);
  std::string bytes = good;
  bytes[45] ^= 1;  // inside the token count: the checksum catches it
  write_file(path, bytes);
  expect_error([&] { Shard s(path); }, {path, "checksum"});
  write_file(path, good + std::string(8, '\0'));
  expect_error([&] { Shard s(path); }, {path, "trailing"});
  bytes = good;
  const uint16_t big = 1000;  // == vocab
  std::memcpy(bytes.data() + 256, &big, 2);
  write_file(path, bytes);
  expect_error([&] { Shard s(path); }, {path, "token id 1000", "vocab of 1000"});
  bytes = good;
  const uint64_t bad_offset = 9;  // offsets are 0 3 3 7 8: make the fourth larger than the last
  std::memcpy(bytes.data() + bytes.size() - 16, &bad_offset, 8);  // offsets[D-1] > offsets[D]
  write_file(path, bytes);
  expect_error([&] { Shard s(path); }, {path, "offsets"});
}

TEST(ShardErrors, HeaderOnlyReader) {
  TempDir dir;
  const std::string path = write_shard(dir.path(), "h.bin", kDocs);
  const ShardHeader h = read_shard_header(path);
  EXPECT_EQ(h.num_docs, 4u);
  EXPECT_EQ(h.expected_file_bytes(), fs::file_size(path));
}

TEST(Dataset, SplitIndexAcrossShards) {
  TempDir dir;
  write_shard(dir.path(), "train-00000.bin", {{10, 11}, {12}});
  write_shard(dir.path(), "train-00001.bin", {{13, 14, 15}});
  write_shard_index(dir.path().string(), "train", "test-v1",
                    {{"train-00000.bin", 3, 2}, {"train-00001.bin", 3, 1}});
  const TokenDataset ds = TokenDataset::open_split(dir.path().string(), "train");
  EXPECT_EQ(ds.num_shards(), 2u);
  EXPECT_EQ(ds.num_docs(), 3u);
  EXPECT_EQ(ds.num_tokens(), 6u);
  EXPECT_EQ(ds.document(0), (std::vector<int32_t>{10, 11}));
  EXPECT_EQ(ds.document(2), (std::vector<int32_t>{13, 14, 15}));
  EXPECT_EQ(ds.doc_length(1), 1u);
  EXPECT_EQ(ds.tokenizer_id(), "test-v1");
}

TEST(Dataset, MissingOrMismatchedShardNamesTheFile) {
  TempDir dir;
  const std::string d = dir.path().string();
  expect_error([&] { TokenDataset::open_split(d, "train"); }, {"train.shards", "missing"});
  write_shard(dir.path(), "train-00000.bin", {{10, 11}});
  write_shard_index(d, "train", "test-v1", {{"train-00000.bin", 2, 1}, {"train-00001.bin", 5, 1}});
  expect_error([&] { TokenDataset::open_split(d, "train"); }, {"train-00001.bin", "missing"});
  write_shard_index(d, "train", "test-v1", {{"train-00000.bin", 3, 1}});
  expect_error([&] { TokenDataset::open_split(d, "train"); }, {"train-00000.bin", "lists 3"});
  write_shard_index(d, "train", "other-v1", {{"train-00000.bin", 2, 1}});
  expect_error([&] { TokenDataset::open_split(d, "train"); }, {"train-00000.bin", "other-v1"});
  // Shards of different tokenizers cannot be mixed.
  const std::string a = write_shard(dir.path(), "a.bin", {{1}}, 1000, "tok-a");
  const std::string b = write_shard(dir.path(), "b.bin", {{1}}, 1000, "tok-b");
  expect_error([&] { TokenDataset::open_files({a, b}); }, {"b.bin", "tok-b", "tok-a"});
}

}  // namespace
}  // namespace coil
