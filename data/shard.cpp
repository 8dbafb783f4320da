// Token shard writer and validating, memory-mapped reader. The layout is in shard.h.
#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "data/tokenizer.h"

namespace coil {

static_assert(std::endian::native == std::endian::little, "token shards are little-endian");

namespace {

constexpr size_t kChecksumAt = 248;

template <typename T>
void put(unsigned char* h, size_t at, T v) {
  std::memcpy(h + at, &v, sizeof v);
}
template <typename T>
T get(const unsigned char* h, size_t at) {
  T v;
  std::memcpy(&v, h + at, sizeof v);
  return v;
}

uint64_t align8(uint64_t n) { return (n + 7) & ~uint64_t(7); }

void encode_header(const ShardHeader& hd, unsigned char* h) {
  std::memset(h, 0, kShardHeaderBytes);
  std::memcpy(h, kShardMagic, 8);
  put<uint32_t>(h, 8, hd.version);
  put<uint32_t>(h, 12, uint32_t(kShardHeaderBytes));
  put<uint32_t>(h, 16, hd.token_bytes);
  put<uint32_t>(h, 20, hd.vocab_size);
  put<int32_t>(h, 24, hd.bos_id);
  put<int32_t>(h, 28, hd.eos_id);
  put<int32_t>(h, 32, hd.pad_id);
  put<uint32_t>(h, 36, uint32_t(hd.tokenizer_id.size()));
  put<uint64_t>(h, 40, hd.num_tokens);
  put<uint64_t>(h, 48, hd.num_docs);
  std::memcpy(h + 56, hd.tokenizer_id.data(), hd.tokenizer_id.size());
  put<uint64_t>(h, kChecksumAt, fnv1a64(h, kChecksumAt));
}

// Decodes and checks a header; `file_bytes` is the size of the file it came from.
ShardHeader decode_header(const unsigned char* h, uint64_t file_bytes, const std::string& path) {
  COIL_CHECK(std::memcmp(h, kShardMagic, 8) == 0, "'", path,
             "' is not a coil token shard (its first 8 bytes are not the magic \"COILTOKS\")");
  ShardHeader hd;
  hd.version = get<uint32_t>(h, 8);
  COIL_CHECK(hd.version == kShardVersion, "token shard '", path, "' has format version ", hd.version,
             "; this coil reads version ", kShardVersion, " (re-run 'coil data tokenize')");
  COIL_CHECK(get<uint64_t>(h, kChecksumAt) == fnv1a64(h, kChecksumAt), "token shard '", path,
             "' has a corrupt header (checksum mismatch)");
  const uint32_t header_bytes = get<uint32_t>(h, 12);
  COIL_CHECK(header_bytes == kShardHeaderBytes, "token shard '", path, "': header size ", header_bytes,
             ", expected ", kShardHeaderBytes);
  hd.token_bytes = get<uint32_t>(h, 16);
  hd.vocab_size = get<uint32_t>(h, 20);
  hd.bos_id = get<int32_t>(h, 24);
  hd.eos_id = get<int32_t>(h, 28);
  hd.pad_id = get<int32_t>(h, 32);
  const uint32_t id_len = get<uint32_t>(h, 36);
  hd.num_tokens = get<uint64_t>(h, 40);
  hd.num_docs = get<uint64_t>(h, 48);
  COIL_CHECK(hd.token_bytes == 2 || hd.token_bytes == 4, "token shard '", path,
             "': bytes per token is ", hd.token_bytes, ", expected 2 or 4");
  COIL_CHECK(hd.vocab_size > 0 && hd.vocab_size <= 0x7fffffffu && (hd.token_bytes == 4 || hd.vocab_size <= 65536), "token shard '",
             path, "': vocab size ", hd.vocab_size, " does not fit ", hd.token_bytes, "-byte tokens");
  for (int32_t id : {hd.bos_id, hd.eos_id, hd.pad_id})
    COIL_CHECK(id >= 0 && uint32_t(id) < hd.vocab_size, "token shard '", path, "': special id ", id,
               " outside the vocab of ", hd.vocab_size);
  COIL_CHECK(id_len <= kShardMaxTokenizerId, "token shard '", path, "': tokenizer id length ", id_len,
             " > ", kShardMaxTokenizerId);
  hd.tokenizer_id.assign(reinterpret_cast<const char*>(h + 56), id_len);
  // Counts so large that the size computation overflows cannot come from a real file.
  COIL_CHECK(hd.num_tokens <= file_bytes && hd.num_docs <= file_bytes, "token shard '", path,
             "' is truncated: the header claims ", hd.num_tokens, " tokens and ", hd.num_docs,
             " documents but the file has only ", file_bytes, " bytes");
  return hd;
}

}  // namespace

uint64_t ShardHeader::offsets_begin() const {
  return kShardHeaderBytes + align8(num_tokens * token_bytes);
}
uint64_t ShardHeader::expected_file_bytes() const { return offsets_begin() + 8 * (num_docs + 1); }

uint32_t token_bytes_for_vocab(uint32_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

// --- writer ------------------------------------------------------------------------------------------

ShardWriter::ShardWriter(std::string path, std::string tokenizer_id, uint32_t vocab_size,
                         int32_t bos_id, int32_t eos_id, int32_t pad_id)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  COIL_CHECK(tokenizer_id.size() <= kShardMaxTokenizerId, "tokenizer id '", tokenizer_id,
             "' is longer than ", kShardMaxTokenizerId, " bytes");
  COIL_CHECK(vocab_size > 0, "ShardWriter: vocab size must be > 0");
  header_.token_bytes = token_bytes_for_vocab(vocab_size);
  header_.vocab_size = vocab_size;
  header_.bos_id = bos_id;
  header_.eos_id = eos_id;
  header_.pad_id = pad_id;
  header_.tokenizer_id = std::move(tokenizer_id);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  COIL_CHECK(f_ != nullptr, "cannot create token shard '", tmp_path_, "': ", std::strerror(errno));
  unsigned char zeros[kShardHeaderBytes] = {};
  write(zeros, sizeof zeros);  // the real header is written by finish()
}

ShardWriter::~ShardWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_path_.c_str());
  }
}

void ShardWriter::write(const void* p, size_t n) {
  COIL_CHECK(std::fwrite(p, 1, n, f_) == n, "error writing token shard '", tmp_path_, "': ",
             std::strerror(errno));
}

void ShardWriter::add_document(std::span<const int32_t> tokens) {
  COIL_CHECK(f_ != nullptr, "ShardWriter: add_document after finish() on '", path_, "'");
  buf_.resize(tokens.size() * header_.token_bytes);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    COIL_CHECK(t >= 0 && uint32_t(t) < header_.vocab_size, "ShardWriter '", path_, "': token id ", t,
               " outside the vocab of ", header_.vocab_size);
    if (header_.token_bytes == 2) {
      const uint16_t v = uint16_t(t);
      std::memcpy(&buf_[2 * i], &v, 2);
    } else {
      const uint32_t v = uint32_t(t);
      std::memcpy(&buf_[4 * i], &v, 4);
    }
  }
  write(buf_.data(), buf_.size());
  header_.num_tokens += tokens.size();
  header_.num_docs += 1;
  offsets_.push_back(header_.num_tokens);
}

void ShardWriter::finish() {
  COIL_CHECK(f_ != nullptr, "ShardWriter: finish() called twice on '", path_, "'");
  const uint64_t pad = header_.offsets_begin() - kShardHeaderBytes - header_.num_tokens * header_.token_bytes;
  const unsigned char zeros[8] = {};
  write(zeros, pad);
  write(offsets_.data(), offsets_.size() * sizeof(uint64_t));
  unsigned char h[kShardHeaderBytes];
  encode_header(header_, h);
  COIL_CHECK(std::fseek(f_, 0, SEEK_SET) == 0, "cannot seek in '", tmp_path_, "'");
  write(h, sizeof h);
  const bool ok = std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
  std::fclose(f_);
  f_ = nullptr;
  COIL_CHECK(ok, "error flushing token shard '", tmp_path_, "': ", std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  COIL_CHECK(!ec, "cannot rename '", tmp_path_, "' to '", path_, "': ", ec.message());
}

// --- reader ------------------------------------------------------------------------------------------

ShardHeader read_shard_header(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  COIL_CHECK(f != nullptr, "cannot open token shard '", path, "': ", std::strerror(errno));
  unsigned char h[kShardHeaderBytes];
  const size_t n = std::fread(h, 1, sizeof h, f);
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fclose(f);
  COIL_CHECK(n == sizeof h, "token shard '", path, "' is truncated: ", size,
             " bytes, shorter than its ", kShardHeaderBytes, "-byte header");
  return decode_header(h, uint64_t(size), path);
}

Shard::Shard(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  COIL_CHECK(fd >= 0, "cannot open token shard '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    COIL_FAIL("token shard '", path, "' is not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < kShardHeaderBytes) {
    ::close(fd);
    COIL_FAIL("token shard '", path, "' is truncated: ", size, " bytes, shorter than its ",
              kShardHeaderBytes, "-byte header");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  COIL_CHECK(m != MAP_FAILED, "cannot map token shard '", path, "': ", std::strerror(errno));
  map_ = static_cast<const unsigned char*>(m);
  map_bytes_ = size;
  try {
    header_ = decode_header(map_, size, path);
    const uint64_t expected = header_.expected_file_bytes();
    COIL_CHECK(size >= expected, "token shard '", path, "' is truncated: ", size, " bytes, expected ",
               expected, " for ", header_.num_tokens, " tokens and ", header_.num_docs, " documents");
    COIL_CHECK(size == expected, "token shard '", path, "' has ", size - expected,
               " unexpected trailing bytes (expected ", expected, " bytes)");
    tokens_ = map_ + kShardHeaderBytes;
    offsets_ = reinterpret_cast<const uint64_t*>(map_ + header_.offsets_begin());
    COIL_CHECK(offsets_[0] == 0 && offsets_[header_.num_docs] == header_.num_tokens, "token shard '",
               path, "': document offsets must run from 0 to ", header_.num_tokens, ", found ",
               offsets_[0], " .. ", offsets_[header_.num_docs]);
    for (uint64_t d = 0; d < header_.num_docs; ++d)
      COIL_CHECK(offsets_[d] <= offsets_[d + 1], "token shard '", path, "': document offsets decrease at ",
                 "document ", d);
    // Every token id below the vocab: a corrupt payload fails here, not as an out-of-range embedding.
    uint32_t max_id = 0;
    if (header_.token_bytes == 2) {
      for (uint64_t i = 0; i < header_.num_tokens; ++i) max_id = std::max<uint32_t>(max_id, get<uint16_t>(tokens_, 2 * i));
    } else {
      for (uint64_t i = 0; i < header_.num_tokens; ++i) max_id = std::max<uint32_t>(max_id, get<uint32_t>(tokens_, 4 * i));
    }
    COIL_CHECK(header_.num_tokens == 0 || max_id < header_.vocab_size, "token shard '", path,
               "' holds token id ", max_id, " outside its vocab of ", header_.vocab_size);
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(map_), map_bytes_);
    throw;
  }
}

Shard::~Shard() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_bytes_);
}

int32_t Shard::token(uint64_t i) const {
  return header_.token_bytes == 2 ? int32_t(get<uint16_t>(tokens_, 2 * i))
                                  : int32_t(get<uint32_t>(tokens_, 4 * i));
}

void Shard::copy_tokens(uint64_t start, uint64_t n, int32_t* out) const {
  COIL_INTERNAL_ASSERT(start + n <= header_.num_tokens, "copy_tokens past the end of ", path_);
  if (header_.token_bytes == 2) {
    const unsigned char* p = tokens_ + 2 * start;
    for (uint64_t i = 0; i < n; ++i) out[i] = int32_t(get<uint16_t>(p, 2 * i));
  } else {
    std::memcpy(out, tokens_ + 4 * start, 4 * n);
  }
}

std::vector<int32_t> Shard::document(uint64_t d) const {
  COIL_CHECK(d < header_.num_docs, "document ", d, " of '", path_, "' out of range (", header_.num_docs,
             " documents)");
  std::vector<int32_t> out(doc_length(d));
  copy_tokens(offsets_[d], out.size(), out.data());
  return out;
}

}  // namespace coil
