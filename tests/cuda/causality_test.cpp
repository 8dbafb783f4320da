// Causality of every mixer's language model on the GPU at training shapes (bf16 autocast, many chunks
// per sequence): changing the input token at position t0 of every sequence must leave the logits of
// positions < t0 exactly as they were and change those from t0 on. The CPU tests check the forms on
// short sequences; this catches an index that reaches a later chunk or another sequence only at the
// lengths and batch sizes of real runs (B = 4, T = 1024: 8 chunks of 128, 16 of 64).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "core/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/linear_mixer.h"
#include "layers/lm.h"
#include "tests/cuda/cuda_test_util.h"

namespace coil {
namespace {

struct CausalCase {
  std::string name, mixer, preset, form;
};

void check_causal(const CausalCase& c) {
  ModelConfig m;
  m.mixer = c.mixer;
  if (c.mixer == "linear") {
    m.linear = linear_preset(c.preset);
    if (!c.form.empty()) m.linear.form = c.form;
  }
  m.vocab = 512;
  m.d_model = 256;
  m.n_layers = 2;
  m.n_heads = 4;
  m.head_dim = 64;
  m.mlp_hidden = 512;
  const int64_t B = 4, T = 1024, t0 = 700;
  LanguageModel lm(m, ParamOptions{DType::F32, Device::cuda(0)});
  Generator gen(5);
  std::vector<int64_t> ids(size_t(B * T));
  for (int64_t& t : ids) t = int64_t(gen.next_u64() % uint64_t(m.vocab));
  std::vector<int64_t> changed = ids;
  for (int64_t b = 0; b < B; ++b) changed[size_t(b * T + t0)] = (ids[size_t(b * T + t0)] + 1) % m.vocab;
  NoGradGuard ng;
  AutocastGuard autocast(true);
  const Device dev = Device::cuda(0);
  Tensor a = lm.forward(Tensor::from_ints(ids, {B, T}).to(dev)).to(DType::F32).to(Device::cpu());
  Tensor b = lm.forward(Tensor::from_ints(changed, {B, T}).to(dev)).to(DType::F32).to(Device::cpu());
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  const int64_t V = m.vocab;
  double before = 0, after = 0;
  for (int64_t s = 0; s < B; ++s)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t v = 0; v < V; ++v) {
        const size_t i = size_t((s * T + t) * V + v);
        const double d = std::abs(x[i] - y[i]);
        (t < t0 ? before : after) = std::max(t < t0 ? before : after, d);
      }
  std::printf("[%s] max |logit change| before t0 %.3e, from t0 on %.3e\n", c.name.c_str(), before, after);
  EXPECT_EQ(before, 0.0) << c.name << ": a later token changed earlier logits";
  EXPECT_GT(after, 1e-3) << c.name << ": the changed token changed nothing (the check is blind)";
}

TEST(CudaCausality, EveryMixerSeesOnlyThePast) {
  REQUIRE_CUDA();
  const CausalCase cases[] = {
      {"softmax", "softmax", "", ""},
      {"2mamba quadratic", "linear", "2mamba", "quadratic"},
      {"2mamba chunked", "linear", "2mamba", "chunked"},
      {"2mamba-e", "linear", "2mamba-e", ""},
      {"mamba2s chunked", "linear", "mamba2s", "chunked"},
      {"mamba2", "mamba2", "", ""},
      {"mamba1", "mamba1", "", ""},
  };
  for (const CausalCase& c : cases) check_causal(c);
}

}  // namespace
}  // namespace coil
