// Decoding with state / KV cache against the full forward, for every mixer (fp64, CPU), and the decode
// state sizes of the spec (2Mamba: 135,392 values per head per layer at head_dim 64, constant in the
// context; softmax: a KV cache of 2 x 64 values per token per head).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "core/autograd/grad_mode.h"
#include "core/random.h"
#include "eval/decode.h"
#include "layers/linear_mixer.h"
#include "trainer/model_yaml.h"

namespace coil {
namespace {

std::string tiny_config(const std::string& name) {
  return std::string(COIL_SOURCE_DIR) + "/configs/models/" + name + "-tiny.yaml";
}

// Short chunks so that a 21-token sequence crosses several chunk boundaries.
ModelConfig with_short_chunks(ModelConfig c) {
  c.linear.chunk_size = 4;
  c.mamba2.chunk_size = 4;
  c.mamba1.chunk_size = 4;
  return c;
}

double max_rel_err(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num = std::max(num, std::abs(got[i] - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  return num / den;
}

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int64_t(g.next_u64() % uint64_t(vocab)));
  return ids;
}

// Full forward vs (a) one step per token, (b) prefill of a prefix then steps, (c) chunked prefill.
void check_decode_matches_forward(const ModelConfig& config, const std::string& label) {
  SCOPED_TRACE(label);
  LanguageModel model(config, ParamOptions{DType::F64, Device::cpu()});
  Decoder dec(model);
  const int64_t B = 2, T = 21, V = config.vocab;
  std::vector<int64_t> ids = random_ids(B * T, V, 7);
  Tensor x = Tensor::from_ints(ids, {B, T});
  std::vector<double> ref;
  {
    NoGradGuard ng;
    ref = model.forward(x).to_vector();  // (B, T, V)
  }
  auto rows = [&](const std::vector<Tensor>& parts) {  // (B, 1|n, V) pieces in time order -> (B, T, V)
    std::vector<double> out(size_t(B * T * V));
    int64_t t0 = 0;
    for (const Tensor& p : parts) {
      std::vector<double> v = p.to_vector();
      const int64_t n = p.size(1);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < n; ++t)
          std::copy_n(v.begin() + (b * n + t) * V, V, out.begin() + (b * T + t0 + t) * V);
      t0 += n;
    }
    return out;
  };
  // (a) steps only
  {
    DecodeState st = dec.initial_state();
    std::vector<Tensor> parts;
    for (int64_t t = 0; t < T; ++t) parts.push_back(dec.step(x.narrow(1, t, 1).contiguous(), st));
    EXPECT_EQ(st.position, T);
    const double err = max_rel_err(rows(parts), ref);
    EXPECT_LT(err, 1e-9) << "step-by-step decode";
    std::cout << "  " << label << ": step-by-step max rel err " << err << "\n";
  }
  // (b) prefill 9 tokens, then steps
  {
    DecodeState st = dec.initial_state();
    std::vector<Tensor> parts{dec.prefill(x.narrow(1, 0, 9).contiguous(), st)};
    for (int64_t t = 9; t < T; ++t) parts.push_back(dec.step(x.narrow(1, t, 1).contiguous(), st));
    EXPECT_LT(max_rel_err(rows(parts), ref), 1e-9) << "prefill + steps";
  }
  // (c) chunked prefill (uneven last chunk)
  {
    DecodeState st = dec.initial_state();
    std::vector<Tensor> parts{dec.prefill(x, st, 5)};
    EXPECT_LT(max_rel_err(rows(parts), ref), 1e-9) << "chunked prefill";
  }
}

class DecodeEveryConfig : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeEveryConfig, StateDecodingReproducesFullForward) {
  check_decode_matches_forward(with_short_chunks(load_model_config(tiny_config(GetParam()))), GetParam());
}

INSTANTIATE_TEST_SUITE_P(TinyConfigs, DecodeEveryConfig,
                         ::testing::Values("softmax", "linear", "2mamba", "2mamba-dt", "2mamba-e",
                                           "mamba2s", "mamba2", "mamba2-paper", "mamba1", "hybrid"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// Every linear preset (the paper's ablations included) on the 2mamba-tiny shape.
TEST(DecodeLinearPresets, EveryPresetReproducesFullForward) {
  ModelConfig base = load_model_config(tiny_config("2mamba"));
  base.n_layers = 1;
  for (const std::string& name : linear_preset_names()) {
    ModelConfig c = base;
    c.linear = linear_preset(name);
    check_decode_matches_forward(with_short_chunks(c), "preset " + name);
  }
}

// A model with head_dim 64 (the spec's figures are per head at dh = 64).
ModelConfig head64(const std::string& name) {
  ModelConfig c = load_model_config(tiny_config(name));
  c.d_model = 128;
  c.n_heads = 2;
  c.head_dim = 64;
  c.vocab = 32;
  c.mlp_hidden = 64;
  return c;
}

std::vector<int64_t> bytes_after(const Decoder& dec, int64_t context, int64_t vocab) {
  DecodeState st = dec.initial_state();
  std::vector<int64_t> ids = random_ids(context, vocab, 3);
  if (context > 1)
    dec.prefill(Tensor::from_ints(std::vector<int64_t>(ids.begin(), ids.end() - 1), {1, context - 1}), st);
  dec.step(Tensor::from_ints({ids.back()}, {1, 1}), st);  // the last token through the decode path
  return dec.state_bytes(st);
}

TEST(DecodeStateBytes, TwoMambaIsConstantAndMatchesTheSpec) {
  ModelConfig c = head64("2mamba");
  LanguageModel model(c);  // fp32
  Decoder dec(model);
  const int64_t per_head = 135392;  // spec section 6: 133,120 + 2,080 + 192
  for (int64_t context : {2, 17, 80, 200}) {
    std::vector<int64_t> bytes = bytes_after(dec, context, c.vocab);
    ASSERT_EQ(bytes.size(), size_t(c.n_layers));
    for (size_t l = 0; l < bytes.size(); ++l)
      EXPECT_EQ(bytes[l], per_head * c.n_heads * 4) << "layer " << l << " at context " << context;
    std::vector<int64_t> declared = dec.declared_state_values(context);
    for (int64_t d : declared) EXPECT_EQ(d, per_head * c.n_heads);
  }
}

TEST(DecodeStateBytes, SoftmaxKvCacheGrowsByTwoHeadDimsPerTokenPerHead) {
  ModelConfig c = head64("softmax");
  LanguageModel model(c);
  Decoder dec(model);
  for (int64_t context : {1, 17, 80, 200}) {
    std::vector<int64_t> bytes = bytes_after(dec, context, c.vocab);
    for (size_t l = 0; l < bytes.size(); ++l)
      EXPECT_EQ(bytes[l], 2 * 64 * context * c.n_heads * 4) << "layer " << l << " at context " << context;
  }
}

TEST(Generate, GreedyIsTheArgmaxOfTheFullForwardAndSamplingIsSeeded) {
  ModelConfig c = load_model_config(tiny_config("2mamba"));
  LanguageModel model(c, ParamOptions{DType::F64, Device::cpu()});
  Decoder dec(model);
  std::vector<int32_t> prompt{5, 9, 200, 17};
  GenerateOptions g;
  g.max_new_tokens = 6;
  GenerateResult r = generate(dec, prompt, g);
  ASSERT_EQ(r.tokens.size(), 6u);
  // Each greedy token is the argmax of the full forward over prompt + the tokens before it.
  std::vector<int64_t> seq(prompt.begin(), prompt.end());
  for (int32_t tok : r.tokens) {
    NoGradGuard ng;
    std::vector<double> l = model.forward(Tensor::from_ints(seq, {1, int64_t(seq.size())})).to_vector();
    EXPECT_EQ(tok, argmax_row(l.data() + (seq.size() - 1) * size_t(c.vocab), c.vocab));
    seq.push_back(tok);
  }
  g.temperature = 1.0;
  g.top_k = 20;
  g.seed = 11;
  GenerateResult s1 = generate(dec, prompt, g), s2 = generate(dec, prompt, g);
  EXPECT_EQ(s1.tokens, s2.tokens);
  g.seed = 12;
  GenerateResult s3 = generate(dec, prompt, g);
  EXPECT_NE(s1.tokens, s3.tokens);  // 20^6 sequences: a collision would be a seeding bug
}

}  // namespace
}  // namespace coil

namespace coil {
namespace {

// The bytes held after N tokens equal each mixer's own decode_state_values(N) figure (fp32), for every
// tiny config: what `coil model info` prints is what decoding holds.
TEST(DecodeStateBytes, MeasuredStateMatchesTheMixersDeclaredFigure) {
  for (const std::string name : {"softmax", "linear", "2mamba", "2mamba-dt", "2mamba-e", "mamba2s", "mamba2",
                                 "mamba2-paper", "mamba1", "hybrid"}) {
    ModelConfig c = load_model_config(tiny_config(name));
    LanguageModel model(c);
    Decoder dec(model);
    for (int64_t context : {1, 9, 33}) {
      std::vector<int64_t> bytes = bytes_after(dec, context, c.vocab);
      std::vector<int64_t> declared = dec.declared_state_values(context);
      ASSERT_EQ(bytes.size(), declared.size());
      for (size_t l = 0; l < bytes.size(); ++l)
        EXPECT_EQ(bytes[l], declared[l] * 4) << name << " layer " << l << " (" << dec.layer_label(l)
                                             << ") at context " << context;
    }
  }
}

TEST(DecodeHybrid, AttentionLayersWithRopeReproduceFullForward) {
  ModelConfig c = load_model_config(tiny_config("hybrid"));
  c.hybrid_attention_rope = true;
  check_decode_matches_forward(with_short_chunks(c), "hybrid with RoPE");
}

}  // namespace
}  // namespace coil
