// Harness cases: the fused masked quadratic linear attention (ops LinAttn / LinAttnBackward). Each case
// checks y and the denominator statistic against plain double loops over the formula of core/op_list.h,
// and the f64 gradient check covers q, k, v and the decay acs (the backward kernel, B kind). The cases
// span the mixers of spec/models.md that use the op: 2Mamba (power 2, sm_norm, decay), Mamba-2S
// (power 1, output_norm, decay), the "Linear" baseline (power 1, sm_norm on positive features, no
// decay), power 2 with output_norm, a clamped denominator (power 1 scores all negative: the clamp's
// branch and the non-zero query side of dacs), Dv != D and T = 1; and linattn_qkv, the same op on
// strided views of one packed projection. The exp form (power kLinAttnPowerExp, 2Mamba-E: softmax of
// u_ij + acs_i - acs_j, den = the row log-sum-exp) runs with and without decay, on split and packed
// inputs; a test below checks it against layers/prefix_attention, the composed softmax with decay.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/ops.h"
#include "core/random.h"
#include "layers/prefix_attention.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

struct Cfg {
  int64_t power = 2;  // 1, 2 or kLinAttnPowerExp
  bool sm_norm = true;
  bool decay = true;
  double scale = 0.5;
};

// q (B, T, H, D), k, v (B, T, H, Dv) and acs (B, T, H) when cfg.decay.
HOuts reference(const HOuts& x, const Cfg& cfg) {
  const int64_t B = x[0].shape[0], T = x[0].shape[1], H = x[0].shape[2], D = x[0].shape[3];
  const int64_t Dv = x[2].shape[3];
  HostTensor y = HostTensor::zeros({B, T, H, Dv}), den = HostTensor::zeros({B, H, T});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> num(size_t(Dv), 0.0);
        double total = 0.0;
        // The exp form: logits z_ij, their max m (every weight exp(z_ij - m)), den = m + log sum.
        std::vector<double> z(size_t(i + 1));
        double m = -INFINITY;
        for (int64_t j = 0; j <= i && cfg.power == kLinAttnPowerExp; ++j) {
          double u = 0.0;
          for (int64_t d = 0; d < D; ++d)
            u += x[0][((b * T + i) * H + h) * D + d] * x[1][((b * T + j) * H + h) * D + d];
          z[size_t(j)] = cfg.scale * u;
          if (cfg.decay) z[size_t(j)] += x[3][(b * T + i) * H + h] - x[3][(b * T + j) * H + h];
          m = std::max(m, z[size_t(j)]);
        }
        for (int64_t j = 0; j <= i; ++j) {
          double u = 0.0;
          for (int64_t d = 0; d < D; ++d)
            u += x[0][((b * T + i) * H + h) * D + d] * x[1][((b * T + j) * H + h) * D + d];
          u *= cfg.scale;
          double w = cfg.power == 2 ? u * u : u;
          if (cfg.power == kLinAttnPowerExp) w = std::exp(z[size_t(j)] - m);
          else if (cfg.decay) w *= std::exp(x[3][(b * T + i) * H + h] - x[3][(b * T + j) * H + h]);
          total += w;
          for (int64_t d = 0; d < Dv; ++d) num[size_t(d)] += w * x[2][((b * T + j) * H + h) * Dv + d];
        }
        const bool expo = cfg.power == kLinAttnPowerExp;
        const double c = expo ? total : cfg.sm_norm ? std::max(total, 1e-8) : 1.0;
        for (int64_t d = 0; d < Dv; ++d) y[((b * T + i) * H + h) * Dv + d] = num[size_t(d)] / c;
        den[(b * H + h) * T + i] = expo ? m + std::log(total) : total;
      }
  return HOuts{y, den};
}

OpCase linattn_case(std::string name, Shape qs, int64_t Dv, Cfg cfg, InputSpec q_spec, InputSpec k_spec) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::LinAttn, Op::LinAttnBackward};
  const int64_t B = qs[0], T = qs[1], H = qs[2];
  c.inputs = {std::move(q_spec), std::move(k_spec), normal({B, T, H, Dv})};
  // A decreasing cumulative log decay (a_t in [-0.6, -0.05]) would be the layers' input; the op takes
  // any acs, and independent draws also exercise growing factors exp(acs_i - acs_j) > 1.
  if (cfg.decay) c.inputs.push_back(normal({B, T, H}, 0.5));
  c.grad_outputs = {true, false};  // den is a statistic, not differentiable
  c.bf16_tol_scale = 2.0;
  c.run = [cfg](const Outs& x) {
    Tensor den;
    Tensor y = linattn(x[0], x[1], x[2], cfg.decay ? x[3] : Tensor(), cfg.power, cfg.sm_norm, cfg.scale, &den);
    return Outs{y, den};
  };
  c.reference = [cfg](const HOuts& x) { return reference(x, cfg); };
  return c;
}

// linattn_qkv: one packed input (B, T, 3 H D), q | k | v along the last dim; the reference splits it
// and runs the same loops, and the gradient check reaches the packed gradient the kernel writes in
// three strided parts.
OpCase linattn_qkv_case(std::string name, Shape qs, Cfg cfg) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::LinAttn, Op::LinAttnBackward};
  const int64_t B = qs[0], T = qs[1], H = qs[2], D = qs[3];
  c.inputs = {normal({B, T, 3 * H * D})};
  if (cfg.decay) c.inputs.push_back(normal({B, T, H}, 0.5));
  c.grad_outputs = {true, false};
  c.bf16_tol_scale = 2.0;
  c.run = [cfg, H](const Outs& x) {
    Tensor den;
    Tensor y = linattn_qkv(x[0], cfg.decay ? x[1] : Tensor(), H, cfg.power, cfg.sm_norm, cfg.scale, &den);
    return Outs{y, den};
  };
  c.reference = [cfg, B, T, H, D](const HOuts& x) {
    HOuts parts(3, HostTensor::zeros({B, T, H, D}));
    for (int64_t r = 0; r < B * T; ++r)
      for (int64_t p = 0; p < 3; ++p)
        for (int64_t e = 0; e < H * D; ++e) parts[size_t(p)][r * H * D + e] = x[0][(r * 3 + p) * H * D + e];
    if (cfg.decay) parts.push_back(x[1]);
    return reference(parts, cfg);
  };
  return c;
}

}  // namespace

void add_linattn_cases(std::vector<OpCase>& cases) {
  const Shape s{2, 7, 2, 4};
  cases.push_back(linattn_case("linattn_2mamba", s, 3, {2, true, true, 0.5}, normal(s), normal(s)));
  cases.push_back(linattn_case("linattn_2mamba_t1", {2, 1, 3, 4}, 4, {2, true, true, 0.7},
                               normal({2, 1, 3, 4}), normal({2, 1, 3, 4})));
  cases.push_back(linattn_case("linattn_p2_output_norm", s, 5, {2, false, true, 0.5}, normal(s), normal(s)));
  cases.push_back(linattn_case("linattn_mamba2s", s, 4, {1, false, true, 0.5}, normal(s), normal(s)));
  cases.push_back(linattn_case("linattn_p1_sm_no_decay", {1, 6, 2, 5}, 3, {1, true, false, 0.4},
                               uniform({1, 6, 2, 5}, 0.1, 1.0), uniform({1, 6, 2, 5}, 0.1, 1.0)));
  cases.push_back(linattn_case("linattn_p2_no_decay", {1, 5, 2, 4}, 4, {2, true, false, 0.5},
                               normal({1, 5, 2, 4}), normal({1, 5, 2, 4})));
  // Every score negative: every denominator is clamped to 1e-8 (y = 1e8 num), so den gets no gradient
  // and the query side of dacs (sum_j G_ij) no longer cancels.
  cases.push_back(linattn_case("linattn_p1_clamped", {1, 5, 2, 3}, 2, {1, true, true, 0.5},
                               uniform({1, 5, 2, 3}, 0.2, 1.0), uniform({1, 5, 2, 3}, -1.0, -0.2)));
  cases.push_back(linattn_qkv_case("linattn_qkv_2mamba", s, {2, true, true, 0.5}));
  cases.push_back(linattn_qkv_case("linattn_qkv_p1_no_decay", {1, 6, 3, 2}, {1, false, false, 0.5}));
  // 2Mamba-E. Scale 1.5 on N(0, 1) draws gives peaked rows (weights far from uniform); the decay draws
  // (N(0, 0.5), not monotone) give both signs of acs_i - acs_j.
  cases.push_back(linattn_case("linattn_exp_decay", s, 3, {kLinAttnPowerExp, true, true, 1.5}, normal(s), normal(s)));
  cases.push_back(linattn_case("linattn_exp_no_decay", {1, 6, 2, 5}, 4, {kLinAttnPowerExp, true, false, 0.8},
                               normal({1, 6, 2, 5}), normal({1, 6, 2, 5})));
  cases.push_back(linattn_case("linattn_exp_t1", {2, 1, 3, 4}, 4, {kLinAttnPowerExp, true, true, 0.7},
                               normal({2, 1, 3, 4}), normal({2, 1, 3, 4})));
  cases.push_back(linattn_qkv_case("linattn_qkv_exp", s, {kLinAttnPowerExp, true, true, 0.9}));
}

namespace {

// The exp form of the fused op is layers/prefix_attention's causal softmax with the additive decay
// (queries at the keys' own positions), in fp64 to rounding: y, the log-sum-exp and every gradient.
TEST(LinAttnExp, MatchesPrefixAttentionF64) {
  Generator gen(41);
  for (const bool decay : {true, false}) {
    const int64_t B = 2, T = 37, H = 3, D = 8;
    const double s = 1.0 / std::sqrt(double(D));
    Tensor q = Tensor::randn({B, T, H, D}, gen, DType::F64).set_requires_grad(true);
    Tensor k = Tensor::randn({B, T, H, D}, gen, DType::F64).set_requires_grad(true);
    Tensor v = Tensor::randn({B, T, H, D}, gen, DType::F64).set_requires_grad(true);
    // A cumulative log decay as the layers make it (a_t in [-0.5, 0]).
    Tensor acs = decay ? cumsum(scale(Tensor::uniform({B, T, H}, gen, 0.0, 1.0, DType::F64), -0.5), 1)
                             .detach()
                             .set_requires_grad(true)
                       : Tensor();
    Tensor dy = Tensor::randn({B, T, H, D}, gen, DType::F64);
    Tensor den, lse;
    Tensor y1 = linattn(q, k, v, acs, kLinAttnPowerExp, true, s, &den);
    Tensor y2 = prefix_attention(q, k, v, s, acs, acs, &lse);
    auto grads = [&](const Tensor& y) {
      for (const Tensor* t : {&q, &k, &v, &acs})
        if (t->defined()) t->zero_grad();
      sum(y * dy).backward();
      std::vector<std::vector<double>> g;
      for (const Tensor* t : {&q, &k, &v, &acs})
        if (t->defined()) g.push_back(t->grad().to_vector());
      return g;
    };
    auto max_diff = [](const std::vector<double>& a, const std::vector<double>& b) {
      EXPECT_EQ(a.size(), b.size());
      double m = 0.0;
      for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
      return m;
    };
    EXPECT_LE(max_diff(y1.to_vector(), y2.to_vector()), 1e-12) << "decay " << decay;
    // den (B, H, T) against lse (B, T, H).
    EXPECT_LE(max_diff(den.to_vector(), lse.permute({0, 2, 1}).contiguous().to_vector()), 1e-12);
    const auto g1 = grads(y1), g2 = grads(y2);
    const char* names[] = {"dq", "dk", "dv", "dacs"};
    for (size_t i = 0; i < g1.size(); ++i)
      EXPECT_LE(max_diff(g1[i], g2[i]), 1e-12) << names[i] << " decay " << decay;
  }
}

TEST(LinAttnExp, RejectsOutputNorm) {
  Tensor q = Tensor::zeros({1, 2, 1, 4}, DType::F64);
  try {
    linattn(q, q, q, Tensor(), kLinAttnPowerExp, false, 0.5);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("sm_norm"), std::string::npos) << e.what();
  }
}

}  // namespace

}  // namespace coil::harness
