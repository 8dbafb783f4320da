// Model configs from YAML: every shipped config loads, presets and overrides combine, and each kind
// of mistake (malformed YAML, unknown key, wrong type, out-of-range value) names file, line and key
// path.
#include "trainer/model_yaml.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "layers/linear_mixer.h"
#include "layers/lm.h"

namespace coil {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> model_config_files() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(fs::path(COIL_SOURCE_DIR) / "configs" / "models"))
    if (e.path().extension() == ".yaml") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string config_path(const std::string& name) {
  return (fs::path(COIL_SOURCE_DIR) / "configs" / "models" / (name + ".yaml")).string();
}

// Writes `text` to a fresh file under the test temp dir and returns its path.
std::string write_yaml(const std::string& text) {
  static int n = 0;
  fs::path p = fs::path(testing::TempDir()) / ("coil_model_yaml_" + std::to_string(::getpid()) +
                                               "_" + std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

bool same(const LinearMixerOptions& a, const LinearMixerOptions& b) {
  return a.power == b.power && a.qk_activation == b.qk_activation && a.conv_width == b.conv_width &&
         a.d_residual == b.d_residual && a.z_gate == b.z_gate && a.value_dt == b.value_dt &&
         a.a_mask == b.a_mask && a.norm == b.norm && a.form == b.form &&
         a.chunk_size == b.chunk_size && a.chunked_from == b.chunked_from;
}

// Loads `text` and expects a coil::Error whose message starts with "FILE:LINE: " and contains every
// piece of `expected`.
void expect_error(const std::string& text, int line, const std::vector<std::string>& expected) {
  const std::string file = write_yaml(text);
  try {
    load_model_config(file);
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const Error& e) {
    const std::string where = file + ":" + std::to_string(line) + ": ";
    EXPECT_EQ(e.message().rfind(where, 0), 0u)
        << "expected the message to start with '" << where << "', got: " << e.message();
    for (const auto& piece : expected)
      EXPECT_NE(e.message().find(piece), std::string::npos)
          << "expected '" << piece << "' in: " << e.message();
  }
}

TEST(ModelYaml, EveryShippedConfigLoadsAndCountsItsParameters) {
  const std::vector<fs::path> files = model_config_files();
  // tiny, small and medium for 10 mixers: softmax, linear, mamba2, mamba2-paper, mamba2s, 2mamba,
  // 2mamba-dt, 2mamba-e, mamba1, hybrid.
  EXPECT_GE(files.size(), 30u);
  for (const std::string kind : {"softmax", "linear", "mamba2", "mamba2-paper", "mamba2s", "2mamba",
                                 "2mamba-dt", "2mamba-e", "mamba1", "hybrid"})
    for (const std::string size : {"tiny", "small", "medium"})
      EXPECT_TRUE(fs::exists(config_path(kind + "-" + size))) << kind << "-" << size;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    ModelConfig c;
    ASSERT_NO_THROW(c = load_model_config(f.string()));
    EXPECT_GT(LanguageModel::count_parameters(c), 0);
    // Tiny models are built for real: the closed-form count matches the module.
    if (f.stem().string().ends_with("-tiny")) {
      LanguageModel m(c);
      EXPECT_EQ(m.num_parameters(), LanguageModel::count_parameters(c));
    }
  }
}

TEST(ModelYaml, PaperShapesAndPresets) {
  ModelConfig s = load_model_config(config_path("2mamba-small"));
  EXPECT_EQ(s.mixer, "linear");
  EXPECT_TRUE(same(s.linear, linear_preset("2mamba")));
  EXPECT_EQ(s.vocab, 32000);
  EXPECT_EQ(s.d_model, 1024);
  EXPECT_EQ(s.n_layers, 20);
  EXPECT_EQ(s.n_heads, 16);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_EQ(s.mlp_hidden, 2048);
  EXPECT_DOUBLE_EQ(s.norm_eps, 1e-5);

  ModelConfig m = load_model_config(config_path("softmax-medium"));
  EXPECT_EQ(m.mixer, "softmax");
  EXPECT_EQ(m.d_model, 1536);
  EXPECT_EQ(m.n_layers, 27);
  EXPECT_EQ(m.n_heads, 24);
  EXPECT_EQ(m.mlp_hidden, 3072);
  EXPECT_DOUBLE_EQ(m.rope_theta, 10000.0);

  for (const std::string p : {"linear", "mamba2s", "2mamba", "2mamba-dt", "2mamba-e"})
    EXPECT_TRUE(same(load_model_config(config_path(p + "-small")).linear, linear_preset(p))) << p;

  ModelConfig paper = load_model_config(config_path("mamba2-paper-small"));
  EXPECT_EQ(paper.mixer, "mamba2");
  EXPECT_EQ(paper.mamba2.n_ssm_heads, 1);
  EXPECT_EQ(paper.mamba2.d_conv, 2);
  EXPECT_EQ(paper.mamba2.expand, 1);
  ModelConfig full = load_model_config(config_path("mamba2-small"));
  EXPECT_EQ(full.mamba2.n_ssm_heads, 0);
}

TEST(ModelYaml, OverridesApplyAfterThePresetWhateverTheOrder) {
  // The `linear:` mapping comes first in the file; the preset must not overwrite it.
  ModelConfig c =
      load_model_config(write_yaml("model:\n"
                                   "  linear:\n"
                                   "    conv_width: 3\n"
                                   "    value_dt: yes\n"
                                   "    chunk_size: 32\n"
                                   "  mixer: linear\n"
                                   "  preset: 2mamba\n"
                                   "  vocab: 100\n"
                                   "  d_model: 32\n"
                                   "  n_layers: 1\n"
                                   "  n_heads: 2\n"
                                   "  head_dim: 16\n"
                                   "  mlp_hidden: 64\n"
                                   "  seed: 7\n"
                                   "  recompute: true\n"));
  LinearMixerOptions want = linear_preset("2mamba");
  want.conv_width = 3;
  want.value_dt = true;
  want.chunk_size = 32;
  EXPECT_TRUE(same(c.linear, want));
  EXPECT_EQ(c.seed, 7u);
  EXPECT_TRUE(c.recompute);
  // Fields left out keep ModelConfig's defaults.
  EXPECT_DOUBLE_EQ(c.norm_eps, ModelConfig{}.norm_eps);

  ModelConfig m = load_model_config(
      write_yaml("model:\n  mixer: mamba2\n  preset: mamba2-paper\n  mamba2: {d_state: 64}\n"));
  EXPECT_EQ(m.mamba2.n_ssm_heads, 1);
  EXPECT_EQ(m.mamba2.d_state, 64);
}

TEST(ModelYaml, MalformedYamlNamesFileAndLine) {
  expect_error("model:\n  mixer: softmax\n  vocab: [1, 2\n", 4, {"malformed YAML"});
  expect_error("model:\n  mixer: softmax\n   vocab: 3\n", 3, {"malformed YAML"});
}

TEST(ModelYaml, UnknownKeysAreErrorsAtEveryLevel) {
  expect_error("modle:\n  mixer: softmax\n", 1, {"modle: unknown key", "valid keys: model"});
  expect_error("model:\n  mixer: softmax\n  vocab_size: 10\n", 3,
               {"model.vocab_size: unknown key", "valid keys of model:", "vocab", "d_model"});
  expect_error(
      "model:\n  mixer: linear\n  preset: 2mamba\n  linear:\n    power: 2\n    conv_widht: 2\n", 6,
      {"model.linear.conv_widht: unknown key", "valid keys of model.linear:", "conv_width"});
  expect_error("model:\n  mixer: mamba1\n  mamba1:\n    d_state: 8\n    expand2: 1\n", 5,
               {"model.mamba1.expand2: unknown key", "d_conv"});
  expect_error("model:\n  mixer: softmax\n  vocab: 10\n  vocab: 11\n", 4,
               {"model.vocab: duplicate key"});
}

TEST(ModelYaml, WrongTypesNameTheKeyPath) {
  expect_error(
      "model:\n  mixer: linear\n  preset: 2mamba\n  d_model: 64\n  n_heads: 4\n  linear:\n"
      "    conv_width: two\n",
      7, {"model.linear.conv_width: expected an integer, got 'two'"});
  expect_error("model:\n  mixer: softmax\n  d_model: 1.5\n", 3,
               {"model.d_model: expected an integer, got '1.5'"});
  expect_error("model:\n  mixer: softmax\n  recompute: maybe\n", 3,
               {"model.recompute: expected a boolean", "'maybe'"});
  expect_error("model:\n  mixer: softmax\n  norm_eps: small\n", 3,
               {"model.norm_eps: expected a number, got 'small'"});
  expect_error("model:\n  mixer: [softmax]\n", 2,
               {"model.mixer: expected a string, got a sequence"});
  expect_error("model:\n  mixer: linear\n  linear: 3\n", 3,
               {"model.linear: expected a mapping, got '3'"});
  expect_error("model:\n  mixer: softmax\n  vocab:\n  d_model: 64\n", 3,
               {"model.vocab: expected an integer, got nothing (null)"});
  expect_error("model: softmax\n", 1, {"model: expected a mapping, got 'softmax'"});
}

TEST(ModelYaml, OutOfRangeValuesNameTheKeyPath) {
  expect_error("model:\n  mixer: softmax\n  n_heads: 0\n", 3,
               {"model.n_heads: must be >= 1, got 0"});
  expect_error("model:\n  mixer: linear\n  preset: 2mamba\n  linear:\n    conv_width: 5\n", 5,
               {"model.linear.conv_width: must be in [0, 4], got 5"});
  expect_error("model:\n  mixer: softmax\n  norm_eps: -1e-5\n", 3, {"model.norm_eps: must be > 0"});
  expect_error("model:\n  mixer: softmax\n  seed: -1\n", 3, {"model.seed: must be >= 0, got -1"});
  expect_error("model:\n  mixer: linear\n  linear:\n    power: 3\n", 4,
               {"model.linear.power: expected one of 1, 2, exp, got '3'"});
  expect_error("model:\n  mixer: mamba3\n", 2, {"model.mixer: expected one of softmax, linear"});
  expect_error("model:\n  mixer: softmax\n  vocab: 99999999999999999999\n", 3,
               {"model.vocab: integer '99999999999999999999' does not fit in 64 bits"});
}

TEST(ModelYaml, PresetsAndSectionsMustFitTheMixer) {
  expect_error("model:\n  mixer: linear\n  preset: 3mamba\n", 3,
               {"model.preset: unknown linear mixer preset '3mamba'", "2mamba-dt"});
  expect_error("model:\n  mixer: mamba2\n  preset: 2mamba\n", 3,
               {"model.preset: expected one of mamba2, mamba2-paper"});
  expect_error("model:\n  mixer: softmax\n  preset: 2mamba\n", 3,
               {"model.preset: mixer softmax has no presets"});
  expect_error("model:\n  mixer: softmax\n  linear:\n    conv_width: 2\n", 3,
               {"model.linear: only used with mixer linear", "softmax"});
  expect_error("model:\n  mixer: softmax\n  layer_pattern: M-*-\n", 3,
               {"model.layer_pattern: only used with mixer hybrid"});
  expect_error("model:\n  vocab: 10\n", 2, {"model: missing key 'mixer'"});
  expect_error("model:\n  mixer: hybrid\n  n_layers: 4\n  layer_pattern: M-*-\n", 3,
               {"model.n_layers: not used by mixer hybrid"});
  expect_error("model:\n  mixer: hybrid\n  d_model: 64\n", 2,
               {"model: mixer hybrid needs a layer_pattern"});
  expect_error("model:\n  mixer: softmax\n  hybrid_attention_rope: true\n", 3,
               {"model.hybrid_attention_rope: only used with mixer hybrid"});
  expect_error("model:\n  mixer: hybrid\n  layer_pattern: M-X-\n", 3,
               {"model.layer_pattern: ", "'X'"});
  // Option sets valid key by key but not together: reported at their section, else at the preset.
  expect_error("model:\n  mixer: linear\n  preset: linear\n  linear:\n    qk_activation: none\n", 4,
               {"model.linear: ", "relu"});
  expect_error("model:\n  mixer: mamba2\n  preset: mamba2-paper\n  d_model: 32\n", 3,
               {"model.preset: ", "head_dim"});
  ModelConfig h = load_model_config(
      write_yaml("model:\n  mixer: hybrid\n  layer_pattern: M-*-\n  hybrid_attention_rope: on\n"));
  EXPECT_EQ(h.layer_pattern, "M-*-");
  EXPECT_TRUE(h.hybrid_attention_rope);
}

TEST(ModelYaml, CrossFieldChecksAndMissingFiles) {
  // validate() catches what one field alone cannot; the message still names the file.
  expect_error("model:\n  mixer: softmax\n  head_dim: 15\n", 2,
               {"model: head_dim must be positive and even"});
  try {
    load_model_config("/nonexistent/model.yaml");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("cannot open config file '/nonexistent/model.yaml'"),
              std::string::npos)
        << e.message();
  }
  const std::string empty = write_yaml("# nothing here\n");
  EXPECT_THROW(load_model_config(empty), Error);
}

}  // namespace
}  // namespace coil
