// ModelConfig validation.
#include "layers/config.h"

#include "core/error.h"
#include "layers/hybrid.h"
#include "layers/linear_mixer.h"
#include "layers/mamba1.h"
#include "layers/mamba2.h"

namespace coil {

void ModelConfig::validate() const {
  COIL_CHECK(mixer == "softmax" || mixer == "linear" || mixer == "mamba2" || mixer == "mamba1" ||
                 mixer == "hybrid",
             "model config: unknown mixer '", mixer, "' (expected softmax, linear, mamba2, mamba1, hybrid)");
  if (mixer == "linear") validate_linear_options(linear);
  if (mixer == "hybrid") validate_layer_pattern(layer_pattern);
  if (mixer == "mamba2" || (mixer == "hybrid" && layer_pattern.find('M') != std::string::npos))
    validate_mamba2_options(mamba2, d_model);
  if (mixer == "mamba1") validate_mamba1_options(mamba1);
  COIL_CHECK(vocab > 0, "model config: vocab must be positive, got ", vocab);
  COIL_CHECK(d_model > 0, "model config: d_model must be positive, got ", d_model);
  COIL_CHECK(n_layers >= 0, "model config: n_layers must be >= 0, got ", n_layers);
  COIL_CHECK(n_heads > 0, "model config: n_heads must be positive, got ", n_heads);
  COIL_CHECK(head_dim > 0 && head_dim % 2 == 0,
             "model config: head_dim must be positive and even (RoPE rotates pairs), got ",
             head_dim);
  COIL_CHECK(mlp_hidden > 0, "model config: mlp_hidden must be positive, got ", mlp_hidden);
  COIL_CHECK(norm_eps > 0, "model config: norm_eps must be positive, got ", norm_eps);
  COIL_CHECK(rope_theta > 0, "model config: rope_theta must be positive, got ", rope_theta);
}

}  // namespace coil
