// Mamba-1 (S6): the layer against a plain-loop reference, quadratic (one chunk) == chunked (several
// chunk sizes) == token-by-token steps, sequence sharding with state passing (outputs and gradients),
// finite-difference gradients, init and the parameter count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "layers/mamba1.h"
#include "layers/ssm_scan.h"
#include "mamba_test_util.h"

namespace coil {
namespace {
using namespace mamba_test;

Mamba1Options tiny_options() {
  Mamba1Options o;
  o.d_state = 5;
  o.dt_rank = 3;
  o.chunk_size = 4;
  return o;  // d_conv 4, expand 2
}

double silu_d(double v) { return v / (1 + std::exp(-v)); }
double softplus_d(double v) { return v > 30 ? v : std::log1p(std::exp(v)); }

// Section 8 (mamba_ssm Mamba) as loops over (batch, token, channel, state).
std::vector<double> reference(const Mamba1& m, const Tensor& x_t) {
  const int64_t B = x_t.size(0), T = x_t.size(1), C = m.dim, Di = m.d_inner, N = m.d_state;
  const int64_t K = m.d_conv, R = m.dt_rank, X = R + 2 * N;
  auto x = x_t.to_vector(), win = m.in_proj->weight.to_vector(), cw = m.conv_weight.to_vector();
  auto cb = m.conv_bias.to_vector(), wx = m.x_proj->weight.to_vector();
  auto wdt = m.dt_proj->weight.to_vector(), bdt = m.dt_proj->bias.to_vector();
  auto alog = m.A_log.to_vector(), dd = m.D.to_vector(), wout = m.out_proj->weight.to_vector();
  std::vector<double> out(static_cast<size_t>(B * T * C), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> xz(static_cast<size_t>(T * 2 * Di), 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < 2 * Di; ++n)
        for (int64_t c = 0; c < C; ++c) xz[t * 2 * Di + n] += x[(b * T + t) * C + c] * win[n * C + c];
    std::vector<double> h(static_cast<size_t>(Di * N), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> u(static_cast<size_t>(Di)), dbc(static_cast<size_t>(X), 0.0);
      for (int64_t d = 0; d < Di; ++d) {
        double acc = cb[d];
        for (int64_t k = 0; k < K; ++k) {
          const int64_t src = t - (K - 1) + k;
          if (src >= 0) acc += cw[d * K + k] * xz[src * 2 * Di + d];
        }
        u[d] = silu_d(acc);
      }
      for (int64_t j = 0; j < X; ++j)
        for (int64_t d = 0; d < Di; ++d) dbc[j] += u[d] * wx[j * Di + d];
      std::vector<double> y(static_cast<size_t>(Di));
      for (int64_t d = 0; d < Di; ++d) {
        double raw = bdt[d];
        for (int64_t r = 0; r < R; ++r) raw += dbc[r] * wdt[d * R + r];
        const double dt = softplus_d(raw);
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          double& s = h[d * N + n];
          s = std::exp(-dt * std::exp(alog[d * N + n])) * s + dt * dbc[R + n] * u[d];
          acc += s * dbc[R + N + n];
        }
        y[d] = (acc + dd[d] * u[d]) * silu_d(xz[t * 2 * Di + Di + d]);
      }
      for (int64_t c = 0; c < C; ++c)
        for (int64_t d = 0; d < Di; ++d) out[(b * T + t) * C + c] += y[d] * wout[c * Di + d];
    }
  }
  return out;
}

TEST(Mamba1Math, MatchesLoopReference) {
  Generator gen(1);
  Mamba1 m(8, tiny_options(), gen, kF64);
  Tensor x = Tensor::randn({2, 10, 8}, gen, DType::F64);
  const double err = max_rel(m.forward(x).to_vector(), reference(m, x));
  std::printf("mamba1 vs loop reference: max rel err %.3g\n", err);
  EXPECT_LT(err, 1e-12);
}

TEST(Mamba1Forms, QuadraticChunkedAndStepsAgree) {
  for (double dt_shift : {0.0, 3.0}) {  // init decays (dt A in [-1.6 .. -1e-3]) and strong ones
    Generator gen(7);
    Mamba1 m(8, tiny_options(), gen, kF64);
    shift_param(m.dt_proj->bias, dt_shift);
    Tensor x = Tensor::randn({2, 17, 8}, gen, DType::F64);
    NoGradGuard no_grad;
    Tensor quad = m.forward_form(x, ScanForm::kQuadratic, MixerState{}, nullptr);
    Tensor rec = m.forward_form(x, ScanForm::kRecurrent, MixerState{}, nullptr);
    double worst = std::max(max_rel(run_steps(m, x), quad), max_rel(rec, quad));
    EXPECT_LT(worst, 1e-10) << "steps";
    for (int64_t chunk : {1, 3, 4, 6, 16, 64}) {
      m.chunk_size = chunk;
      const double e = max_rel(m.forward(x), quad);
      EXPECT_LT(e, 1e-10) << "chunk " << chunk;
      worst = std::max(worst, e);
    }
    std::printf("mamba1 dt_bias%+.0f: quadratic vs chunked / steps max rel err %.3g\n", dt_shift,
                worst);
  }
}

// The selective scan alone (no D skip to hide in): one chunk == chunked == steps, with and without an
// incoming state; final states agree too.
TEST(Mamba1Forms, SelectiveScanFormsAgree) {
  const int64_t B = 2, T = 19, D = 6, N = 4;
  Generator gen(31);
  for (double dt_lo : {1e-3, 1.0}) {  // realistic dt ~ exp U[log 1e-3, log 1e-1], strong dt in [1, 3]
    const double dt_hi = dt_lo < 0.5 ? 1e-1 : 3.0;
    Tensor dt = exp(Tensor::uniform({B, T, D}, gen, std::log(dt_lo), std::log(dt_hi), DType::F64));
    std::vector<double> a(static_cast<size_t>(D * N));
    for (int64_t i = 0; i < D * N; ++i) a[size_t(i)] = -double(i % N + 1);  // S4D-real init
    Tensor A = Tensor::from_vector(a, {D, N}, DType::F64);
    Tensor u = Tensor::randn({B, T, D}, gen, DType::F64);
    Tensor Bm = Tensor::randn({B, T, N}, gen, DType::F64), Cm = Tensor::randn({B, T, N}, gen, DType::F64);
    Tensor h0 = Tensor::randn({B, D, N}, gen, DType::F64);
    auto steps = [&](const Tensor& init, Tensor* h_end) {
      Tensor h = init;
      std::vector<Tensor> ys;
      auto at = [](const Tensor& x, int64_t t) { return x.narrow(1, t, 1).squeeze(1); };
      for (int64_t t = 0; t < T; ++t)
        ys.push_back(selective_scan_step(at(u, t), at(dt, t), A, at(Bm, t), at(Cm, t), h).unsqueeze(1));
      *h_end = h;
      return concat(ys, 1);
    };
    Tensor h_zero, h_init;
    Tensor y_zero = steps(Tensor(), &h_zero), y_init = steps(h0, &h_init);
    double worst = 0;
    for (int64_t chunk : {1, 3, 4, 8, 19, 64}) {
      Tensor h1, h2;
      worst = std::max(worst, max_rel(selective_scan_chunked(u, dt, A, Bm, Cm, chunk, Tensor(), &h1), y_zero));
      worst = std::max(worst, max_rel(h1, h_zero));
      worst = std::max(worst, max_rel(selective_scan_chunked(u, dt, A, Bm, Cm, chunk, h0, &h2), y_init));
      worst = std::max(worst, max_rel(h2, h_init));
    }
    std::printf("selective scan dt in [%g, %g]: max rel err %.3g\n", dt_lo, dt_hi, worst);
    EXPECT_LT(worst, 1e-10);
  }
}

// The fused op (selective_scan: ops SelectiveScan / SelectiveScanBackward) against the composed
// chunked form it replaces in Mamba1's forward: y, the final state and every gradient (u, dt, A, B, C,
// h0 through both outputs), with and without an incoming state, over several 64-token chunks of the
// fused backward's recomputation, in f64 (to rounding) and f32.
TEST(Mamba1Fused, SelectiveScanMatchesComposed) {
  const int64_t B = 2, T = 150, D = 5, N = 4;
  for (DType t : {DType::F64, DType::F32}) {
    Generator gen(41);
    auto leaf = [&](Tensor x) { return x.to(t).set_requires_grad(true); };
    Tensor dt = leaf(exp(Tensor::uniform({B, T, D}, gen, std::log(1e-3), std::log(1.0), DType::F64)));
    Tensor A = leaf(scale(exp(Tensor::uniform({D, N}, gen, 0.0, std::log(16.0), DType::F64)), -1.0));
    Tensor u = leaf(Tensor::randn({B, T, D}, gen, DType::F64));
    Tensor Bm = leaf(Tensor::randn({B, T, N}, gen, DType::F64)), Cm = leaf(Tensor::randn({B, T, N}, gen, DType::F64));
    Tensor h0 = leaf(Tensor::randn({B, D, N}, gen, DType::F64));
    Tensor ry = Tensor::randn({B, T, D}, gen, DType::F64).to(t), rh = Tensor::randn({B, D, N}, gen, DType::F64).to(t);
    const double tol = t == DType::F64 ? 1e-11 : 2e-4;
    for (bool with_h0 : {false, true}) {
      std::vector<Tensor> leaves{u, dt, A, Bm, Cm};
      if (with_h0) leaves.push_back(h0);
      auto run = [&](bool fused) {
        for (const Tensor& l : leaves) l.zero_grad();
        Tensor hT;
        Tensor y = fused ? selective_scan(u, dt, A, Bm, Cm, with_h0 ? h0 : Tensor(), &hT)
                         : selective_scan_chunked(u, dt, A, Bm, Cm, 16, with_h0 ? h0 : Tensor(), &hT);
        (sum(y * ry) + sum(hT * rh)).backward();
        std::vector<std::vector<double>> out{y.to_vector(), hT.to_vector()};
        for (const Tensor& l : leaves) out.push_back(l.grad().to_vector());
        return out;
      };
      const auto want = run(false), got = run(true);
      const char* names[] = {"y", "hT", "du", "ddt", "dA", "dB", "dC", "dh0"};
      for (size_t i = 0; i < want.size(); ++i) {
        const double e = max_rel(got[i], want[i]);
        EXPECT_LT(e, tol) << dtype_name(t) << (with_h0 ? " h0 " : " zero state ") << names[i];
        std::printf("fused vs composed %s%s %-3s max rel err %.3g\n", dtype_name(t),
                    with_h0 ? " h0" : "", names[i], e);
      }
    }
  }
}

TEST(Mamba1Sharding, OutputsAndGradientsMatchTheFullRun) {
  Generator gen(11);
  Mamba1 m(8, tiny_options(), gen, kF64);
  shift_param(m.dt_proj->bias, 1.0);
  Tensor x = Tensor::randn({2, 15, 8}, gen, DType::F64);
  Tensor r = Tensor::randn({2, 15, 8}, gen, DType::F64);
  double worst = 0;
  for (const std::vector<int64_t>& lens :
       {std::vector<int64_t>{8, 7}, {1, 2, 12}, {5, 1, 9}, {3, 6, 2, 4}})
    worst = std::max(worst, check_sharding(m, x, r, lens));
  std::printf("mamba1 sharding: max rel err (outputs, d input, d params) %.3g\n", worst);
}

TEST(Mamba1Grad, FiniteDifferences) {
  Generator gen(21);
  Mamba1Options o = tiny_options();
  o.chunk_size = 3;
  Mamba1 m(6, o, gen, kF64);
  shift_param(m.dt_proj->bias, 1.0);
  const int64_t B = 2, T = 7;
  Tensor x = Tensor::randn({B, T, 6}, gen, DType::F64).set_requires_grad(true);
  Tensor r = Tensor::randn({B, T, 6}, gen, DType::F64);
  Tensor h0 = Tensor::randn({B, m.d_inner, m.d_state}, gen, DType::F64, Device::cpu(), 0.0, 0.3)
                  .set_requires_grad(true);
  Tensor c0 = Tensor::randn({B, m.d_conv - 1, m.d_inner}, gen, DType::F64).set_requires_grad(true);
  auto f = [&] {
    MixerState in, out;
    in.set("ssm", h0);
    in.set("conv", c0);
    Tensor y = m.forward_stateful(x, in, &out);
    return sum(y * r) + sum(square(out.get("ssm"))) + sum(out.get("conv"));
  };
  std::vector<Tensor> leaves{x, h0, c0};
  std::vector<std::string> names{"x", "state ssm", "state conv"};
  for (auto& [n, p] : m.named_parameters()) {
    leaves.push_back(p);
    names.push_back(n);
  }
  const double worst = fd_check(f, leaves, names);
  std::printf("mamba1 finite differences: max rel err %.3g\n", worst);
}

TEST(Mamba1Params, InitAndCount) {
  Generator gen(3);
  Mamba1Options o;  // d_state 16, d_conv 4, expand 2, dt_rank ceil(C / 16)
  Mamba1 m(40, o, gen, kF64);
  EXPECT_EQ(m.d_inner, 80);
  EXPECT_EQ(m.dt_rank, 3);
  EXPECT_EQ(Mamba1::count_parameters(40, o), m.num_parameters());
  EXPECT_EQ(m.num_parameters(), 40 * 160 + 80 * 5 + 80 * (3 + 32) + (3 * 80 + 80) + 80 * 16 + 80 +
                                    80 * 40);
  auto a = m.A_log.to_vector();
  for (int64_t d : {0, 79})
    for (int64_t n = 0; n < 16; ++n) EXPECT_NEAR(a[size_t(d * 16 + n)], std::log(n + 1.0), 1e-15);
  for (double b : m.dt_proj->bias.to_vector()) {
    const double dt = std::log1p(std::exp(b));
    EXPECT_GE(dt, 1e-3 * (1 - 1e-9));
    EXPECT_LE(dt, 1e-1 * (1 + 1e-9));
  }
  const double wb = 1 / std::sqrt(3.0);
  for (double w : m.dt_proj->weight.to_vector()) EXPECT_LE(std::abs(w), wb);
  EXPECT_EQ(m.decode_state_values(1000), 80 * 16 + 3 * 80);
  o.d_conv = 1;
  EXPECT_THROW(Mamba1(40, o, gen), Error);
}

}  // namespace
}  // namespace coil
