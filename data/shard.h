// Token shards: one binary file of tokenized documents. Little-endian; layout (byte offsets):
//
//     0  char[8]  magic "COILTOKS"
//     8  u32      format version (kShardVersion = 1)
//    12  u32      header size in bytes (256)
//    16  u32      bytes per token: 2 (uint16, vocab <= 65536) or 4 (uint32)
//    20  u32      vocab size
//    24  i32      BOS id        28  i32  EOS id        32  i32  PAD id
//    36  u32      length of the tokenizer id string (<= 191)
//    40  u64      token count T
//    48  u64      document count D
//    56  char[192] tokenizer id (UTF-8, zero padded; Tokenizer::id())
//   248  u64      FNV-1a 64 of bytes [0, 248) (catches a corrupt header)
//   256  tokens   T x (u16|u32): the documents' tokens back to back, no BOS/EOS inserted
//        padding  zero bytes up to a multiple of 8
//        offsets  (D + 1) x u64: document d is tokens [offsets[d], offsets[d+1]); offsets[0] = 0,
//                 offsets[D] = T
//
// The file size is therefore exactly 256 + align8(T * bytes per token) + 8 * (D + 1). Opening a shard
// validates the magic, version, checksum, fields, that size, the offsets and every token id against
// the vocab; a failure is a coil::Error naming the file and what is wrong. The writer writes to
// "<path>.tmp" and renames on finish(), so a crash never leaves a half-written shard under its name.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace coil {

inline constexpr char kShardMagic[8] = {'C', 'O', 'I', 'L', 'T', 'O', 'K', 'S'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr uint64_t kShardHeaderBytes = 256;
inline constexpr size_t kShardMaxTokenizerId = 191;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t token_bytes = 2;
  uint32_t vocab_size = 0;
  int32_t bos_id = 0, eos_id = 0, pad_id = 0;
  uint64_t num_tokens = 0;
  uint64_t num_docs = 0;
  std::string tokenizer_id;

  // File size implied by the counts.
  uint64_t expected_file_bytes() const;
  uint64_t offsets_begin() const;  // byte offset of the document offsets
};

// Bytes per token for a vocab: 2 when every id fits in uint16, else 4.
uint32_t token_bytes_for_vocab(uint32_t vocab_size);

class ShardWriter {
 public:
  ShardWriter(std::string path, std::string tokenizer_id, uint32_t vocab_size, int32_t bos_id,
              int32_t eos_id, int32_t pad_id);
  ~ShardWriter();  // removes the temporary file when finish() was not called
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void add_document(std::span<const int32_t> tokens);  // ids must be in [0, vocab)
  void finish();                                       // header + offsets, then rename
  uint64_t num_tokens() const { return header_.num_tokens; }
  uint64_t num_docs() const { return header_.num_docs; }
  const std::string& path() const { return path_; }

 private:
  void write(const void* p, size_t n);
  std::string path_, tmp_path_;
  ShardHeader header_;
  std::vector<uint64_t> offsets_{0};
  std::vector<unsigned char> buf_;
  std::FILE* f_ = nullptr;
};

// A validated, read-only shard, memory-mapped.
class Shard {
 public:
  explicit Shard(const std::string& path);  // validates; throws coil::Error naming the path
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const ShardHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  uint64_t num_tokens() const { return header_.num_tokens; }
  uint64_t num_docs() const { return header_.num_docs; }
  uint64_t doc_begin(uint64_t d) const { return offsets_[d]; }
  uint64_t doc_length(uint64_t d) const { return offsets_[d + 1] - offsets_[d]; }
  int32_t token(uint64_t i) const;
  // Copies tokens [start, start + n) (flat token positions) into out.
  void copy_tokens(uint64_t start, uint64_t n, int32_t* out) const;
  std::vector<int32_t> document(uint64_t d) const;

 private:
  std::string path_;
  ShardHeader header_;
  const unsigned char* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  const uint64_t* offsets_ = nullptr;
};

// Reads and checks only the header (no size, offsets or token checks). Exposed for `coil data info`.
ShardHeader read_shard_header(const std::string& path);

}  // namespace coil
