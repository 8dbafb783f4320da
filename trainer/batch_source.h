// Where the training loop gets its tokens: an abstract BatchSource (next batch, saveable position)
// and a synthetic implementation for tests and smoke runs; trainer/shard_source.h adapts the
// token-shard DataLoader of data/ (trainer depends on data, DESIGN.md). A source hands each dp rank
// its slice of the global batch; its state is the global position (the same on every rank, so it
// restores on any dp layout), a flat key -> int64 | string map stored in checkpoints under
// /data/<stream>.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "core/tensor.h"

namespace coil {

struct Batch {
  Tensor ids;      // (B, T) i32
  Tensor targets;  // (B, T) i32, next-token targets (-100: ignored)
};

using SourceValue = std::variant<int64_t, std::string>;
using SourceState = std::map<std::string, SourceValue>;

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next_batch() = 0;
  // The position after the last batch handed out; restore(state()) replays the same batches.
  virtual SourceState state() const = 0;
  // Throws coil::Error naming the key when the state does not belong to this source.
  virtual void restore(const SourceState& state) = 0;
  virtual std::string describe() const = 0;
};

// Rows of a random pattern of `period` tokens repeated over T (learnable in-context copying), drawn
// from a counter-based Generator: batch n depends only on (seed, n), so the position is one count.
// `batch` is the global batch; dp rank r gets rows [r * batch / dp_size, (r + 1) * batch / dp_size).
class SyntheticSource : public BatchSource {
 public:
  SyntheticSource(int64_t batch, int64_t seq_len, int64_t vocab, int64_t period, uint64_t seed,
                  int dp_rank = 0, int dp_size = 1);
  Batch next_batch() override;
  SourceState state() const override;
  void restore(const SourceState& state) override;
  std::string describe() const override;

 private:
  int64_t B_, T_, vocab_, period_;
  uint64_t seed_;
  int dp_rank_, dp_size_;
  int64_t batches_ = 0;  // batches handed out so far
};

// Helpers for SourceState values (throw naming the key when missing or of the other type).
int64_t state_int(const SourceState& s, const std::string& key);
std::string state_string(const SourceState& s, const std::string& key);

}  // namespace coil
