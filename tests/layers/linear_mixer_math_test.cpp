// The linattn math (spec sections 2, 5-7): the quadratic form against plain loops of the spec's
// formula, the symmetric feature map, quadratic == chunked (chunk sizes not dividing T) == recurrent
// steps for power 1 / 2, sm / output norm, no / moderate / strong decay, sharding with state passing
// (values and gradients), the zero-denominator rule and a finite-difference check of the chunked form.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "linear_mixer_test_util.h"

namespace coil {
namespace {

using namespace linear_test;

struct Inputs {
  Tensor q, k, v, a;  // (B, T, H, D), (B, T, H, D), (B, T, H, Dv), (B, T, H) or undefined
};

enum class Decay { None, Weak, Moderate, Strong };

// q, k >= 0 when `positive` (power 1 with sm norm needs non-negative weights).
Inputs make_inputs(int64_t B, int64_t T, int64_t H, int64_t D, int64_t Dv, Decay decay, bool positive,
                   uint64_t seed) {
  Generator g(seed);
  Inputs in;
  in.q = randn64({B, T, H, D}, g);
  in.k = randn64({B, T, H, D}, g);
  if (positive) {
    in.q = relu(in.q) + scale(Tensor::ones({B, T, H, D}, DType::F64), 0.05);
    in.k = relu(in.k) + scale(Tensor::ones({B, T, H, D}, DType::F64), 0.05);
  }
  in.v = randn64({B, T, H, Dv}, g);
  if (decay == Decay::Weak) in.a = neg(softplus(scale(randn64({B, T, H}, g), 1.0, -4.0)));
  if (decay == Decay::Moderate) in.a = neg(softplus(randn64({B, T, H}, g)));
  if (decay == Decay::Strong) in.a = neg(softplus(scale(randn64({B, T, H}, g), 2.0, 3.0)));
  return in;
}

// The spec's formula as loops: w_ij = (s q_i.k_j)^p e^{Acs_i - Acs_j}, j <= i.
Tensor loop_reference(const Inputs& in, const LinAttnOptions& o) {
  const int64_t B = in.q.size(0), T = in.q.size(1), H = in.q.size(2), D = in.q.size(3),
                Dv = in.v.size(3);
  auto q = in.q.to_vector(), k = in.k.to_vector(), v = in.v.to_vector();
  std::vector<double> a =
      in.a.defined() ? in.a.to_vector() : std::vector<double>(size_t(B * T * H), 0.0);
  std::vector<double> y(size_t(B * T * H * Dv), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> acs(static_cast<size_t>(T));
      double run = 0;
      for (int64_t t = 0; t < T; ++t) acs[size_t(t)] = run += a[size_t((b * T + t) * H + h)];
      for (int64_t i = 0; i < T; ++i) {
        double den = 0;
        std::vector<double> num(size_t(Dv), 0.0);
        for (int64_t j = 0; j <= i; ++j) {
          double u = 0;
          for (int64_t d = 0; d < D; ++d)
            u += q[size_t(((b * T + i) * H + h) * D + d)] * k[size_t(((b * T + j) * H + h) * D + d)];
          u *= o.scale;
          const double w =
              (o.power == LinPower::Two ? u * u : u) * std::exp(acs[size_t(i)] - acs[size_t(j)]);
          den += w;
          for (int64_t e = 0; e < Dv; ++e)
            num[size_t(e)] += w * v[size_t(((b * T + j) * H + h) * Dv + e)];
        }
        for (int64_t e = 0; e < Dv; ++e)
          y[size_t(((b * T + i) * H + h) * Dv + e)] =
              o.sm_norm ? num[size_t(e)] / std::max(den, kDenominatorEps) : num[size_t(e)];
      }
    }
  return Tensor::from_vector(y, {B, T, H, Dv}, DType::F64);
}

Tensor run_steps(const Inputs& in, const LinAttnOptions& o, LinAttnState* final_state = nullptr) {
  LinAttnState st;
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < in.q.size(1); ++t)
    ys.push_back(linattn_step(in.q.narrow(1, t, 1), in.k.narrow(1, t, 1), in.v.narrow(1, t, 1),
                              in.a.defined() ? in.a.narrow(1, t, 1) : Tensor(), o, st));
  if (final_state) *final_state = st;
  return concat(ys, 1);
}

struct MathCase {
  LinPower power;
  bool sm;
  Decay decay;
};

std::vector<MathCase> all_cases() {
  std::vector<MathCase> cs;
  for (LinPower p : {LinPower::One, LinPower::Two})
    for (bool sm : {true, false})
      for (Decay d : {Decay::None, Decay::Weak, Decay::Moderate, Decay::Strong})
        cs.push_back({p, sm, d});
  return cs;
}

TEST(LinearMath, SymmetricFeatureMapGivesSquaredScores) {
  Generator g(1);
  Tensor q = randn64({3, 64}, g), k = randn64({3, 64}, g);
  Tensor pq = linattn_features(q, LinPower::Two), pk = linattn_features(k, LinPower::Two);
  EXPECT_EQ(pq.size(1), 2080);
  EXPECT_EQ(linattn_feature_dim(LinPower::Two, 64), 2080);
  Tensor want = square(sum(q * k, 1));
  EXPECT_LT(max_rel(sum(pq * pk, 1), want), 1e-13);
}

TEST(LinearMath, QuadraticChunkedAndRecurrentAgree) {
  double worst = 0;
  uint64_t seed = 10;
  for (const MathCase& c : all_cases()) {
    LinAttnOptions o{c.power, c.sm, 1.0 / std::sqrt(4.0)};
    for (int64_t T : {7, 13}) {
      const bool positive = c.power == LinPower::One && c.sm;
      Inputs in = make_inputs(2, T, 2, 4, 3, c.decay, positive, seed++);
      Tensor ref = loop_reference(in, o);
      Tensor quad = linattn_quadratic(in.q, in.k, in.v, in.a, o);
      EXPECT_LT(max_rel(quad, ref), 1e-12);
      worst = std::max(worst, max_rel(quad, ref));
      for (int64_t chunk : {1, 3, 4, 8, 64}) {
        Tensor ch = linattn_chunked(in.q, in.k, in.v, in.a, o, chunk, nullptr, nullptr);
        const double e = max_rel(ch, ref);
        worst = std::max(worst, e);
        EXPECT_LT(e, 1e-10) << "power " << int(c.power) << " sm " << c.sm << " decay " << int(c.decay)
                            << " T " << T << " chunk " << chunk;
      }
      const double e = max_rel(run_steps(in, o), ref);
      worst = std::max(worst, e);
      EXPECT_LT(e, 1e-10);
    }
  }
  std::printf("max relative error (loops, quadratic, chunked, recurrent): %.3g\n", worst);
}

// Chunked over shards of uneven length, each from the previous shard's final state, equals one run;
// the final states agree with the recurrent state; input gradients agree through the passed state.
TEST(LinearMath, ShardedStatePassingMatchesValuesAndGradients) {
  double worst = 0;
  uint64_t seed = 100;
  for (const MathCase& c : all_cases()) {
    if (c.decay == Decay::Weak) continue;
    LinAttnOptions o{c.power, c.sm, 0.5};
    const bool positive = c.power == LinPower::One && c.sm;
    Inputs in0 = make_inputs(1, 13, 2, 4, 3, c.decay, positive, seed++);
    Generator g(seed++);
    Tensor r = randn64({1, 13, 2, 3}, g);
    auto leaves = [&](Inputs& x) {
      x.q = in0.q.clone().set_requires_grad(true);
      x.k = in0.k.clone().set_requires_grad(true);
      x.v = in0.v.clone().set_requires_grad(true);
      if (in0.a.defined()) x.a = in0.a.clone().set_requires_grad(true);
    };
    Inputs full;
    leaves(full);
    LinAttnState st_full;
    Tensor y_full = linattn_chunked(full.q, full.k, full.v, full.a, o, 4, nullptr, &st_full);
    sum(y_full * r).backward();
    LinAttnState st_rec;
    run_steps(in0, o, &st_rec);
    worst = std::max(worst, max_rel(st_full.S, st_rec.S));
    EXPECT_LT(max_rel(st_full.S, st_rec.S), 1e-10);
    if (c.sm) {
      EXPECT_LT(max_rel(st_full.z, st_rec.z), 1e-10);
    }

    for (const std::vector<int64_t>& shards :
         {std::vector<int64_t>{5, 8}, {4, 1, 8}, {3, 3, 2, 5}}) {
      Inputs sh;
      leaves(sh);
      LinAttnState st;
      std::vector<Tensor> ys;
      int64_t off = 0;
      for (int64_t len : shards) {
        Tensor a = sh.a.defined() ? sh.a.narrow(1, off, len) : Tensor();
        ys.push_back(linattn_chunked(sh.q.narrow(1, off, len), sh.k.narrow(1, off, len),
                                     sh.v.narrow(1, off, len), a, o, 4, &st, &st));
        off += len;
      }
      Tensor y = concat(ys, 1);
      sum(y * r).backward();
      const double e =
          std::max({max_rel(y, y_full), max_rel(st.S, st_full.S), max_rel(sh.q.grad(), full.q.grad()),
                    max_rel(sh.k.grad(), full.k.grad()), max_rel(sh.v.grad(), full.v.grad()),
                    sh.a.defined() ? max_rel(sh.a.grad(), full.a.grad()) : 0.0});
      worst = std::max(worst, e);
      EXPECT_LT(e, 1e-10) << "shards " << shards.size();
    }
  }
  std::printf("max relative error (sharded values, states, gradients): %.3g\n", worst);
}

// ReLU features that never overlap give den = 0: every form returns y = 0 (no NaN) with finite grads.
TEST(LinearMath, ZeroDenominatorGivesZeroOutputInEveryForm) {
  Generator g(7);
  Tensor q = neg(relu(randn64({1, 6, 1, 4}, g)));  // <= 0: relu(q) = 0 below
  Tensor k = randn64({1, 6, 1, 4}, g), v = randn64({1, 6, 1, 2}, g);
  Tensor a = neg(softplus(randn64({1, 6, 1}, g)));
  LinAttnOptions o{LinPower::One, true, 0.5};
  Tensor qr = relu(q).set_name("q"), kr = relu(k);
  Tensor kl = k.clone().set_requires_grad(true);
  std::vector<Tensor> ys = {linattn_quadratic(qr, relu(kl), v, a, o),
                            linattn_chunked(qr, relu(kl), v, a, o, 4, nullptr, nullptr),
                            run_steps({qr, kr, v, a}, o)};
  for (const Tensor& y : ys)
    for (double x : y.to_vector()) EXPECT_EQ(x, 0.0);
  sum(ys[1]).backward();
  for (double x : kl.grad().to_vector()) EXPECT_TRUE(std::isfinite(x));
}

TEST(LinearMath, ChunkedGradientsMatchFiniteDifferences) {
  for (LinPower p : {LinPower::One, LinPower::Two}) {
    const bool sm = p == LinPower::Two;
    Inputs in = make_inputs(1, 7, 2, 3, 2, Decay::Moderate, /*positive=*/true, 77);
    Generator g(78);
    Tensor r = randn64({1, 7, 2, 2}, g);
    in.q.set_requires_grad(true);
    in.k.set_requires_grad(true);
    in.v.set_requires_grad(true);
    in.a = in.a.detach().clone().set_requires_grad(true);
    LinAttnOptions o{p, sm, 1.0 / std::sqrt(3.0)};
    LinAttnState s0;
    s0.S = randn64({1, 2, linattn_feature_dim(p, 3), 2}, g).set_requires_grad(true);
    if (sm) s0.z = relu(randn64({1, 2, linattn_feature_dim(p, 3)}, g)).detach().set_requires_grad(true);
    std::vector<Tensor> leaves = {in.q, in.k, in.v, in.a, s0.S};
    std::vector<std::string> names = {"q", "k", "v", "a", "S_in"};
    if (sm) {
      leaves.push_back(s0.z);
      names.push_back("z_in");
    }
    auto f = [&] {
      LinAttnState out;
      Tensor y = linattn_chunked(in.q, in.k, in.v, in.a, o, 3, &s0, &out);
      Tensor l = sum(y * r) + sum(out.S);
      if (sm) l = l + sum(out.z);
      return l;
    };
    const double worst = fd_check(f, leaves, names);
    std::printf("power %d: max finite-difference error %.3g\n", p == LinPower::One ? 1 : 2, worst);
  }
}

}  // namespace
}  // namespace coil
