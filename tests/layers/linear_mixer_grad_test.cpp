// fp64 central finite differences against autograd for the chunked LinearAttentionMixer of every preset
// (together they switch every option on once), two everything-on configs, 2Mamba-E's prefix path
// (gradients into the passed K, V, Acs and conv carry) and 2Mamba's incoming state S, z.
#include "linear_mixer_test_util.h"

namespace coil {
namespace {

using namespace linear_test;

// Every parameter (up to 40 entries each) and the input.
double check_mixer(const LinearMixerOptions& o, uint64_t seed, const std::string& label) {
  auto m = tiny_mixer(o, seed, /*C=*/6, /*H=*/2, /*D=*/3);
  m->options.form = "chunked";
  m->options.chunk_size = 3;
  Generator g(seed + 1000);
  Tensor x = randn64({2, 7, 6}, g).set_requires_grad(true);
  Tensor r = randn64({2, 7, 6}, g);
  std::vector<Tensor> leaves = {x};
  std::vector<std::string> names = {label + " input"};
  for (const auto& [n, p] : m->named_parameters()) {
    leaves.push_back(p);
    names.push_back(label + " " + n);
  }
  return fd_check([&] { return sum(m->forward(x) * r); }, leaves, names);
}

TEST(LinearMixerGrad, EveryPresetMatchesFiniteDifferences) {
  double worst = 0;
  uint64_t seed = 1;
  for (const std::string& n : linear_preset_names())
    worst = std::max(worst, check_mixer(linear_preset(n), seed++, n));
  std::printf("max finite-difference error over every preset: %.3g\n", worst);
}

TEST(LinearMixerGrad, EverythingOnMatchesFiniteDifferences) {
  LinearMixerOptions all;
  all.power = "2";
  all.qk_activation = "silu";
  all.conv_width = 4;
  all.d_residual = true;
  all.z_gate = true;
  all.value_dt = true;
  all.a_mask = "original";
  all.norm = "output";
  const double e1 = check_mixer(all, 11, "everything-on output");
  LinearMixerOptions sm = all;
  sm.power = "1";
  sm.qk_activation = "relu";
  sm.conv_width = 3;
  sm.a_mask = "softplus";
  sm.norm = "sm";
  const double e2 = check_mixer(sm, 12, "everything-on sm");
  LinearMixerOptions e = sm;
  e.power = "exp";
  e.qk_activation = "silu";
  const double e3 = check_mixer(e, 13, "everything-on exp");
  std::printf("max finite-difference error, everything on: %.3g %.3g %.3g\n", e1, e2, e3);
}

// Gradients with respect to the incoming state of a second shard (what the backward pass hands from
// rank r+1 to rank r): S, z and the conv carry for 2Mamba; K, V, Acs and the conv carry for 2Mamba-E.
TEST(LinearMixerGrad, IncomingStateMatchesFiniteDifferences) {
  for (const std::string preset : {"2mamba", "2mamba-e", "mamba2s"}) {
    auto m = tiny_mixer(linear_preset(preset), 21, 6, 2, 3);
    m->options.chunk_size = 3;
    Generator g(22);
    Tensor x = randn64({1, 9, 6}, g);
    MixerState st;
    m->forward_stateful(x.narrow(1, 0, 4), MixerState{}, &st);
    MixerState in;
    std::vector<Tensor> leaves;
    std::vector<std::string> names;
    for (const auto& [n, t] : st.entries) {
      Tensor leaf = t.detach().clone().set_requires_grad(true);
      in.set(n, leaf);
      leaves.push_back(leaf);
      names.push_back(preset + " state " + n);
    }
    Tensor r = randn64({1, 5, 6}, g);
    auto f = [&] {
      MixerState out;
      Tensor y = m->forward_stateful(x.narrow(1, 4, 5), in, &out);
      Tensor l = sum(y * r);
      for (const auto& [n, t] : out.entries) l = l + scale(sum(t), 0.1);
      return l;
    };
    const double worst = fd_check(f, leaves, names);
    std::printf("%s: max finite-difference error of the incoming state %.3g\n", preset.c_str(), worst);
  }
}

}  // namespace
}  // namespace coil
