// LinearAttentionMixer of every preset (fp64): the quadratic forward, the chunked forward (chunk sizes
// not dividing T), forward_stateful and token-by-token step agree; sequence shards passing the state
// (S, z, conv carry; for 2Mamba-E the K, V, Acs prefix) reproduce the unsharded outputs, input
// gradients and parameter gradients; the decode state has the advertised size.
#include "linear_mixer_test_util.h"

namespace coil {
namespace {

using namespace linear_test;

// Presets plus variants with strong decays (W_A scaled up, A_log shifted) and an everything-on mix.
struct MixerCase {
  std::string name;
  LinearMixerOptions options;
  double wa_scale = 1.0;    // multiplies W_A.weight
  double alog_shift = 0.0;  // added to A_log
};

std::vector<MixerCase> mixer_cases() {
  std::vector<MixerCase> cs;
  for (const std::string& n : linear_preset_names()) cs.push_back({n, linear_preset(n)});
  cs.push_back({"2mamba strong decay", linear_preset("2mamba"), 25.0});
  cs.push_back({"2mamba-e strong decay", linear_preset("2mamba-e"), 25.0});
  cs.push_back({"amask-original strong decay", linear_preset("out-norm-amask-original"), 1.0, 2.0});
  LinearMixerOptions all;  // everything on, power 2 with output norm
  all.power = "2";
  all.qk_activation = "silu";
  all.conv_width = 4;
  all.d_residual = true;
  all.z_gate = true;
  all.value_dt = true;
  all.a_mask = "original";
  all.norm = "output";
  cs.push_back({"everything-on output", all});
  LinearMixerOptions all_sm = all;  // everything on, power 1 sm (ReLU), softplus mask, conv 3
  all_sm.power = "1";
  all_sm.qk_activation = "relu";
  all_sm.conv_width = 3;
  all_sm.a_mask = "softplus";
  all_sm.norm = "sm";
  cs.push_back({"everything-on sm", all_sm});
  return cs;
}

std::shared_ptr<LinearAttentionMixer> build(const MixerCase& c, uint64_t seed) {
  auto m = tiny_mixer(c.options, seed);
  if (m->W_A) scale_param(m->W_A->weight, c.wa_scale);
  if (m->A_log.defined()) scale_param(m->A_log, 1.0, c.alog_shift);
  return m;
}

Tensor run_steps(const LinearAttentionMixer& m, const Tensor& x, MixerState* state_out = nullptr) {
  MixerState st;
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < x.size(1); ++t) ys.push_back(m.step(x.narrow(1, t, 1), st));
  if (state_out) *state_out = st;
  return concat(ys, 1);
}

TEST(LinearMixerForms, QuadraticChunkedStatefulAndStepsAgree) {
  double worst = 0;
  uint64_t seed = 1;
  for (const MixerCase& c : mixer_cases()) {
    auto m = build(c, seed++);
    for (int64_t T : {7, 13}) {
      Generator g(seed++);
      Tensor x = randn64({2, T, 12}, g);
      m->options.form = "quadratic";
      Tensor ref = m->forward(x);
      m->options.form = "chunked";
      for (int64_t chunk : {3, 4, 8}) {
        m->options.chunk_size = chunk;
        const double e = max_rel(m->forward(x), ref);
        const double es = max_rel(m->forward_stateful(x, MixerState{}, nullptr), ref);
        worst = std::max({worst, e, es});
        EXPECT_LT(e, 1e-10) << c.name << " T " << T << " chunk " << chunk;
        EXPECT_LT(es, 1e-10) << c.name << " T " << T << " chunk " << chunk << " (stateful)";
      }
      MixerState st;
      const double e = max_rel(run_steps(*m, x, &st), ref);
      worst = std::max(worst, e);
      EXPECT_LT(e, 1e-10) << c.name << " T " << T << " (steps)";
      EXPECT_EQ(st.values_per_sequence(), m->decode_state_values(T)) << c.name;
      // Prefill with the chunked form, then decode with steps: the two states are interchangeable.
      MixerState pre;
      std::vector<Tensor> ys = {m->forward_stateful(x.narrow(1, 0, 5), MixerState{}, &pre)};
      for (int64_t t = 5; t < T; ++t) ys.push_back(m->step(x.narrow(1, t, 1), pre));
      const double ep = max_rel(concat(ys, 1), ref);
      worst = std::max(worst, ep);
      EXPECT_LT(ep, 1e-10) << c.name << " T " << T << " (prefill + steps)";
    }
  }
  std::printf("max relative error (quadratic, chunked, stateful, steps): %.3g\n", worst);
}

// form "auto" runs the quadratic form up to chunked_from tokens and the chunked form above. The two
// forms round differently, so bit equality with one of them (and not the other) tells which ran.
TEST(LinearMixerForms, AutoPicksTheFormByLength) {
  auto m = build({"2mamba", linear_preset("2mamba")}, 77);
  m->options.chunk_size = 4;
  Generator g(78);
  Tensor x = randn64({2, 13, 12}, g);
  m->options.form = "quadratic";
  const std::vector<double> quad = m->forward(x).to_vector();
  m->options.form = "chunked";
  const std::vector<double> chunked = m->forward(x).to_vector();
  ASSERT_NE(quad, chunked) << "the two forms round alike here; the test cannot tell them apart";
  m->options.form = "auto";
  m->options.chunked_from = 13;
  EXPECT_EQ(m->forward(x).to_vector(), quad) << "13 tokens, chunked_from 13: quadratic";
  m->options.chunked_from = 12;
  EXPECT_EQ(m->forward(x).to_vector(), chunked) << "13 tokens, chunked_from 12: chunked";
}

// Shards of uneven length (some shorter than the conv carry) in chunked form, state passed as tensors.
TEST(LinearMixerForms, ShardsMatchTheUnshardedRunInValuesAndGradients) {
  const int64_t T = 13;
  double worst_y = 0, worst_g = 0;
  uint64_t seed = 500;
  for (const MixerCase& c : mixer_cases()) {
    auto m = build(c, seed++);
    m->options.chunk_size = 4;
    Generator g(seed++);
    Tensor x0 = randn64({2, T, 12}, g), r = randn64({2, T, 12}, g);
    NamedTensors params = m->named_parameters();

    auto grads = [&](const Tensor& x) {
      std::vector<Tensor> gs = {x.grad()};
      for (const auto& [n, p] : params) gs.push_back(p.grad());
      return gs;
    };
    m->zero_grad();
    Tensor xf = x0.clone().set_requires_grad(true);
    MixerState st_full;
    Tensor y_full = m->forward_stateful(xf, MixerState{}, &st_full);
    sum(y_full * r).backward();
    std::vector<Tensor> want = grads(xf);

    for (const std::vector<int64_t>& shards :
         {std::vector<int64_t>{6, 7}, {5, 1, 7}, {3, 2, 1, 7}, {1, 1, 1, 10}}) {
      m->zero_grad();
      Tensor xs = x0.clone().set_requires_grad(true);
      MixerState st;
      std::vector<Tensor> ys;
      int64_t off = 0;
      for (int64_t len : shards) {
        MixerState next;
        ys.push_back(m->forward_stateful(xs.narrow(1, off, len), st, &next));
        st = next;
        off += len;
      }
      Tensor y = concat(ys, 1);
      const double ey = max_rel(y, y_full);
      worst_y = std::max(worst_y, ey);
      EXPECT_LT(ey, 1e-10) << c.name << ", " << shards.size() << " shards";
      for (const auto& [n, t] : st_full.entries) {
        EXPECT_LT(max_rel(st.get(n), t), 1e-10) << c.name << " state " << n;
      }
      sum(y * r).backward();
      std::vector<Tensor> got = grads(xs);
      for (size_t i = 0; i < got.size(); ++i) {
        const std::string what = i == 0 ? std::string("input") : params[i - 1].first;
        ASSERT_TRUE(got[i].defined() && want[i].defined()) << c.name << " " << what;
        const double eg = max_rel(got[i], want[i]);
        worst_g = std::max(worst_g, eg);
        EXPECT_LT(eg, 1e-10) << c.name << ", " << shards.size() << " shards, grad of " << what;
      }
    }
  }
  std::printf("max relative error: sharded outputs %.3g, sharded gradients %.3g\n", worst_y, worst_g);
}

TEST(LinearMixerForms, DecodeStateSizes) {
  // The spec's 2Mamba figure: 2080 * 64 + 2080 + 192 = 135,392 values per head per layer.
  EXPECT_EQ(LinearAttentionMixer::symmetric_state_values_per_head(64, 2), 135392);
  Generator gen(0);
  LinearAttentionMixer two(128, 2, 64, linear_preset("2mamba"), 1e-5, gen);
  EXPECT_EQ(two.decode_state_values(4096), 2 * 135392);
  EXPECT_EQ(two.decode_state_values(1), 2 * 135392);  // independent of the context
  LinearAttentionMixer m2s(128, 2, 64, linear_preset("mamba2s"), 1e-5, gen);
  EXPECT_EQ(m2s.decode_state_values(100), 2 * (64 * 64 + 3 * 64));   // spec table: 4,288 per head
  LinearAttentionMixer lin(128, 2, 64, linear_preset("linear"), 1e-5, gen);
  EXPECT_EQ(lin.decode_state_values(100), 2 * (64 * 64 + 64));        // spec table: 4,160 per head
  LinearAttentionMixer e(128, 2, 64, linear_preset("2mamba-e"), 1e-5, gen);
  EXPECT_EQ(e.decode_state_values(10), 10 * 2 * (2 * 64 + 1) + 3 * 128);  // K, V, Acs + conv carry

  // The state really holds that many values after decoding.
  Tensor x = Tensor::randn({1, 3, 128}, gen);
  MixerState st;
  for (int64_t t = 0; t < 3; ++t) two.step(x.narrow(1, t, 1), st);
  EXPECT_EQ(st.values_per_sequence(), 2 * 135392);
  EXPECT_EQ(st.get("S").size(2), 2080);
}

}  // namespace
}  // namespace coil
