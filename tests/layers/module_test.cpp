// Module bookkeeping: exact parameter names and order of a 2-layer LM, shapes and init of each
// parameter, state-dict round trips and the errors load_state_dict raises, parameter counts (a hand
// formula, the spec's small and medium sizes without allocating them).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "layers/lm.h"

namespace coil {
namespace {

ModelConfig tiny_config(uint64_t seed = 1) {
  ModelConfig c;
  c.vocab = 17;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.head_dim = 8;
  c.mlp_hidden = 24;
  c.seed = seed;
  return c;
}

// The error message of f, which must throw coil::Error.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "expected coil::Error";
  return "";
}

TEST(Module, ParameterNamesOfTwoLayerLM) {
  LanguageModel m(tiny_config());
  std::vector<std::string> names;
  for (auto& [n, _] : m.named_parameters()) names.push_back(n);
  std::vector<std::string> want = {"embedding.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const char* s : {"norm1.weight", "mixer.qkv.weight", "mixer.o.weight", "norm2.weight",
                          "mlp.gate.weight", "mlp.up.weight", "mlp.down.weight"})
      want.push_back(p + s);
  }
  want.push_back("norm_f.weight");
  want.push_back("lm_head.weight");
  EXPECT_EQ(names, want);

  StateDict sd = m.state_dict();
  EXPECT_EQ(sd.size(), want.size());
  ASSERT_TRUE(sd.count("layers.1.mixer.qkv.weight"));
  EXPECT_TRUE(sd.at("layers.1.mixer.qkv.weight").same(m.block(1).mixer->named_parameters()[0].second));
}

TEST(Module, ParameterShapesAndFlags) {
  ModelConfig c = tiny_config();
  c.d_model = 12;  // inner width H * D = 16 differs from C
  LanguageModel m(c);
  StateDict sd = m.state_dict();
  EXPECT_EQ(sd.at("embedding.weight").shape(), (Shape{17, 12}));
  EXPECT_EQ(sd.at("layers.0.norm1.weight").shape(), (Shape{12}));
  EXPECT_EQ(sd.at("layers.0.mixer.qkv.weight").shape(), (Shape{48, 12}));  // (3HD, C)
  EXPECT_EQ(sd.at("layers.0.mixer.o.weight").shape(), (Shape{12, 16}));    // (C, HD)
  EXPECT_EQ(sd.at("layers.0.mlp.gate.weight").shape(), (Shape{24, 12}));
  EXPECT_EQ(sd.at("layers.0.mlp.up.weight").shape(), (Shape{24, 12}));
  EXPECT_EQ(sd.at("layers.0.mlp.down.weight").shape(), (Shape{12, 24}));
  EXPECT_EQ(sd.at("norm_f.weight").shape(), (Shape{12}));
  EXPECT_EQ(sd.at("lm_head.weight").shape(), (Shape{17, 12}));
  for (auto& [n, t] : sd) {
    EXPECT_TRUE(t.is_leaf()) << n;
    EXPECT_TRUE(t.requires_grad()) << n;
    EXPECT_EQ(t.dtype(), DType::F32) << n;
  }
  LanguageModel m64(c, {DType::F64, Device::cpu()});
  for (auto& [n, t] : m64.named_parameters()) EXPECT_EQ(t.dtype(), DType::F64) << n;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}
double std_of(const std::vector<double>& v) {
  const double mu = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - mu) * (x - mu);
  return std::sqrt(s / double(v.size()));
}

TEST(Module, InitFollowsTheSpec) {
  ModelConfig c = tiny_config();
  c.vocab = 512;
  c.d_model = 64;
  c.n_heads = 4;
  c.head_dim = 16;
  c.mlp_hidden = 128;
  LanguageModel m(c);
  StateDict sd = m.state_dict();
  for (const char* n : {"embedding.weight", "lm_head.weight"}) {
    std::vector<double> v = sd.at(n).to_vector();
    EXPECT_NEAR(mean_of(v), 0.0, 0.002) << n;
    EXPECT_NEAR(std_of(v), 0.02, 0.001) << n;
  }
  // Block linears: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std = bound / sqrt(3).
  for (auto [n, fan_in] : std::vector<std::pair<std::string, int>>{
           {"layers.0.mixer.qkv.weight", 64}, {"layers.1.mixer.o.weight", 64},
           {"layers.0.mlp.up.weight", 64}, {"layers.1.mlp.down.weight", 128}}) {
    std::vector<double> v = sd.at(n).to_vector();
    const double bound = 1.0 / std::sqrt(double(fan_in));
    double lo = 1e9, hi = -1e9;
    for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
    EXPECT_GE(lo, -bound) << n;
    EXPECT_LE(hi, bound) << n;
    EXPECT_GT(hi, 0.9 * bound) << n;
    EXPECT_NEAR(std_of(v), bound / std::sqrt(3.0), 0.05 * bound) << n;
  }
  for (const char* n : {"layers.0.norm1.weight", "layers.1.norm2.weight", "norm_f.weight"})
    for (double x : sd.at(n).to_vector()) EXPECT_EQ(x, 1.0) << n;
}

TEST(Module, SeedDeterminesInit) {
  LanguageModel a(tiny_config(5)), b(tiny_config(5)), c(tiny_config(6));
  StateDict sa = a.state_dict(), sb = b.state_dict(), sc = c.state_dict();
  for (auto& [n, t] : sa) {
    EXPECT_EQ(t.to_vector(), sb.at(n).to_vector()) << n;
    if (n.find("norm") == std::string::npos) {
      EXPECT_NE(t.to_vector(), sc.at(n).to_vector()) << n;
    }
  }
}

TEST(Module, StateDictRoundTrip) {
  LanguageModel a(tiny_config(1)), b(tiny_config(2));
  Tensor ids = Tensor::from_ints({1, 5, 3, 16, 0, 2, 2, 9}, {2, 4});
  NoGradGuard no_grad;
  const Tensor held = b.lm_head->weight;  // handles held elsewhere see the loaded values
  LoadStateDictResult r = b.load_state_dict(a.state_dict());
  EXPECT_TRUE(r.missing_keys.empty());
  EXPECT_TRUE(r.unexpected_keys.empty());
  for (auto& [n, t] : b.state_dict()) EXPECT_EQ(t.to_vector(), a.state_dict().at(n).to_vector()) << n;
  EXPECT_EQ(held.to_vector(), a.lm_head->weight.to_vector());
  EXPECT_EQ(a.forward(ids).to_vector(), b.forward(ids).to_vector());
  // Loading from another dtype converts.
  LanguageModel c(tiny_config(3), {DType::F64, Device::cpu()});
  c.load_state_dict(a.state_dict());
  EXPECT_EQ(c.embedding->weight.dtype(), DType::F64);
  EXPECT_EQ(c.embedding->weight.to_vector(), a.embedding->weight.to_vector());
}

TEST(Module, LoadStateDictErrorsNameTheKey) {
  LanguageModel a(tiny_config(1)), b(tiny_config(2));
  const std::vector<double> before = b.embedding->weight.to_vector();

  StateDict missing = a.state_dict();
  missing.erase("layers.1.mlp.up.weight");
  std::string msg = error_of([&] { b.load_state_dict(missing); });
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers.1.mlp.up.weight"), std::string::npos) << msg;

  StateDict extra = a.state_dict();
  extra.emplace("layers.2.mixer.qkv.weight", Tensor::zeros({48, 16}));
  msg = error_of([&] { b.load_state_dict(extra); });
  EXPECT_NE(msg.find("unexpected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers.2.mixer.qkv.weight"), std::string::npos) << msg;

  StateDict wrong = a.state_dict();
  wrong["layers.0.mixer.o.weight"] = Tensor::zeros({16, 12});
  msg = error_of([&] { b.load_state_dict(wrong); });
  EXPECT_NE(msg.find("layers.0.mixer.o.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(16, 16)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(16, 12)"), std::string::npos) << msg;
  // A shape mismatch fails even when not strict.
  EXPECT_THROW(b.load_state_dict(wrong, /*strict=*/false), Error);

  // Failed loads wrote nothing.
  EXPECT_EQ(b.embedding->weight.to_vector(), before);

  // Non-strict: loads what matches, reports the rest.
  LoadStateDictResult r = b.load_state_dict(missing, false);
  EXPECT_EQ(r.missing_keys, std::vector<std::string>{"layers.1.mlp.up.weight"});
  EXPECT_TRUE(r.unexpected_keys.empty());
  EXPECT_EQ(b.embedding->weight.to_vector(), a.embedding->weight.to_vector());
  r = b.load_state_dict(extra, false);
  EXPECT_EQ(r.unexpected_keys, std::vector<std::string>{"layers.2.mixer.qkv.weight"});
}

// A module with a duplicate registration is a coding error caught at construction.
struct Dup : Module {
  explicit Dup(bool child) {
    register_parameter("w", Tensor::zeros({2}));
    if (child) register_module("w", std::make_shared<RMSNorm>(2));
    else register_parameter("w", Tensor::zeros({2}));
  }
};
struct Dotted : Module {
  Dotted() { register_parameter("a.b", Tensor::zeros({2})); }
};

TEST(Module, RegistrationErrors) {
  EXPECT_THROW(Dup(false), Error);
  EXPECT_THROW(Dup(true), Error);
  EXPECT_THROW(Dotted(), Error);
}

TEST(Module, ZeroGradDropsGradients) {
  LanguageModel m(tiny_config());
  Tensor ids = Tensor::from_ints({1, 2, 3, 4}, {1, 4});
  m.loss(ids, ids).backward();
  for (auto& [n, t] : m.named_parameters()) EXPECT_TRUE(t.grad().defined()) << n;
  m.zero_grad();
  for (auto& [n, t] : m.named_parameters()) EXPECT_FALSE(t.grad().defined()) << n;
}

// The count written out by hand for a softmax LM.
int64_t hand_count(const ModelConfig& c) {
  const int64_t C = c.d_model, V = c.vocab, I = c.n_heads * c.head_dim, F = c.mlp_hidden;
  const int64_t per_layer = C + 3 * I * C + C * I + C + 3 * C * F;
  return V * C + c.n_layers * per_layer + C + V * C;
}

TEST(Module, ParameterCountMatchesFormula) {
  for (ModelConfig c : {tiny_config(), [] {
                          ModelConfig x = tiny_config();
                          x.d_model = 12;
                          x.n_layers = 3;
                          return x;
                        }()}) {
    LanguageModel m(c);
    EXPECT_EQ(m.num_parameters(), hand_count(c));
    EXPECT_EQ(LanguageModel::count_parameters(c), hand_count(c));
  }
}

TEST(Module, SpecSizesParameterCounts) {
  ModelConfig small;  // the defaults are the spec's small size
  small.vocab = 32000;
  small.d_model = 1024;
  small.n_layers = 20;
  small.n_heads = 16;
  small.head_dim = 64;
  small.mlp_hidden = 2048;
  EXPECT_EQ(LanguageModel::count_parameters(small), 275293184);
  EXPECT_EQ(hand_count(small), 275293184);
  ModelConfig medium = small;
  medium.d_model = 1536;
  medium.n_layers = 27;
  medium.n_heads = 24;
  medium.mlp_hidden = 3072;
  EXPECT_EQ(LanguageModel::count_parameters(medium), 735398400);
}

TEST(Module, ConfigValidation) {
  ModelConfig c = tiny_config();
  c.head_dim = 7;
  std::string msg = error_of([&] { LanguageModel m(c); });
  EXPECT_NE(msg.find("head_dim"), std::string::npos) << msg;
  c = tiny_config();
  c.mixer = "mamba3";
  msg = error_of([&] { LanguageModel m(c); });
  EXPECT_NE(msg.find("mamba3"), std::string::npos) << msg;
}

}  // namespace
}  // namespace coil
