// The training data loader: turns a TokenDataset into batches of (ids, targets), the same on every
// parallel layout. Step s of an epoch uses global samples [s*B, (s+1)*B) of that epoch's order
// (B = global_batch); data-parallel rank r takes rows [r*B/dp, (r+1)*B/dp); tensor-parallel ranks
// call it with the same dp_rank and so get the same rows; sequence-parallel rank q takes columns
// [q*T/sp, (q+1)*T/sp) of each row (a contiguous part of every sequence).
//
// Samples (each T + 1 tokens; ids = tokens[0:T], targets = tokens[1:T+1]):
//  - packed: the epoch's documents, each followed by EOS, are concatenated into one stream that is
//    cut into windows of T + 1 tokens starting every T tokens; samples = windows.
//  - document (the paper's one document per sequence): BOS, the document, then EOS if it fits,
//    truncated to T + 1 tokens and padded with PAD; targets at padded positions are ignore_index.
// With shuffle on, each epoch permutes the documents (and, packed, the windows) with a permutation
// seeded by (seed, epoch), so an epoch's order is a pure function of the seed. The position is
// (epoch, samples consumed): independent of dp/tp/sp and of the batch size, so it restores on any
// layout. An epoch ends when fewer than B samples are left (the rest are skipped).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"

namespace coil {

enum class LoaderMode { Packed, Document };
const char* loader_mode_name(LoaderMode m);   // "packed" | "document"
LoaderMode parse_loader_mode(const std::string& s);

struct LoaderOptions {
  int64_t seq_len = 0;       // T
  int64_t global_batch = 0;  // B: sequences per step summed over the dp ranks
  int dp_rank = 0, dp_size = 1;
  int sp_rank = 0, sp_size = 1;
  LoaderMode mode = LoaderMode::Packed;
  uint64_t seed = 0;
  bool shuffle = true;
  bool append_eos = true;    // document mode: EOS after the document when it fits in T + 1
  int32_t ignore_index = -100;
};

// Where a loader is: saved in checkpoints as a string or as key/value pairs.
struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t sample = 0;      // samples of this epoch consumed so far (all dp ranks together)
  uint64_t seed = 0;
  uint64_t data_hash = 0;   // fingerprint of the dataset, mode, seq_len and shuffle setting

  // "coil-loader-v1 epoch=E sample=S seed=X data=<16 hex digits>"
  std::string to_string() const;
  static LoaderPosition from_string(const std::string& s);
  // {"format": "coil-loader-v1", "epoch": ..., "sample": ..., "seed": ..., "data": ...}
  std::map<std::string, std::string> to_map() const;
  static LoaderPosition from_map(const std::map<std::string, std::string>& m);
  bool operator==(const LoaderPosition&) const = default;
};

struct TokenBatch {
  Tensor ids;      // (B / dp_size, T / sp_size) i32 on the CPU
  Tensor targets;  // (B / dp_size, T / sp_size) i32 on the CPU; ignore_index where nothing to predict
  uint64_t epoch = 0;
  uint64_t first_sample = 0;  // global sample index of row 0 of dp rank 0 within the epoch
};

class DataLoader {
 public:
  DataLoader(TokenDataset data, LoaderOptions opt);

  TokenBatch next_batch();
  LoaderPosition position() const;
  // Continues from p; an error when p was saved for other data, mode, seq_len or seed.
  void set_position(const LoaderPosition& p);

  uint64_t samples_per_epoch() const { return num_samples_; }
  uint64_t steps_per_epoch() const { return num_samples_ / uint64_t(opt_.global_batch); }
  int64_t local_batch() const { return opt_.global_batch / opt_.dp_size; }
  int64_t local_seq_len() const { return opt_.seq_len / opt_.sp_size; }
  const LoaderOptions& options() const { return opt_; }
  const TokenDataset& dataset() const { return data_; }

  // The T + 1 tokens of global sample i of an epoch (padding included); *valid = tokens before the
  // padding. For tests and inspection.
  std::vector<int32_t> sample_tokens(uint64_t epoch, uint64_t i, int64_t* valid = nullptr);

 private:
  void prepare_epoch(uint64_t epoch);
  int64_t fill_sample(uint64_t i, int32_t* out);  // out: T + 1 tokens; returns the valid length
  uint64_t data_hash() const;

  TokenDataset data_;
  LoaderOptions opt_;
  uint64_t num_samples_ = 0;
  uint64_t data_hash_ = 0;
  uint64_t epoch_ = 0, sample_ = 0;
  // The order of the prepared epoch.
  uint64_t prepared_epoch_ = ~uint64_t(0);
  std::vector<uint64_t> doc_order_;     // (num_docs) document at each place of the epoch
  std::vector<uint64_t> stream_start_;  // (num_docs + 1) packed: stream offset of each place
  std::vector<uint64_t> window_order_;  // (num_samples) packed: window at each sample
};

// A uniform random permutation of [0, n) (Fisher-Yates on coil::Generator hashes of (seed, i)):
// identical on every platform and compiler.
std::vector<uint64_t> seeded_permutation(uint64_t n, uint64_t seed);

}  // namespace coil
