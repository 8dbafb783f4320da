// LanguageModel: construction in init order, forward, loss and the closed-form parameter count.
#include "layers/lm.h"

#include "core/ops.h"

namespace coil {

namespace {
constexpr double kEmbeddingInitStd = 0.02;  // spec section 1: embedding and lm_head N(0, 0.02)
}

LanguageModel::LanguageModel(const ModelConfig& c, const ParamOptions& opt) : config_(c) {
  c.validate();
  Generator gen(c.seed);
  embedding = register_module(
      "embedding", std::make_shared<Embedding>(c.vocab, c.d_model, gen, opt, kEmbeddingInitStd));
  layers = register_module("layers", std::make_shared<ModuleList>());
  if (c.mixer == "hybrid") {
    for (char kind : c.layer_pattern) {
      hybrid_layers_.push_back(std::make_shared<HybridLayer>(kind, c, gen, opt));
      layers->push_back(hybrid_layers_.back());
    }
  } else {
    for (int64_t l = 0; l < c.n_layers; ++l) {
      blocks_.push_back(std::make_shared<Block>(c, gen, opt));
      layers->push_back(blocks_.back());
    }
  }
  norm_f = register_module("norm_f", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, opt));
  lm_head = register_module("lm_head", std::make_shared<Linear>(c.d_model, c.vocab, false, gen, opt,
                                                               kEmbeddingInitStd));
}

Tensor LanguageModel::forward(const Tensor& ids) const {
  COIL_CHECK(ids.dim() == 2, "LanguageModel: expected ids (B, T), got ", ids.describe());
  Tensor x = embedding->forward(ids);           // (B, T, C)
  for (const auto& b : blocks_) x = b->forward(x);  // (B, T, C)
  for (const auto& l : hybrid_layers_) x = l->forward(x);
  return lm_head->forward(norm_f->forward(x));  // (B, T, V)
}

Tensor LanguageModel::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) const {
  COIL_CHECK(targets.shape() == ids.shape(), "LanguageModel::loss: targets ", targets.describe(),
             " must have the shape of ids ", ids.describe());
  return cross_entropy(forward(ids), targets, ignore_index);  // ()
}

int64_t LanguageModel::count_parameters(const ModelConfig& c) {
  c.validate();
  int64_t layers = 0;
  if (c.mixer == "hybrid")
    for (char kind : c.layer_pattern) layers += HybridLayer::count_parameters(kind, c);
  else
    layers = c.n_layers * Block::count_parameters(c);
  return Embedding::count_parameters(c.vocab, c.d_model) + layers + c.d_model +
         Linear::count_parameters(c.d_model, c.vocab, false);
}

}  // namespace coil
