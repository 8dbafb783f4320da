// `coil model info`: the paper's exact parameter counts from the shipped YAML configs, a breakdown
// that adds up, decode-state figures, the spec's 1058-token crossover, and the built binary's
// output.
#include "trainer/model_info.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "layers/block.h"
#include "layers/linear_mixer.h"
#include "layers/lm.h"
#include "trainer/model_yaml.h"

namespace coil {
namespace {

namespace fs = std::filesystem;

std::string config_path(const std::string& name) {
  return (fs::path(COIL_SOURCE_DIR) / "configs" / "models" / (name + ".yaml")).string();
}

int64_t total_of(const std::string& name) {
  return compute_model_info(load_model_config(config_path(name))).total_parameters;
}

// Runs a shell command; returns its exit status and stdout + stderr.
std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {-1, ""};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ModelInfo, PaperParameterCounts) {
  // spec/models.md section 1 and the acceptance list.
  EXPECT_EQ(total_of("softmax-small"), 275'293'184);
  EXPECT_EQ(total_of("2mamba-small"), 275'805'184);
  EXPECT_EQ(total_of("2mamba-dt-small"), 276'132'864);
  EXPECT_EQ(total_of("softmax-medium"), 735'398'400);
  EXPECT_EQ(total_of("2mamba-medium"), 736'766'976);
}

TEST(ModelInfo, BreakdownAddsUpForEveryConfig) {
  for (const auto& e : fs::directory_iterator(fs::path(COIL_SOURCE_DIR) / "configs" / "models")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    const ModelConfig c = load_model_config(e.path().string());
    const ModelInfo info = compute_model_info(c, 512);
    EXPECT_EQ(info.total_parameters, LanguageModel::count_parameters(c));
    int64_t sum = 0;
    for (const auto& g : info.params) {
      EXPECT_EQ(g.name.find("not itemised"), std::string::npos) << "the breakdown misses a part";
      sum += g.total();
      // A part's tensors (read from a built mixer) add up to its closed-form count.
      if (!g.tensors.empty()) {
        int64_t t = 0;
        for (const auto& [name, n] : g.tensors) t += n;
        EXPECT_EQ(t, g.each) << g.name;
      }
    }
    EXPECT_EQ(sum, info.total_parameters);
    int64_t layers = 0;
    for (const auto& s : info.state) {
      EXPECT_GT(s.values, 0) << s.name;
      layers += s.layers;
    }
    if (c.mixer != "hybrid") {
      EXPECT_EQ(layers, c.n_layers);
    }
  }
}

TEST(ModelInfo, TwoMambaCrossoverIsTheSpecs1058Tokens) {
  const ModelInfo info = compute_model_info(load_model_config(config_path("2mamba-small")), 2048);
  ASSERT_EQ(info.state.size(), 1u);
  const StatePart& s = info.state[0];
  EXPECT_TRUE(s.constant);
  // 135,392 values per head (spec section 6): numerator 2080 x 64, denominator 2080, conv carry 3
  // x 64.
  EXPECT_EQ(s.values, 16 * 135'392);
  EXPECT_EQ(s.values, 16 * LinearAttentionMixer::symmetric_state_values_per_head(64, 2));
  ASSERT_TRUE(s.crossover.has_value());
  EXPECT_EQ(*s.crossover, 1058);
  // The spec's closed form: N > (D+1)^2/4 + 3/2.
  EXPECT_EQ(*s.crossover, int64_t(65.0 * 65.0 / 4 + 1.5) + 1);
  // At the crossover the KV cache is larger, one token earlier it is not.
  EXPECT_GT(2 * 16 * 64 * 1058, s.values);
  EXPECT_LE(2 * 16 * 64 * 1057, s.values);
  EXPECT_EQ(info.kv_cache_values, 2 * 16 * 64 * 2048);
}

TEST(ModelInfo, KvCacheStatesGrowAndHaveNoCrossover) {
  for (const std::string name : {"softmax-small", "2mamba-e-small"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = load_model_config(config_path(name));
    const ModelInfo a = compute_model_info(c, 1000), b = compute_model_info(c, 2000);
    ASSERT_EQ(a.state.size(), 1u);
    EXPECT_FALSE(a.state[0].constant);
    EXPECT_FALSE(a.state[0].crossover.has_value());
    EXPECT_GT(b.state[0].values, a.state[0].values);
  }
  const ModelInfo s = compute_model_info(load_model_config(config_path("softmax-small")), 2048);
  EXPECT_EQ(s.state[0].values, 2 * 16 * 64 * 2048);  // K and V, 16 heads of 64, 2048 tokens
}

TEST(ModelInfo, CrossoverAndDigitHelpers) {
  EXPECT_EQ(kv_cache_crossover(2048, 16, 64), 2);  // equal at N = 1: the KV cache is larger from 2
  EXPECT_EQ(kv_cache_crossover(2047, 16, 64), 1);
  EXPECT_EQ(group_digits(275293184), "275,293,184");
  EXPECT_EQ(group_digits(999), "999");
  EXPECT_EQ(group_digits(1000), "1,000");
  EXPECT_EQ(group_digits(0), "0");
}

TEST(ModelInfo, PrintedReport) {
  const ModelConfig c = load_model_config(config_path("2mamba-small"));
  std::ostringstream out;
  print_model_info(compute_model_info(c, 2048), c, "2mamba-small.yaml", out);
  const std::string text = out.str();
  for (const std::string piece : {"275,805,184", "N = 1058 tokens", "embedding", "lm_head",
                                  "block mlp (SwiGLU)", "block mixer (linear)", "8.26 MiB"})
    EXPECT_NE(text.find(piece), std::string::npos) << "missing '" << piece << "' in:\n" << text;
}

TEST(ModelInfo, BinaryPrintsTheTotal) {
  auto [rc, out] = run_command(std::string("'") + COIL_EXE + "' model info '" +
                               config_path("2mamba-small") + "' --context 4096");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("total"), std::string::npos) << out;
  EXPECT_NE(out.find("275,805,184"), std::string::npos) << out;
  EXPECT_NE(out.find("N = 1058 tokens"), std::string::npos) << out;
  EXPECT_NE(out.find("at context 4,096"), std::string::npos) << out;

  auto [rc2, err] = run_command(std::string("'") + COIL_EXE + "' model info /nonexistent.yaml");
  EXPECT_EQ(rc2, 1) << err;
  EXPECT_NE(err.find("error: cannot open config file '/nonexistent.yaml'"), std::string::npos)
      << err;

  auto [rc3, usage] = run_command(std::string("'") + COIL_EXE + "' model info");
  EXPECT_EQ(rc3, 2) << usage;
  EXPECT_NE(usage.find("usage: coil model info"), std::string::npos) << usage;
}

}  // namespace
}  // namespace coil
