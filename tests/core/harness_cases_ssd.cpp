// Harness cases: the fused Mamba-2 SSD in chunks (ops SsdChunked / SsdChunkedBackward). Each case checks y
// and the final state against the token-by-token recurrence S_t = e^{a_t} S_{t-1} + v_t k_t^T,
// y_t = S_t q_t in double (no chunks at all), and the f64 gradient check covers q, k, v, a and s0 through
// both outputs (so through the final state's gradient too: the backward kernel, B kind). Shapes span
// G = 1 (q, k shared by every head) and G = H, a zero and a given initial state, T not a multiple of the
// chunk, one chunk longer than T, and chunk 1.
// Below the cases, the fused op is compared in f64 with the composed forms of layers/ssm_scan.h
// (ssd_chunked_composed, ssd_quadratic): y, the final state and every gradient to ~1e-12.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/ssm_scan.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

struct Geo {
  int64_t B, H, G, T, N, P, chunk;
};

// x: q, k (B, G, T, N), v (B, H, T, P), a (B, H, T), s0 (B, H, P, N) when with_s0.
HOuts reference(const Geo& g, const HOuts& x, bool with_s0) {
  HostTensor y = HostTensor::zeros({g.B, g.H, g.T, g.P}), sT = HostTensor::zeros({g.B, g.H, g.P, g.N});
  const int64_t hpg = g.H / g.G;
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.H; ++h) {
      std::vector<double> S(size_t(g.P * g.N), 0.0);
      if (with_s0)
        for (int64_t i = 0; i < g.P * g.N; ++i) S[size_t(i)] = x[4][(b * g.H + h) * g.P * g.N + i];
      const int64_t qk0 = (b * g.G + h / hpg) * g.T * g.N;
      for (int64_t t = 0; t < g.T; ++t) {
        const double e = std::exp(x[3][(b * g.H + h) * g.T + t]);
        for (int64_t p = 0; p < g.P; ++p) {
          const double vp = x[2][((b * g.H + h) * g.T + t) * g.P + p];
          double acc = 0.0;
          for (int64_t n = 0; n < g.N; ++n) {
            double& s = S[size_t(p * g.N + n)];
            s = e * s + vp * x[1][qk0 + t * g.N + n];
            acc += s * x[0][qk0 + t * g.N + n];
          }
          y[((b * g.H + h) * g.T + t) * g.P + p] = acc;
        }
      }
      for (int64_t i = 0; i < g.P * g.N; ++i) sT[(b * g.H + h) * g.P * g.N + i] = S[size_t(i)];
    }
  return HOuts{y, sT};
}

OpCase ssd_case(std::string name, Geo g, bool with_s0) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::SsdChunked, Op::SsdChunkedBackward};
  // a = dt A as Mamba-2 forms it: negative, from weak to strong decay per token.
  c.inputs = {normal({g.B, g.G, g.T, g.N}), normal({g.B, g.G, g.T, g.N}), normal({g.B, g.H, g.T, g.P}),
              uniform({g.B, g.H, g.T}, -1.5, -0.01)};
  if (with_s0) c.inputs.push_back(normal({g.B, g.H, g.P, g.N}));
  c.bf16_tol_scale = 2.0;
  c.run = [g, with_s0](const Outs& x) {
    Tensor sT;
    Tensor y = ssd_scan(x[0], x[1], x[2], x[3], g.chunk, with_s0 ? x[4] : Tensor(), &sT);
    return Outs{y, sT};
  };
  c.reference = [g, with_s0](const HOuts& x) { return reference(g, x, with_s0); };
  return c;
}

// --- the fused op against the composed forms, f64 --------------------------------------------------

struct Leaves {
  Tensor q, k, v, a, s0;
};
Leaves make_leaves(const Geo& g, bool with_s0, uint64_t seed) {
  Generator gen(seed);
  auto leaf = [](Tensor t) { return t.detach().set_requires_grad(true); };
  Leaves l;
  l.q = leaf(Tensor::randn({g.B, g.G, g.T, g.N}, gen, DType::F64));
  l.k = leaf(Tensor::randn({g.B, g.G, g.T, g.N}, gen, DType::F64));
  l.v = leaf(Tensor::randn({g.B, g.H, g.T, g.P}, gen, DType::F64));
  l.a = leaf(Tensor::uniform({g.B, g.H, g.T}, gen, -1.5, -0.01, DType::F64));
  if (with_s0) l.s0 = leaf(Tensor::randn({g.B, g.H, g.P, g.N}, gen, DType::F64));
  return l;
}

// y, sT and the gradients of q, k, v, a, s0 from L = <y, ry> + <sT, rs>.
std::vector<std::vector<double>> run_form(const Leaves& l, const Tensor& ry, const Tensor& rs, bool with_sT,
                                          const std::function<Tensor(const Leaves&, Tensor*)>& form) {
  Tensor sT;
  Tensor y = form(l, with_sT ? &sT : nullptr);
  Tensor loss = sum(y * ry);
  if (with_sT) loss = loss + sum(sT * rs);
  loss.backward();
  std::vector<std::vector<double>> out = {y.to_vector(), with_sT ? sT.to_vector() : std::vector<double>()};
  for (const Tensor* t : {&l.q, &l.k, &l.v, &l.a, &l.s0})
    out.push_back(t->defined() ? t->grad().to_vector() : std::vector<double>());
  return out;
}

void expect_close(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& want,
                  const std::string& what) {
  const char* names[] = {"y", "sT", "dq", "dk", "dv", "da", "ds0"};
  ASSERT_EQ(got.size(), want.size());
  for (size_t o = 0; o < got.size(); ++o) {
    ASSERT_EQ(got[o].size(), want[o].size()) << what << " " << names[o];
    double scale = 1.0, err = 0.0;
    for (size_t i = 0; i < want[o].size(); ++i) {
      scale = std::max(scale, std::fabs(want[o][i]));
      err = std::max(err, std::fabs(got[o][i] - want[o][i]));
    }
    EXPECT_LE(err, 1e-12 * scale) << what << ": " << names[o] << " max error " << err << " (scale " << scale << ")";
  }
}

TEST(SsdFusedVsComposed, MatchesComposedChunkedAndQuadraticF64) {
  const Geo geos[] = {{2, 3, 1, 11, 5, 4, 4}, {1, 2, 2, 9, 3, 6, 3}, {2, 4, 1, 16, 4, 3, 16}, {1, 2, 2, 7, 2, 2, 1}};
  uint64_t seed = 11;
  for (const Geo& g : geos)
    for (bool with_s0 : {false, true}) {
      const std::string what = "B=" + std::to_string(g.B) + " H=" + std::to_string(g.H) + " G=" +
                               std::to_string(g.G) + " T=" + std::to_string(g.T) + " chunk=" +
                               std::to_string(g.chunk) + (with_s0 ? " s0" : "");
      Generator gen(seed + 100);
      Tensor ry = Tensor::randn({g.B, g.H, g.T, g.P}, gen, DType::F64);
      Tensor rs = Tensor::randn({g.B, g.H, g.P, g.N}, gen, DType::F64);
      auto fused = [&](const Leaves& l, Tensor* s) { return ssd_chunked(l.q, l.k, l.v, l.a, g.chunk, l.s0, s); };
      auto composed = [&](const Leaves& l, Tensor* s) {
        return ssd_chunked_composed(l.q, l.k, l.v, l.a, g.chunk, l.s0, s);
      };
      const auto got = run_form(make_leaves(g, with_s0, seed), ry, rs, true, fused);
      const auto want = run_form(make_leaves(g, with_s0, seed), ry, rs, true, composed);
      expect_close(got, want, what + " vs ssd_chunked_composed");
      if (!with_s0) {
        // The quadratic form has no state: y and the input gradients from a zero start.
        const auto got_y = run_form(make_leaves(g, false, seed), ry, rs, false, fused);
        const auto want_y = run_form(make_leaves(g, false, seed), ry, rs, false, [&](const Leaves& l, Tensor*) {
          return ssd_quadratic(l.q, l.k, l.v, l.a);
        });
        expect_close(got_y, want_y, what + " vs ssd_quadratic");
      }
      ++seed;
    }
}

TEST(SsdFusedVsComposed, RejectsBadShapes) {
  Tensor q = Tensor::zeros({1, 2, 5, 3}, DType::F64), v = Tensor::zeros({1, 3, 5, 4}, DType::F64);
  Tensor a = Tensor::zeros({1, 3, 5}, DType::F64);
  EXPECT_THROW(ssd_scan(q, q, v, a, 4, Tensor()), Error);  // G = 2 with H = 3
  Tensor q1 = Tensor::zeros({1, 1, 5, 3}, DType::F64);
  EXPECT_THROW(ssd_scan(q1, q1, v, a, 0, Tensor()), Error);  // chunk 0
  EXPECT_THROW(ssd_scan(q1, q1, v, a, 4, Tensor::zeros({1, 3, 3, 4}, DType::F64)), Error);  // s0 (P, N) swapped
}

}  // namespace

void add_ssd_cases(std::vector<OpCase>& cases) {
  cases.push_back(ssd_case("ssd_shared_qk_zero_state", {2, 3, 1, 10, 4, 3, 4}, false));
  cases.push_back(ssd_case("ssd_shared_qk_s0", {1, 2, 1, 9, 3, 2, 4}, true));
  cases.push_back(ssd_case("ssd_per_head_qk_s0", {2, 2, 2, 7, 3, 4, 3}, true));
  cases.push_back(ssd_case("ssd_one_chunk", {1, 2, 2, 5, 2, 3, 8}, true));
  cases.push_back(ssd_case("ssd_chunk_1", {1, 2, 1, 4, 2, 2, 1}, true));
}

}  // namespace coil::harness
