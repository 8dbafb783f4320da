// Mamba-2-Hybrid stacks: the layer wiring (x + f(norm(x)) per pattern letter), state-dict names, the
// parameter count, attention without RoPE, recompute, pattern validation, and a tiny hybrid LM training.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "layers/attention.h"
#include "layers/hybrid.h"
#include "layers/mamba2.h"
#include "mamba_test_util.h"

namespace coil {
namespace {
using namespace mamba_test;

ModelConfig hybrid_config(const std::string& pattern) {
  ModelConfig c = tiny_lm_config("hybrid");
  c.layer_pattern = pattern;
  c.n_layers = 99;  // not used by hybrid stacks: the pattern's length is the layer count
  return c;
}

TEST(HybridLM, StateDictNamesAndCount) {
  ModelConfig c = hybrid_config("M-*-");
  LanguageModel m(c, kF64);
  ASSERT_EQ(m.num_hybrid_layers(), 4u);
  EXPECT_EQ(m.num_blocks(), 0u);
  EXPECT_EQ(LanguageModel::count_parameters(c), m.num_parameters());
  StateDict sd = m.state_dict();
  for (const char* name :
       {"layers.0.norm.weight", "layers.0.mixer.in_proj.weight", "layers.0.mixer.A_log",
        "layers.0.mixer.out_proj.weight", "layers.1.norm.weight", "layers.1.mlp.gate.weight",
        "layers.1.mlp.down.weight", "layers.2.mixer.qkv.weight", "layers.2.mixer.o.weight",
        "layers.3.mlp.up.weight", "norm_f.weight", "lm_head.weight", "embedding.weight"})
    EXPECT_TRUE(sd.count(name)) << name;
  for (const auto& [name, t] : sd) {
    EXPECT_EQ(name.find("layers.4."), std::string::npos) << name;
    EXPECT_EQ(name.find("norm1"), std::string::npos) << name;
  }
  EXPECT_EQ(m.hybrid_layer(0).kind, 'M');
  EXPECT_EQ(m.hybrid_layer(2).kind, '*');
  EXPECT_FALSE(static_cast<SoftmaxAttention&>(*m.hybrid_layer(2).mixer).use_rope);

  // The study's 8B pattern shape: 24 M, 4 *, 28 - (counted without building).
  std::string big;
  for (int i = 0; i < 4; ++i) big += "M-M-M-M-M-M-*-";
  ModelConfig b = hybrid_config(big);
  const int64_t C = b.d_model;
  EXPECT_EQ(LanguageModel::count_parameters(b),
            b.vocab * C + 24 * (C + Mamba2::count_parameters(C, b.mamba2)) +
                4 * (C + SoftmaxAttention::count_parameters(C, b.n_heads, b.head_dim)) +
                28 * (C + SwiGLUMLP::count_parameters(C, b.mlp_hidden)) + C + C * b.vocab);
}

TEST(HybridLM, ForwardIsTheLayerComposition) {
  ModelConfig c = hybrid_config("M*-");
  LanguageModel m(c, kF64);
  Tensor ids = make_repeat_batch(2, 9, c.vocab, 4, 1).ids;
  Tensor x = m.embedding->forward(ids);
  for (size_t i = 0; i < m.num_hybrid_layers(); ++i) {
    const HybridLayer& l = m.hybrid_layer(i);
    Tensor h = rms_norm(x, l.norm->weight, c.norm_eps);
    x = x + (l.mixer ? l.mixer->forward(h) : l.mlp->forward(h));
  }
  Tensor want = m.lm_head->forward(rms_norm(x, m.norm_f->weight, c.norm_eps));
  EXPECT_LT(max_rel(m.forward(ids), want), 1e-14);
}

TEST(HybridLM, AttentionLayersHaveNoRopeUnlessAsked) {
  Generator gen(4);
  SoftmaxAttention att(16, 2, 8, 10000.0, gen, kF64);
  att.use_rope = false;
  Tensor x = Tensor::randn({2, 6, 16}, gen, DType::F64);
  std::vector<Tensor> qkv = split(att.qkv->forward(x), {16, 16, 16}, 2);
  auto heads = [](const Tensor& t) { return t.reshape({2, 6, 2, 8}); };
  Tensor want = att.o->forward(
      causal_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2])).reshape({2, 6, 16}));
  EXPECT_LT(max_rel(att.forward(x), want), 1e-13);
  // The KV-prefix path agrees (no RoPE offset either).
  MixerState st, next;
  Tensor y0 = att.forward_stateful(x.narrow(1, 0, 4), st, &next);
  Tensor y1 = att.forward_stateful(x.narrow(1, 4, 2), next, &st);
  EXPECT_LT(max_rel(concat({y0, y1}, 1), want), 1e-13);
  att.use_rope = true;
  EXPECT_GT(max_rel(att.forward(x), want), 1e-3);

  ModelConfig c = hybrid_config("*-");
  c.hybrid_attention_rope = true;
  LanguageModel m(c);
  EXPECT_TRUE(static_cast<SoftmaxAttention&>(*m.hybrid_layer(0).mixer).use_rope);
}

TEST(HybridLM, RecomputeGivesIdenticalLossAndGradients) {
  ModelConfig c = hybrid_config("M*-");
  ModelConfig cr = c;
  cr.recompute = true;
  LanguageModel plain(c, kF64), rec(cr, kF64);
  TokenBatch batch = make_repeat_batch(2, 10, c.vocab, 3, 2);
  Tensor l0 = plain.loss(batch.ids, batch.targets), l1 = rec.loss(batch.ids, batch.targets);
  EXPECT_EQ(l0.item(), l1.item());
  l0.backward();
  l1.backward();
  NamedTensors p0 = plain.named_parameters(), p1 = rec.named_parameters();
  ASSERT_EQ(p0.size(), p1.size());
  for (size_t i = 0; i < p0.size(); ++i)
    EXPECT_EQ(p0[i].second.grad().to_vector(), p1[i].second.grad().to_vector()) << p0[i].first;
}

TEST(HybridLM, BadPatternsThrow) {
  for (const char* p : {"", "M-X", "m-"}) {
    ModelConfig c = hybrid_config(p);
    EXPECT_THROW(c.validate(), Error) << "'" << p << "'";
  }
  ModelConfig c = hybrid_config("M-");
  c.mamba2.head_dim = 5;
  EXPECT_THROW(c.validate(), Error);
  c.layer_pattern = "*-";  // no Mamba-2 layer: its options are not used
  EXPECT_NO_THROW(c.validate());
}

TEST(HybridLM, Trains) { expect_trains(train_losses(hybrid_config("M*-M-")), "hybrid M*-M- LM"); }

}  // namespace
}  // namespace coil
