// Mamba-2 (full and the paper's one-head variant): the layer against a plain-loop reference of spec
// section 8, quadratic == chunked (several chunk sizes) == token-by-token steps, sequence sharding
// with state passing (outputs and gradients), finite-difference gradients, the parameter count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "layers/mamba2.h"
#include "layers/ssm_scan.h"
#include "mamba_test_util.h"

namespace coil {
namespace {
using namespace mamba_test;

// Tiny options: "full" has 8 SSM heads of 4 channels; "paper" one head of 8 plus an 8-wide gated branch.
Mamba2Options tiny_options(bool paper) {
  Mamba2Options o = mamba2_preset(paper ? "mamba2-paper" : "mamba2");
  o.d_state = 6;
  o.head_dim = paper ? 8 : 4;
  if (!paper) o.expand = 2;
  o.chunk_size = 5;
  return o;
}

double silu_d(double v) { return v / (1 + std::exp(-v)); }
double softplus_d(double v) { return v > 30 ? v : std::log1p(std::exp(v)); }

// Spec section 8 as loops over (batch, token, head, channel, state).
std::vector<double> reference(const Mamba2& m, const Tensor& x_t) {
  const int64_t B = x_t.size(0), T = x_t.size(1), C = m.dim, H = m.n_heads, P = m.head_dim;
  const int64_t N = m.d_state, K = m.d_conv, M = m.d_mlp, S = m.d_ssm, W = m.conv_dim;
  const int64_t I = m.in_proj->out_features;
  auto x = x_t.to_vector(), win = m.in_proj->weight.to_vector(), cw = m.conv_weight.to_vector();
  auto cb = m.conv_bias.to_vector(), dtb = m.dt_bias.to_vector(), alog = m.A_log.to_vector();
  auto dd = m.D.to_vector(), nw = m.norm_weight.to_vector(), wout = m.out_proj->weight.to_vector();
  std::vector<double> out(size_t(B * T * C), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> zx(size_t(T * I), 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < I; ++n)
        for (int64_t c = 0; c < C; ++c) zx[t * I + n] += x[(b * T + t) * C + c] * win[n * C + c];
    const int64_t o_z = 2 * M, o_xbc = 2 * M + S, o_dt = o_xbc + W;
    std::vector<double> xbc(static_cast<size_t>(T * W));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t ch = 0; ch < W; ++ch) {
        double acc = cb[ch];
        for (int64_t k = 0; k < K; ++k) {
          const int64_t src = t - (K - 1) + k;
          if (src >= 0) acc += cw[ch * K + k] * zx[src * I + o_xbc + ch];
        }
        xbc[t * W + ch] = silu_d(acc);
      }
    std::vector<double> state(size_t(H * P * N), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      const double* xs = &xbc[t * W];
      const double* Bt = xs + S;
      const double* Ct = xs + S + N;
      std::vector<double> mixed(static_cast<size_t>(M + S));
      for (int64_t j = 0; j < M; ++j) mixed[j] = silu_d(zx[t * I + j]) * zx[t * I + M + j];
      for (int64_t h = 0; h < H; ++h) {
        const double dt = softplus_d(zx[t * I + o_dt + h] + dtb[h]);
        const double decay = std::exp(-std::exp(alog[h]) * dt);
        std::vector<double> g(static_cast<size_t>(P));
        double ms = 0;
        for (int64_t p = 0; p < P; ++p) {
          double y = 0;
          for (int64_t n = 0; n < N; ++n) {
            double& s = state[(h * P + p) * N + n];
            s = decay * s + dt * xs[h * P + p] * Bt[n];
            y += s * Ct[n];
          }
          y += dd[h] * xs[h * P + p];
          g[p] = y * silu_d(zx[t * I + o_z + h * P + p]);
          ms += g[p] * g[p] / double(P);
        }
        for (int64_t p = 0; p < P; ++p)
          mixed[M + h * P + p] = g[p] / std::sqrt(ms + 1e-5) * nw[h * P + p];
      }
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < M + S; ++j)
          out[(b * T + t) * C + c] += mixed[j] * wout[c * (M + S) + j];
    }
  }
  return out;
}

TEST(Mamba2Math, MatchesLoopReference) {
  for (bool paper : {false, true}) {
    Generator gen(paper ? 2 : 1);
    Mamba2 m(16, tiny_options(paper), gen, kF64);
    EXPECT_EQ(m.d_mlp, paper ? 8 : 0);
    EXPECT_EQ(m.n_heads, paper ? 1 : 8);
    Tensor x = Tensor::randn({2, 11, 16}, gen, DType::F64);
    const double err = max_rel(m.forward(x).to_vector(), reference(m, x));
    std::printf("mamba2%s vs loop reference: max rel err %.3g\n", paper ? "-paper" : "", err);
    EXPECT_LT(err, 1e-12);
  }
}

TEST(Mamba2Forms, QuadraticChunkedAndStepsAgree) {
  for (bool paper : {false, true})
    for (double dt_shift : {0.0, 3.0}) {  // init decays (a in [-1.6, -1e-3]) and strong ones (~ -50)
      Generator gen(7);
      Mamba2 m(16, tiny_options(paper), gen, kF64);
      shift_param(m.dt_bias, dt_shift);
      Tensor x = Tensor::randn({2, 19, 16}, gen, DType::F64);
      NoGradGuard no_grad;
      Tensor quad = m.forward_form(x, ScanForm::kQuadratic, MixerState{}, nullptr);
      double worst = max_rel(run_steps(m, x), quad);
      EXPECT_LT(worst, 1e-10) << "steps";
      for (int64_t chunk : {1, 3, 4, 7, 16, 19, 64}) {
        m.chunk_size = chunk;
        const double e = max_rel(m.forward(x), quad);
        EXPECT_LT(e, 1e-10) << "chunk " << chunk;
        worst = std::max(worst, e);
      }
      std::printf("mamba2%s dt_bias%+.0f: quadratic vs chunked / steps max rel err %.3g\n",
                  paper ? "-paper" : "", dt_shift, worst);
    }
}

// The SSD scan alone (no D skip to hide in): quadratic == chunked == steps, with and without an
// incoming state, for q, k shared by the heads (ngroups 1) and per head; final states agree too.
TEST(Mamba2Forms, SsdScanFormsAgree) {
  const int64_t B = 2, H = 3, T = 21, P = 4, N = 5;
  Generator gen(31);
  for (int64_t G : {int64_t(1), H})
    for (double dt_lo : {1e-3, 1.0}) {  // realistic dt ~ exp U[log 1e-3, log 1e-1], strong dt in [1, 3]
      const double dt_hi = dt_lo < 0.5 ? 1e-1 : 3.0;
      Tensor dt = exp(Tensor::uniform({B, H, T}, gen, std::log(dt_lo), std::log(dt_hi), DType::F64));
      Tensor A = neg(Tensor::uniform({1, H, 1}, gen, 1.0, 16.0, DType::F64));
      Tensor a = A * dt;
      Tensor q = Tensor::randn({B, G, T, N}, gen, DType::F64);
      Tensor k = Tensor::randn({B, G, T, N}, gen, DType::F64);
      Tensor v = Tensor::randn({B, H, T, P}, gen, DType::F64) * dt.unsqueeze(-1);
      Tensor s0 = Tensor::randn({B, H, P, N}, gen, DType::F64);
      auto steps = [&](const Tensor& init, Tensor* s_end) {
        Tensor s = init;
        std::vector<Tensor> ys;
        auto at = [](const Tensor& u, int64_t t) { return u.narrow(2, t, 1).squeeze(2); };
        for (int64_t t = 0; t < T; ++t)
          ys.push_back(ssd_step(at(q, t), at(k, t), at(v, t), at(a, t), s).unsqueeze(2));
        *s_end = s;
        return concat(ys, 2);
      };
      Tensor s_zero, s_init;
      Tensor y_zero = steps(Tensor(), &s_zero), y_init = steps(s0, &s_init);
      double worst = max_rel(ssd_quadratic(q, k, v, a), y_zero);
      for (int64_t chunk : {1, 3, 4, 8, 21, 64}) {
        Tensor s1, s2;
        worst = std::max(worst, max_rel(ssd_chunked(q, k, v, a, chunk, Tensor(), &s1), y_zero));
        worst = std::max(worst, max_rel(s1, s_zero));
        worst = std::max(worst, max_rel(ssd_chunked(q, k, v, a, chunk, s0, &s2), y_init));
        worst = std::max(worst, max_rel(s2, s_init));
      }
      std::printf("ssd scan G=%lld dt in [%g, %g]: max rel err %.3g\n", (long long)G, dt_lo, dt_hi,
                  worst);
      EXPECT_LT(worst, 1e-10);
    }
}

TEST(Mamba2Sharding, OutputsAndGradientsMatchTheFullRun) {
  for (bool paper : {false, true}) {
    Generator gen(paper ? 12 : 11);
    Mamba2 m(16, tiny_options(paper), gen, kF64);
    shift_param(m.dt_bias, 1.0);
    Tensor x = Tensor::randn({2, 17, 16}, gen, DType::F64);
    Tensor r = Tensor::randn({2, 17, 16}, gen, DType::F64);
    double worst = 0;
    // 1- and 2-token shards are shorter than the conv carry of d_conv 4.
    for (const std::vector<int64_t>& lens :
         {std::vector<int64_t>{9, 8}, {1, 2, 14}, {6, 1, 10}, {3, 7, 2, 5}})
      worst = std::max(worst, check_sharding(m, x, r, lens));
    std::printf("mamba2%s sharding: max rel err (outputs, d input, d params) %.3g\n",
                paper ? "-paper" : "", worst);
  }
}

TEST(Mamba2Grad, FiniteDifferences) {
  for (bool paper : {false, true}) {
    Generator gen(paper ? 22 : 21);
    Mamba2Options o = tiny_options(paper);
    o.chunk_size = 3;
    Mamba2 m(8, o, gen, kF64);
    shift_param(m.dt_bias, 1.0);
    const int64_t B = 2, T = 7, K = m.d_conv - 1;
    Tensor x = Tensor::randn({B, T, 8}, gen, DType::F64).set_requires_grad(true);
    Tensor r = Tensor::randn({B, T, 8}, gen, DType::F64);
    // A non-zero incoming state, so its gradient (what the previous shard receives) is checked too.
    Tensor s0 = Tensor::randn({B, m.n_heads, m.head_dim, m.d_state}, gen, DType::F64, Device::cpu(),
                              0.0, 0.3)
                    .set_requires_grad(true);
    Tensor c0 = Tensor::randn({B, K, m.conv_dim}, gen, DType::F64).set_requires_grad(true);
    auto f = [&] {
      MixerState in, out;
      in.set("ssm", s0);
      in.set("conv", c0);
      Tensor y = m.forward_stateful(x, in, &out);
      return sum(y * r) + sum(square(out.get("ssm"))) + sum(out.get("conv"));
    };
    std::vector<Tensor> leaves{x, s0, c0};
    std::vector<std::string> names{"x", "state ssm", "state conv"};
    for (auto& [n, p] : m.named_parameters()) {
      leaves.push_back(p);
      names.push_back(n);
    }
    const double worst = fd_check(f, leaves, names);
    std::printf("mamba2%s finite differences: max rel err %.3g\n", paper ? "-paper" : "", worst);
  }
}

TEST(Mamba2Params, CountMatchesTheBuiltLayer) {
  for (bool paper : {false, true}) {
    Mamba2Options o = tiny_options(paper);
    Generator gen(0);
    Mamba2 m(16, o, gen, kF64);
    EXPECT_EQ(Mamba2::count_parameters(16, o), m.num_parameters());
    std::vector<std::string> names;
    for (auto& [n, p] : m.named_parameters()) names.push_back(n);
    // Own parameters first, then the children's (Module's order); init draws follow mamba_ssm.
    EXPECT_EQ(names, (std::vector<std::string>{"conv_weight", "conv_bias", "dt_bias", "A_log", "D",
                                               "norm_weight", "in_proj.weight", "out_proj.weight"}));
  }
  // The paper-size layers: d 1024, full (16 heads, d_state 128) and one head + gated branch.
  for (bool paper : {false, true}) {
    Mamba2Options o = mamba2_preset(paper ? "mamba2-paper" : "mamba2");
    const int64_t C = 1024, H = paper ? 1 : 16, S = paper ? 64 : 1024, W = S + 256;
    EXPECT_EQ(Mamba2::count_parameters(C, o),
              C * (2 * C + 256 + H) + W * (o.d_conv + 1) + 3 * H + S + C * C);
  }
}

TEST(Mamba2Params, InitFollowsMambaSsm) {
  Generator gen(5);
  Mamba2 m(64, mamba2_preset("mamba2"), gen, kF64);
  ASSERT_EQ(m.n_heads, 1);
  Generator gen2(6);
  Mamba2Options o = mamba2_preset("mamba2");
  o.expand = 16;  // 16 heads: enough draws to see the ranges
  Mamba2 w(64, o, gen2, kF64);
  for (double a : w.A_log.to_vector()) {
    EXPECT_GE(a, 0.0);
    EXPECT_LT(a, std::log(16.0));
  }
  for (double b : w.dt_bias.to_vector()) {
    const double dt = std::log1p(std::exp(b));
    EXPECT_GE(dt, 1e-3 * (1 - 1e-9));
    EXPECT_LE(dt, 1e-1 * (1 + 1e-9));
  }
  for (double d : w.D.to_vector()) EXPECT_EQ(d, 1.0);
  EXPECT_EQ(w.decode_state_values(123), 16 * 64 * 128 + 3 * (1024 + 256));
}

TEST(Mamba2Params, BadOptionsThrow) {
  Generator gen(0);
  Mamba2Options o = mamba2_preset("mamba2");
  o.head_dim = 48;  // 64 % 48 != 0
  EXPECT_THROW(Mamba2(64, o, gen), Error);
  o = mamba2_preset("mamba2-paper");
  o.n_ssm_heads = 2;  // 128 SSM channels > d_inner 64
  EXPECT_THROW(Mamba2(64, o, gen), Error);
  EXPECT_THROW(mamba2_preset("mamba3"), Error);
}

}  // namespace
}  // namespace coil
