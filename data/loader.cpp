// The data loader: epoch orders, sample assembly, rank slicing and the saveable position.
#include "data/loader.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "data/tokenizer.h"

namespace coil {

const char* loader_mode_name(LoaderMode m) { return m == LoaderMode::Packed ? "packed" : "document"; }

LoaderMode parse_loader_mode(const std::string& s) {
  if (s == "packed") return LoaderMode::Packed;
  if (s == "document") return LoaderMode::Document;
  COIL_FAIL("loader mode must be 'packed' or 'document', got '", s, "'");
}

std::vector<uint64_t> seeded_permutation(uint64_t n, uint64_t seed) {
  std::vector<uint64_t> p(n);
  std::iota(p.begin(), p.end(), uint64_t(0));
  for (uint64_t i = n; i > 1; --i) {
    // j uniform in [0, i): the high half of a 64 x 64-bit product (bias below 2^-40 for i < 2^24).
    const uint64_t j = uint64_t((unsigned __int128)Generator::hash(seed, i) * i >> 64);
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

// --- position ------------------------------------------------------------------------------------------

namespace {
constexpr const char* kPositionFormat = "coil-loader-v1";

uint64_t parse_u64(const std::string& key, const std::string& v, bool hex = false) {
  size_t used = 0;
  uint64_t x = 0;
  try {
    x = std::stoull(v, &used, hex ? 16 : 10);
  } catch (const std::exception&) {
    used = 0;
  }
  COIL_CHECK(!v.empty() && used == v.size() && v[0] != '-', "loader position: '", key,
             "' must be an unsigned ", hex ? "hex " : "", "integer, got '", v, "'");
  return x;
}
}  // namespace

std::map<std::string, std::string> LoaderPosition::to_map() const {
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016" PRIx64, data_hash);
  return {{"format", kPositionFormat}, {"epoch", std::to_string(epoch)},
          {"sample", std::to_string(sample)}, {"seed", std::to_string(seed)}, {"data", hash}};
}

LoaderPosition LoaderPosition::from_map(const std::map<std::string, std::string>& m) {
  auto need = [&](const char* key) -> const std::string& {
    auto it = m.find(key);
    COIL_CHECK(it != m.end(), "loader position: missing key '", key, "'");
    return it->second;
  };
  COIL_CHECK(need("format") == kPositionFormat, "loader position: format '", need("format"),
             "', expected '", kPositionFormat, "'");
  for (const auto& [k, v] : m)
    COIL_CHECK(k == "format" || k == "epoch" || k == "sample" || k == "seed" || k == "data",
               "loader position: unknown key '", k, "'");
  LoaderPosition p;
  p.epoch = parse_u64("epoch", need("epoch"));
  p.sample = parse_u64("sample", need("sample"));
  p.seed = parse_u64("seed", need("seed"));
  p.data_hash = parse_u64("data", need("data"), true);
  return p;
}

std::string LoaderPosition::to_string() const {
  const auto m = to_map();
  return std::string(kPositionFormat) + " epoch=" + m.at("epoch") + " sample=" + m.at("sample") +
         " seed=" + m.at("seed") + " data=" + m.at("data");
}

LoaderPosition LoaderPosition::from_string(const std::string& s) {
  std::istringstream in(s);
  std::string word;
  std::map<std::string, std::string> m;
  COIL_CHECK(in >> word && word == kPositionFormat, "loader position '", s, "' does not start with '",
             kPositionFormat, "'");
  m["format"] = word;
  while (in >> word) {
    const size_t eq = word.find('=');
    COIL_CHECK(eq != std::string::npos && eq > 0, "loader position '", s, "': expected key=value, got '",
               word, "'");
    COIL_CHECK(m.emplace(word.substr(0, eq), word.substr(eq + 1)).second, "loader position '", s,
               "': key '", word.substr(0, eq), "' given twice");
  }
  return from_map(m);
}

// --- loader ------------------------------------------------------------------------------------------

DataLoader::DataLoader(TokenDataset data, LoaderOptions opt) : data_(std::move(data)), opt_(opt) {
  const std::string& where = data_.description();
  COIL_CHECK(opt_.seq_len >= 1, "loader: seq_len must be >= 1, got ", opt_.seq_len);
  COIL_CHECK(opt_.global_batch >= 1, "loader: global batch must be >= 1, got ", opt_.global_batch);
  COIL_CHECK(opt_.dp_size >= 1 && opt_.dp_rank >= 0 && opt_.dp_rank < opt_.dp_size, "loader: dp_rank ",
             opt_.dp_rank, " not in [0, dp_size = ", opt_.dp_size, ")");
  COIL_CHECK(opt_.sp_size >= 1 && opt_.sp_rank >= 0 && opt_.sp_rank < opt_.sp_size, "loader: sp_rank ",
             opt_.sp_rank, " not in [0, sp_size = ", opt_.sp_size, ")");
  COIL_CHECK(opt_.global_batch % opt_.dp_size == 0, "loader: global batch ", opt_.global_batch,
             " is not divisible by dp_size ", opt_.dp_size);
  COIL_CHECK(opt_.seq_len % opt_.sp_size == 0, "loader: seq_len ", opt_.seq_len,
             " is not divisible by sp_size ", opt_.sp_size);
  COIL_CHECK(data_.num_docs() > 0, "loader: '", where, "' holds no documents");
  if (opt_.mode == LoaderMode::Packed) {
    const uint64_t stream = data_.num_tokens() + data_.num_docs();  // each document + EOS
    num_samples_ = stream > uint64_t(opt_.seq_len) ? (stream - 1) / uint64_t(opt_.seq_len) : 0;
  } else {
    num_samples_ = data_.num_docs();
  }
  COIL_CHECK(num_samples_ >= uint64_t(opt_.global_batch), "loader: '", where, "' gives ", num_samples_, " ",
             opt_.mode == LoaderMode::Packed ? "windows" : "documents", " of ", opt_.seq_len + 1,
             " tokens, fewer than one global batch of ", opt_.global_batch);
  data_hash_ = data_hash();
}

uint64_t DataLoader::data_hash() const {
  std::ostringstream s;
  s << data_.tokenizer_id() << '|' << data_.num_tokens() << '|' << data_.num_docs() << '|'
    << loader_mode_name(opt_.mode) << '|' << opt_.seq_len << '|' << opt_.shuffle << '|'
    << (opt_.mode == LoaderMode::Document && opt_.append_eos);
  const std::string head = s.str();
  uint64_t h = fnv1a64(head.data(), head.size());
  for (uint64_t d = 0; d < data_.num_docs(); ++d) {
    const uint64_t n = data_.doc_length(d);
    h = fnv1a64(&n, sizeof n, h);
  }
  return h;
}

LoaderPosition DataLoader::position() const {
  return LoaderPosition{epoch_, sample_, opt_.seed, data_hash_};
}

void DataLoader::set_position(const LoaderPosition& p) {
  COIL_CHECK(p.data_hash == data_hash_, "loader position '", p.to_string(), "' was saved for other ",
             "data or settings (dataset, mode, seq_len or shuffle differ from '", data_.description(), "')");
  COIL_CHECK(p.seed == opt_.seed, "loader position was saved with data seed ", p.seed,
             ", this loader uses seed ", opt_.seed);
  COIL_CHECK(p.sample <= num_samples_, "loader position sample ", p.sample, " is past the ",
             num_samples_, " samples of an epoch");
  epoch_ = p.epoch;
  sample_ = p.sample;
}

void DataLoader::prepare_epoch(uint64_t epoch) {
  if (prepared_epoch_ == epoch) return;
  const uint64_t n_docs = data_.num_docs();
  if (opt_.shuffle) {
    doc_order_ = seeded_permutation(n_docs, Generator::hash(opt_.seed, 2 * epoch));
  } else if (doc_order_.size() != n_docs) {
    doc_order_.resize(n_docs);
    std::iota(doc_order_.begin(), doc_order_.end(), uint64_t(0));
  }
  if (opt_.mode == LoaderMode::Packed) {
    stream_start_.resize(n_docs + 1);
    stream_start_[0] = 0;
    for (uint64_t k = 0; k < n_docs; ++k)
      stream_start_[k + 1] = stream_start_[k] + data_.doc_length(doc_order_[k]) + 1;
    if (opt_.shuffle) window_order_ = seeded_permutation(num_samples_, Generator::hash(opt_.seed, 2 * epoch + 1));
  }
  prepared_epoch_ = epoch;
}

int64_t DataLoader::fill_sample(uint64_t i, int32_t* out) {
  const uint64_t need = uint64_t(opt_.seq_len) + 1;
  if (opt_.mode == LoaderMode::Packed) {
    const uint64_t w = opt_.shuffle ? window_order_[i] : i;
    uint64_t pos = w * uint64_t(opt_.seq_len);
    uint64_t k = uint64_t(std::upper_bound(stream_start_.begin(), stream_start_.end(), pos) -
                          stream_start_.begin()) - 1;
    uint64_t got = 0;
    while (got < need) {
      COIL_INTERNAL_ASSERT(k < doc_order_.size(), "packed window ", w, " runs past the stream");
      const uint64_t doc = doc_order_[k];
      const uint64_t len = data_.doc_length(doc);
      const uint64_t off = pos - stream_start_[k];
      if (off < len) {
        const uint64_t n = std::min(len - off, need - got);
        data_.copy_doc_tokens(doc, off, n, out + got);
        got += n;
        pos += n;
      }
      if (got < need && pos - stream_start_[k] == len) {
        out[got++] = data_.eos_id();
        ++pos;
      }
      ++k;
    }
    return int64_t(need);
  }
  // Document mode: BOS, the document, EOS if it fits; PAD after.
  const uint64_t doc = doc_order_[i];
  const uint64_t len = data_.doc_length(doc);
  out[0] = data_.bos_id();
  const uint64_t n = std::min(len, need - 1);
  data_.copy_doc_tokens(doc, 0, n, out + 1);
  uint64_t valid = 1 + n;
  if (opt_.append_eos && valid < need && n == len) out[valid++] = data_.eos_id();
  std::fill(out + valid, out + need, data_.pad_id());
  return int64_t(valid);
}

std::vector<int32_t> DataLoader::sample_tokens(uint64_t epoch, uint64_t i, int64_t* valid) {
  COIL_CHECK(i < num_samples_, "sample ", i, " out of range (", num_samples_, " per epoch)");
  prepare_epoch(epoch);
  std::vector<int32_t> out(size_t(opt_.seq_len + 1));
  const int64_t v = fill_sample(i, out.data());
  if (valid) *valid = v;
  return out;
}

TokenBatch DataLoader::next_batch() {
  const uint64_t B = uint64_t(opt_.global_batch);
  if (sample_ + B > num_samples_) {  // the rest of the epoch is less than a batch
    ++epoch_;
    sample_ = 0;
  }
  prepare_epoch(epoch_);
  const int64_t Bl = local_batch(), Tl = local_seq_len(), T = opt_.seq_len;
  TokenBatch b;
  b.epoch = epoch_;
  b.first_sample = sample_;
  b.ids = Tensor::empty({Bl, Tl}, DType::I32);      // (B/dp, T/sp)
  b.targets = Tensor::empty({Bl, Tl}, DType::I32);  // (B/dp, T/sp)
  int32_t* ids = b.ids.data<int32_t>();
  int32_t* tgt = b.targets.data<int32_t>();
  std::vector<int32_t> seq(size_t(T + 1));
  const int64_t c0 = int64_t(opt_.sp_rank) * Tl;  // this sp rank's first column
  for (int64_t r = 0; r < Bl; ++r) {
    const uint64_t i = sample_ + uint64_t(opt_.dp_rank * Bl + r);
    const int64_t valid = fill_sample(i, seq.data());
    for (int64_t c = 0; c < Tl; ++c) {
      const int64_t j = c0 + c;
      ids[r * Tl + c] = seq[size_t(j)];
      tgt[r * Tl + c] = j + 1 < valid ? seq[size_t(j + 1)] : opt_.ignore_index;
    }
  }
  sample_ += B;
  return b;
}

}  // namespace coil
