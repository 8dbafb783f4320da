// ModelConfig: the shape of a language model (spec/models.md sections 1 and 3). The mixer's inner
// width is n_heads * head_dim (= d_model in the paper's configs, which have no GQA). `seed` drives
// every parameter's init, in registration order, so a config and a seed give one exact model.
#pragma once

#include <cstdint>
#include <string>

namespace coil {

struct ModelConfig {
  std::string mixer = "softmax";  // the block's token mixer; only "softmax" so far
  int64_t vocab = 32000;          // V
  int64_t d_model = 1024;         // C
  int64_t n_layers = 20;          // L
  int64_t n_heads = 16;           // H
  int64_t head_dim = 64;          // D
  int64_t mlp_hidden = 2048;      // SwiGLU intermediate width (2C in the paper)
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  uint64_t seed = 0;
  bool recompute = false;         // recompute each block's activations in backward

  // Throws coil::Error naming the first bad field.
  void validate() const;
};

}  // namespace coil
