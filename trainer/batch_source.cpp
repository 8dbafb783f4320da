// The synthetic batch source: repeated random patterns, one Generator counter range per batch.
#include "trainer/batch_source.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/random.h"

namespace coil {

SyntheticSource::SyntheticSource(int64_t batch, int64_t seq_len, int64_t vocab, int64_t period,
                                 uint64_t seed, int dp_rank, int dp_size)
    : B_(batch), T_(seq_len), vocab_(vocab), period_(period), seed_(seed), dp_rank_(dp_rank),
      dp_size_(dp_size) {
  COIL_CHECK(B_ > 0 && T_ > 0 && vocab_ > 0 && period_ > 0,
             "synthetic source: batch, seq_len, vocab and period must be positive, got ", B_, ", ",
             T_, ", ", vocab_, ", ", period_);
  COIL_CHECK(dp_size_ >= 1 && dp_rank_ >= 0 && dp_rank_ < dp_size_ && B_ % dp_size_ == 0,
             "synthetic source: global batch ", B_, " cannot be split over dp rank ", dp_rank_,
             " of ", dp_size_);
}

Batch SyntheticSource::next_batch() {
  // Batch n draws counters [n * B * period, (n + 1) * B * period) of the seed's stream.
  const uint64_t base = uint64_t(batches_) * uint64_t(B_ * period_);
  const int64_t local = B_ / dp_size_, first = dp_rank_ * local;  // this rank's rows
  std::vector<int64_t> ids, targets;
  ids.reserve(local * T_);
  targets.reserve(local * T_);
  std::vector<int64_t> pattern(period_);
  for (int64_t b = first; b < first + local; ++b) {
    for (int64_t p = 0; p < period_; ++p) {
      const double u = Generator::uniform_at(seed_, base + uint64_t(b * period_ + p));
      pattern[p] = std::min<int64_t>(vocab_ - 1, int64_t(u * double(vocab_)));
    }
    for (int64_t t = 0; t < T_; ++t) {
      ids.push_back(pattern[t % period_]);
      targets.push_back(pattern[(t + 1) % period_]);
    }
  }
  ++batches_;
  return {Tensor::from_ints(ids, {local, T_}), Tensor::from_ints(targets, {local, T_})};
}

SourceState SyntheticSource::state() const {
  return {{"kind", std::string("synthetic")},
          {"seed", int64_t(seed_)},
          {"batches", batches_},
          {"batch_size", B_},
          {"seq_len", T_},
          {"period", period_}};
}

void SyntheticSource::restore(const SourceState& s) {
  COIL_CHECK(state_string(s, "kind") == "synthetic", "synthetic source: cannot restore a '",
             state_string(s, "kind"), "' source state");
  const auto expect = [&](const char* key, int64_t mine) {
    const int64_t v = state_int(s, key);
    COIL_CHECK(v == mine, "synthetic source: saved state has ", key, " ", v, ", this run has ",
               mine);
  };
  expect("seed", int64_t(seed_));
  expect("batch_size", B_);
  expect("seq_len", T_);
  expect("period", period_);
  const int64_t n = state_int(s, "batches");
  COIL_CHECK(n >= 0, "synthetic source: saved state has batches ", n, " (must be >= 0)");
  batches_ = n;
}

std::string SyntheticSource::describe() const {
  return "synthetic (period " + std::to_string(period_) + ", seed " + std::to_string(seed_) + ")";
}

int64_t state_int(const SourceState& s, const std::string& key) {
  auto it = s.find(key);
  COIL_CHECK(it != s.end(), "data source state: missing key '", key, "'");
  const int64_t* v = std::get_if<int64_t>(&it->second);
  COIL_CHECK(v, "data source state: key '", key, "' holds a string, expected an integer");
  return *v;
}

std::string state_string(const SourceState& s, const std::string& key) {
  auto it = s.find(key);
  COIL_CHECK(it != s.end(), "data source state: missing key '", key, "'");
  const std::string* v = std::get_if<std::string>(&it->second);
  COIL_CHECK(v, "data source state: key '", key, "' holds an integer, expected a string");
  return *v;
}

}  // namespace coil
