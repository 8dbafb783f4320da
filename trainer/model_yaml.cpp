// The `model:` section of a config file -> a validated ModelConfig. Presets are applied first, then
// the `linear:` / `mamba2:` / `mamba1:` overrides, whatever their order in the file.
#include "trainer/model_yaml.h"

#include <optional>

#include "core/error.h"
#include "layers/hybrid.h"
#include "layers/linear_mixer.h"
#include "layers/mamba1.h"
#include "layers/mamba2.h"
#include "trainer/yaml_fields.h"

namespace coil {

namespace {

using yaml::Field;

// A sub-mapping or preset met while reading, applied once the mixer is known.
struct Pending {
  YAML::Node key, value;
  std::string path;
};

std::vector<Field> linear_fields(const std::string& f, LinearMixerOptions& o) {
  return {
      yaml::string_field(f, "power", &o.power, {"1", "2", "exp"}),
      yaml::string_field(f, "qk_activation", &o.qk_activation, {"none", "relu", "silu"}),
      yaml::int_field(f, "conv_width", &o.conv_width, 0, 4),
      yaml::bool_field(f, "d_residual", &o.d_residual),
      yaml::bool_field(f, "z_gate", &o.z_gate),
      yaml::bool_field(f, "value_dt", &o.value_dt),
      yaml::string_field(f, "a_mask", &o.a_mask, {"none", "original", "softplus"}),
      yaml::string_field(f, "norm", &o.norm, {"sm", "output"}),
      yaml::string_field(f, "form", &o.form, {"auto", "quadratic", "chunked"}),
      yaml::int_field(f, "chunk_size", &o.chunk_size, 1),
      yaml::int_field(f, "chunked_from", &o.chunked_from, 1),
  };
}

std::vector<Field> mamba2_fields(const std::string& f, Mamba2Options& o) {
  return {
      yaml::int_field(f, "d_state", &o.d_state, 1),
      yaml::int_field(f, "head_dim", &o.head_dim, 1),
      yaml::int_field(f, "d_conv", &o.d_conv, 2),
      yaml::int_field(f, "expand", &o.expand, 1),
      yaml::int_field(f, "n_ssm_heads", &o.n_ssm_heads, 0),
      yaml::int_field(f, "chunk_size", &o.chunk_size, 1),
  };
}

std::vector<Field> mamba1_fields(const std::string& f, Mamba1Options& o) {
  return {
      yaml::int_field(f, "d_state", &o.d_state, 1),
      yaml::int_field(f, "d_conv", &o.d_conv, 2),
      yaml::int_field(f, "expand", &o.expand, 1),
      yaml::int_field(f, "dt_rank", &o.dt_rank, 0),
      yaml::int_field(f, "chunk_size", &o.chunk_size, 1),
  };
}

void apply_preset(ModelConfig& c, const Pending& p, const std::string& file) {
  const std::string name = yaml::read_string(p.value, file, p.path);
  if (c.mixer == "linear") {
    try {
      c.linear = linear_preset(name);
    } catch (const Error& e) {
      yaml::fail(file, p.value, p.path, e.message(), p.key.Mark());
    }
  } else if (c.mixer == "mamba2" || c.mixer == "hybrid") {
    if (name != "mamba2" && name != "mamba2-paper")
      yaml::fail(
          file, p.value, p.path,
          "expected one of mamba2, mamba2-paper for mixer " + c.mixer + ", got '" + name + "'",
          p.key.Mark());
    // mamba2-paper: the authors' code (spec section 8), one SSM head, conv width 2, expand 1.
    c.mamba2 = mamba2_preset(name);
  } else {
    yaml::fail(
        file, p.key, p.path,
        "mixer " + c.mixer + " has no presets (presets exist for linear, mamba2 and hybrid)");
  }
}

}  // namespace

ModelConfig model_config_from_yaml(const YAML::Node& model, const std::string& file,
                                   const std::string& path) {
  ModelConfig c;
  bool has_mixer = false;
  std::optional<Pending> preset, linear, mamba2, mamba1, pattern, attention_rope, n_layers;
  auto later = [](std::optional<Pending>& slot, const std::string& name) {
    return Field{name, [&slot](const YAML::Node& v, const std::string& p) {
                   slot = Pending{{}, v, p};
                 }};
  };
  const std::string& f = file;
  std::vector<Field> fields = {
      {"mixer",
       [&](const YAML::Node& v, const std::string& p) {
         yaml::string_field(f, "mixer", &c.mixer,
                            {"softmax", "linear", "mamba2", "mamba1", "hybrid"})
             .read(v, p);
         has_mixer = true;
       }},
      later(preset, "preset"),
      yaml::int_field(f, "vocab", &c.vocab, 1),
      yaml::int_field(f, "d_model", &c.d_model, 1),
      {"n_layers",
       [&](const YAML::Node& v, const std::string& p) {
         yaml::int_field(f, "n_layers", &c.n_layers, 1).read(v, p);
         n_layers = Pending{{}, v, p};
       }},
      yaml::int_field(f, "n_heads", &c.n_heads, 1),
      yaml::int_field(f, "head_dim", &c.head_dim, 1),
      yaml::int_field(f, "mlp_hidden", &c.mlp_hidden, 1),
      yaml::double_field(f, "norm_eps", &c.norm_eps, 0.0, true),
      yaml::double_field(f, "rope_theta", &c.rope_theta, 0.0, true),
      yaml::bool_field(f, "rope_bf16_positions", &c.rope_bf16_positions),
      yaml::uint_field(f, "seed", &c.seed),
      yaml::bool_field(f, "recompute", &c.recompute),
      later(pattern, "layer_pattern"),
      later(attention_rope, "hybrid_attention_rope"),
      later(linear, "linear"),
      later(mamba2, "mamba2"),
      later(mamba1, "mamba1"),
  };
  yaml::read_mapping(model, file, path, fields);
  if (!has_mixer)
    yaml::fail(file, model, path,
               "missing key 'mixer' (one of softmax, linear, mamba2, mamba1, hybrid)");

  // The key nodes, for errors about a whole entry (the value of a mapping may start lines later).
  for (auto it = model.begin(); it != model.end(); ++it) {
    const YAML::Node key = it->first;
    for (auto* slot : {&preset, &linear, &mamba2, &mamba1, &pattern, &attention_rope, &n_layers})
      if (*slot && (*slot)->path == yaml::join_path(path, key.Scalar())) (*slot)->key = key;
  }

  if (preset) apply_preset(c, *preset, file);

  auto overrides = [&](const std::optional<Pending>& p, bool used_by_mixer, const char* users,
                       const std::vector<Field>& sub_fields) {
    if (!p) return;
    if (!used_by_mixer)
      yaml::fail(file, p->key, p->path,
                 std::string("only used with mixer ") + users + " (this model's mixer is " +
                     c.mixer + ")");
    yaml::read_mapping(p->value, file, p->path, sub_fields);
  };
  overrides(linear, c.mixer == "linear", "linear", linear_fields(file, c.linear));
  overrides(mamba2, c.mixer == "mamba2" || c.mixer == "hybrid", "mamba2 or hybrid",
            mamba2_fields(file, c.mamba2));
  overrides(mamba1, c.mixer == "mamba1", "mamba1", mamba1_fields(file, c.mamba1));

  if (pattern) {
    if (c.mixer != "hybrid")
      yaml::fail(file, pattern->key, pattern->path,
                 "only used with mixer hybrid (this model's mixer is " + c.mixer + ")");
    c.layer_pattern = yaml::read_string(pattern->value, file, pattern->path);
    try {
      validate_layer_pattern(c.layer_pattern);
    } catch (const Error& e) {
      yaml::fail(file, pattern->value, pattern->path, e.message(), pattern->key.Mark());
    }
  } else if (c.mixer == "hybrid") {
    yaml::fail(file, model, path, "mixer hybrid needs a layer_pattern (e.g. 'M-M-M*-M-M-')");
  }
  if (attention_rope) {
    if (c.mixer != "hybrid")
      yaml::fail(file, attention_rope->key, attention_rope->path,
                 "only used with mixer hybrid (this model's mixer is " + c.mixer + ")");
    c.hybrid_attention_rope = yaml::read_bool(attention_rope->value, file, attention_rope->path);
  }
  // A hybrid has one layer per pattern letter; an n_layers beside it would be silently ignored.
  if (n_layers && c.mixer == "hybrid")
    yaml::fail(file, n_layers->key, n_layers->path,
               "not used by mixer hybrid (the layer_pattern's length is the layer count)");

  // Option sets that are valid field by field but not together (power 1 + sm norm without ReLU,
  // more SSM heads than channels, ...): reported at the section that set them, else at the preset.
  auto check_section = [&](const std::optional<Pending>& section, auto&& validate_section) {
    try {
      validate_section();
    } catch (const Error& e) {
      if (section) yaml::fail(file, section->key, section->path, e.message());
      if (preset) yaml::fail(file, preset->key, preset->path, e.message());
      yaml::fail(file, model, path, e.message());
    }
  };
  if (c.mixer == "linear") check_section(linear, [&] { validate_linear_options(c.linear); });
  if (c.mixer == "mamba2" || c.mixer == "hybrid")
    check_section(mamba2, [&] { validate_mamba2_options(c.mamba2, c.d_model); });
  if (c.mixer == "mamba1") check_section(mamba1, [&] { validate_mamba1_options(c.mamba1); });
  // The remaining constraints across fields (head_dim even for RoPE, ...) are validate()'s.
  try {
    c.validate();
  } catch (const Error& e) {
    std::string what = e.message();
    const std::string prefix = "model config: ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    yaml::fail(file, model, path, what);
  }
  return c;
}

ModelConfig load_model_config(const std::string& file) {
  YAML::Node root = yaml::load_file(file);
  std::optional<ModelConfig> config;
  yaml::read_mapping(root, file, "", {{"model", [&](const YAML::Node& v, const std::string& path) {
                                         config = model_config_from_yaml(v, file, path);
                                       }}});
  if (!config) yaml::fail(file, root, "", "expected a top-level 'model:' mapping");
  return *config;
}

}  // namespace coil
