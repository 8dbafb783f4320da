// The token-shard BatchSource: data/loader.h's DataLoader (packed or one document per sequence,
// seeded shuffling, each dp rank's slice of the global batch) behind the trainer's interface. Its
// state is the loader's LoaderPosition (epoch, samples consumed, seed, data fingerprint) plus
// kind "shards": it counts samples of the whole global batch, so a position saved under one dp
// layout restores under any other, and a position of other data or settings is refused by name.
#pragma once

#include <memory>
#include <string>

#include "data/loader.h"
#include "trainer/batch_source.h"
#include "trainer/run_config.h"

namespace coil {

class ShardSource : public BatchSource {
 public:
  ShardSource(TokenDataset data, const LoaderOptions& options, std::string stream);
  Batch next_batch() override;
  SourceState state() const override;
  void restore(const SourceState& state) override;
  std::string describe() const override;
  const DataLoader& loader() const { return loader_; }

 private:
  DataLoader loader_;
  std::string stream_;  // "train" | "eval", for messages
};

// The documents of data.train (which = "train") or data.eval ("eval") of a shards config: a split
// index DIR/<split>.shards or a glob of shard files. Errors name the config key and the file.
TokenDataset open_config_shards(const RunConfig& config, const std::string& which);

// A ShardSource for the stream `which` of a shards config, sliced for dp rank dp_rank of dp_size;
// checks that the shards' vocab fits model.vocab.
std::unique_ptr<BatchSource> make_shard_source(const RunConfig& config, const std::string& which,
                                               int dp_rank, int dp_size);

}  // namespace coil
