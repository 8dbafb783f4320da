// Model configs from YAML. A model file holds one top-level `model:` mapping:
//
//   model:
//     mixer: linear          # softmax | linear | mamba2 | mamba1 | hybrid   (required)
//     preset: 2mamba         # linear: a linear_preset() name; mamba2/hybrid: mamba2 | mamba2-paper
//     vocab: 32000           # then the ModelConfig fields: d_model, n_layers, n_heads, head_dim,
//     ...                    #   mlp_hidden, norm_eps, rope_theta, seed, recompute; hybrid only:
//                            #   layer_pattern (required; replaces n_layers), hybrid_attention_rope
//     linear: {conv_width: 3}  # optional overrides of the preset, field by field (also mamba2:,
//     mamba1:)
//
// Fields left out keep ModelConfig's defaults (the paper's small shape). Sections that the mixer
// does not use (`linear:` for softmax, ...) are errors, not silently ignored. Unknown keys at any
// level, wrong types and out-of-range values throw coil::Error "FILE:LINE: model.key.path: ..."
// (see trainer/yaml_fields.h); the result has passed ModelConfig::validate().
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "layers/config.h"

namespace coil {

ModelConfig load_model_config(const std::string& file);

// The `model:` mapping of a config document (`path` is its key path, for messages); reused by the
// run config parser, whose files carry the same mapping beside their other sections.
ModelConfig model_config_from_yaml(const YAML::Node& model, const std::string& file,
                                   const std::string& path = "model");

}  // namespace coil
