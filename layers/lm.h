// LanguageModel: token embedding -> L pre-norm blocks -> final RMSNorm -> lm_head (untied, no bias, no
// embedding scaling). Embedding and lm_head are initialised N(0, 0.02), the block linears with the
// PyTorch default, all drawn from one Generator(config.seed) in registration order.
#pragma once

#include <memory>
#include <vector>

#include "layers/block.h"
#include "layers/config.h"
#include "layers/hybrid.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace coil {

class LanguageModel : public Module {
 public:
  explicit LanguageModel(const ModelConfig& config, const ParamOptions& opt = {});
  // ids (B, T) i32 -> logits (B, T, V)
  Tensor forward(const Tensor& ids) const;
  // Mean cross-entropy of forward(ids) against targets (B, T) i32 (entries == ignore_index skipped).
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100) const;
  // The parameter count of a config, without building the model.
  static int64_t count_parameters(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  size_t num_blocks() const { return blocks_.size(); }
  Block& block(size_t i) const { return *blocks_.at(i); }
  // mixer "hybrid": one layer per pattern letter instead of blocks (num_blocks() is then 0).
  size_t num_hybrid_layers() const { return hybrid_layers_.size(); }
  HybridLayer& hybrid_layer(size_t i) const { return *hybrid_layers_.at(i); }

  std::shared_ptr<Embedding> embedding;  // weight (V, C)
  std::shared_ptr<ModuleList> layers;    // L x Block (hybrid: one HybridLayer per pattern letter)
  std::shared_ptr<RMSNorm> norm_f;       // weight (C)
  std::shared_ptr<Linear> lm_head;       // weight (V, C)

 private:
  ModelConfig config_;
  std::vector<std::shared_ptr<Block>> blocks_;  // the same blocks as `layers`, typed
  std::vector<std::shared_ptr<HybridLayer>> hybrid_layers_;  // hybrid: the same layers, typed
};

}  // namespace coil
