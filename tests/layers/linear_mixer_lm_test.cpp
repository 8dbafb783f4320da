// The linear mixer inside the LM: closed-form parameter counts (the paper's numbers and every preset
// against the materialised model), presets and option validation, and a tiny LM of each preset family
// lowering its loss on a fixed batch with AdamW.
#include <chrono>
#include <map>

#include "layers/lm.h"
#include "linear_mixer_test_util.h"
#include "trainer/adamw.h"
#include "trainer/demo.h"

namespace coil {
namespace {

using namespace linear_test;

ModelConfig paper_config(const std::string& size, const std::string& preset) {
  ModelConfig c;
  c.mixer = "linear";
  c.linear = linear_preset(preset);
  if (size == "medium") {
    c.d_model = 1536;
    c.n_layers = 27;
    c.n_heads = 24;
    c.mlp_hidden = 3072;
  }
  return c;
}

ModelConfig tiny_config(const std::string& preset, uint64_t seed = 0) {
  ModelConfig c;
  c.mixer = "linear";
  c.linear = linear_preset(preset);
  c.vocab = 32;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.head_dim = 16;
  c.mlp_hidden = 64;
  c.seed = seed;
  return c;
}

TEST(LinearMixerLM, PaperParameterCounts) {
  EXPECT_EQ(LanguageModel::count_parameters(paper_config("small", "2mamba")), 275805184);
  EXPECT_EQ(LanguageModel::count_parameters(paper_config("small", "2mamba-dt")), 276132864);
  EXPECT_EQ(LanguageModel::count_parameters(paper_config("medium", "2mamba")), 736766976);
}

TEST(LinearMixerLM, CountMatchesTheMaterialisedModelForEveryPreset) {
  for (const std::string& n : linear_preset_names()) {
    ModelConfig c = tiny_config(n);
    c.head_dim = 8;  // inner width 16 != d_model 32: the count must not assume H * D == C
    LanguageModel m(c);
    EXPECT_EQ(LanguageModel::count_parameters(c), m.num_parameters()) << n;
  }
}

TEST(LinearMixerLM, ParameterNamesAndShapes) {
  LinearMixerOptions all = linear_preset("2mamba-dt");
  all.d_residual = true;
  all.z_gate = true;
  all.norm = "output";
  Generator gen(0);
  LinearAttentionMixer m(32, 2, 8, all, 1e-5, gen);
  std::map<std::string, std::string> got;
  for (const auto& [n, p] : m.named_parameters()) got[n] = shape_str(p.shape());
  const std::map<std::string, std::string> want = {
      {"qkv.weight", "(48, 32)"}, {"conv.weight", "(48, 2)"}, {"conv.bias", "(48)"},
      {"W_dt.weight", "(2, 32)"}, {"W_A.weight", "(2, 32)"},  {"D", "(2, 8)"},
      {"W_z.weight", "(16, 32)"}, {"W_z.bias", "(16)"},       {"norm.weight", "(16)"},
      {"o.weight", "(32, 16)"}};
  EXPECT_EQ(got, want);
  LinearAttentionMixer orig(32, 2, 8, linear_preset("out-norm-amask-original"), 1e-5, gen);
  for (double a : orig.A_log.to_vector()) {
    EXPECT_GE(a, 0.0);
    EXPECT_LE(a, std::log(16.0));
  }
  EXPECT_TRUE(orig.W_dt != nullptr);  // the original mask needs dt even without value dt
  for (double w : m.conv->weight.to_vector()) EXPECT_LE(std::abs(w), 1.0 / std::sqrt(2.0));
}

TEST(LinearMixerLM, PresetsAndValidation) {
  EXPECT_EQ(linear_preset_names().size(), 16u);
  try {
    linear_preset("3mamba");
    FAIL() << "expected coil::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2mamba-e"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3mamba"), std::string::npos) << e.what();
  }
  auto bad = [](auto edit, const std::string& needle) {
    ModelConfig c = tiny_config("2mamba");
    edit(c.linear);
    try {
      c.validate();
      ADD_FAILURE() << "expected coil::Error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  bad([](LinearMixerOptions& o) { o.power = "3"; }, "power");
  bad([](LinearMixerOptions& o) { o.qk_activation = "gelu"; }, "qk_activation");
  bad([](LinearMixerOptions& o) { o.conv_width = 5; }, "conv_width");
  bad([](LinearMixerOptions& o) { o.a_mask = "cosine"; }, "a_mask");
  bad([](LinearMixerOptions& o) { o.norm = "layer"; }, "norm");
  bad([](LinearMixerOptions& o) { o.form = "scan"; }, "form");
  bad([](LinearMixerOptions& o) { o.chunk_size = 0; }, "chunk_size");
  bad(
      [](LinearMixerOptions& o) {
        o.power = "exp";
        o.norm = "output";
      },
      "norm must be sm");
  bad([](LinearMixerOptions& o) { o.power = "1"; }, "relu");
  ModelConfig c = tiny_config("2mamba");
  c.mixer = "linear-attention";
  EXPECT_THROW(c.validate(), Error);
}

// 50 AdamW steps on one fixed batch: the loss falls clearly for each family.
TEST(LinearMixerLM, TinyLMOfEachFamilyTrains) {
  const auto start = std::chrono::steady_clock::now();
  for (const std::string preset :
       {"linear", "out-norm", "mamba2s", "2mamba", "2mamba-dt", "2mamba-e"}) {
    ModelConfig c = tiny_config(preset, 1);
    c.linear.chunk_size = 8;
    LanguageModel model(c);
    TokenBatch batch = make_repeat_batch(2, 24, c.vocab, 6, 3);
    AdamWOptions ao;
    ao.lr = 1e-2;
    AdamW opt(model.parameters(), ao);
    double initial = 0, last = 0;
    for (int step = 0; step < 50; ++step) {
      opt.zero_grad();
      Tensor loss = model.loss(batch.ids, batch.targets);
      if (step == 0) initial = loss.item();
      last = loss.item();
      loss.backward();
      opt.step();
    }
    std::printf("%-10s loss %.4f -> %.4f\n", preset.c_str(), initial, last);
    EXPECT_LT(last, 0.5 * initial) << preset;
  }
  std::printf("6 tiny LMs x 50 steps in %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace
}  // namespace coil
