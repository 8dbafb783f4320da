// The fused chunked op (core/ops.h linattn_chunked_op, behind layers' linattn_chunked) against its
// composed twin (linattn_detail::linattn_chunked_composed) and the quadratic op, fp64: outputs, final
// states and every gradient (q, k, v, a, S0, z0, reached through y and through the final state S, z)
// agree to ~1e-12 for power 1 and 2, sm_norm on and off, with and without decay and incoming state,
// chunk lengths that do not divide T.
#include "linear_mixer_test_util.h"

namespace coil {
namespace {

using namespace linear_test;
using namespace linattn_detail;

struct Leaves {
  Tensor q, k, v, a, S0, z0;
};

Leaves make_leaves(int64_t B, int64_t T, int64_t H, int64_t D, int64_t Dv, const LinAttnOptions& o, bool decay,
                   bool state, uint64_t seed) {
  Generator g(seed);
  Leaves l;
  const bool positive = o.power == LinPower::One && o.sm_norm;
  auto feat = [&](const Shape& s) { return positive ? exp(randn64(s, g, 0.5)) : randn64(s, g); };
  l.q = feat({B, T, H, D}).set_requires_grad(true);
  l.k = feat({B, T, H, D}).set_requires_grad(true);
  l.v = randn64({B, T, H, Dv}, g).set_requires_grad(true);
  if (decay) l.a = scale(square(randn64({B, T, H}, g)), -0.3).set_requires_grad(true);
  if (state) {
    // A state the recurrence could have built: the prefix of another sequence, so phi(q).z0 > 0.
    Tensor kp = feat({B, 5, H, D}), vp = randn64({B, 5, H, Dv}, g);
    LinAttnState st;
    NoGradGuard ng;
    linattn_chunked_composed(feat({B, 5, H, D}), kp, vp, Tensor(), o, 2, nullptr, &st);
    l.S0 = st.S.detach().set_requires_grad(true);
    if (o.sm_norm) l.z0 = st.z.detach().set_requires_grad(true);
  }
  return l;
}

std::vector<Tensor> grads(const Leaves& l) {
  std::vector<Tensor> g = {l.q.grad(), l.k.grad(), l.v.grad()};
  if (l.a.defined()) g.push_back(l.a.grad());
  if (l.S0.defined()) g.push_back(l.S0.grad());
  if (l.z0.defined()) g.push_back(l.z0.grad());
  return g;
}

TEST(LinAttnChunkedOp, MatchesComposedAndQuadraticWithStatesAndGradients) {
  double worst = 0;
  uint64_t seed = 7;
  for (LinPower p : {LinPower::One, LinPower::Two})
    for (bool sm : {false, true})
      for (bool decay : {false, true})
        for (bool state : {false, true})
          for (int64_t chunk : {1, 3, 4, 16}) {
            const LinAttnOptions o{p, sm, 0.5};
            const int64_t T = 11;
            Leaves x = make_leaves(2, T, 2, 3, 2, o, decay, state, seed);
            Leaves y = make_leaves(2, T, 2, 3, 2, o, decay, state, seed);
            ++seed;
            LinAttnState in_x{x.S0, x.z0}, in_y{y.S0, y.z0}, out_x, out_y;
            Tensor yx = linattn_chunked(x.q, x.k, x.v, x.a, o, chunk, &in_x, &out_x);
            Tensor yy = linattn_chunked_composed(y.q, y.k, y.v, y.a, o, chunk, &in_y, &out_y);
            const std::string where = std::string("power ") + (p == LinPower::Two ? "2" : "1") + " sm " +
                                      std::to_string(sm) + " decay " + std::to_string(decay) + " state " +
                                      std::to_string(state) + " chunk " + std::to_string(chunk);
            double e = std::max(max_rel(yx, yy), max_rel(out_x.S, out_y.S));
            if (sm) e = std::max(e, max_rel(out_x.z, out_y.z));
            if (!state) {
              // Without an incoming state the quadratic op on the cumsum gives the same y.
              Tensor quad = linattn_quadratic(y.q, y.k, y.v, y.a, o);
              e = std::max(e, max_rel(yx, quad));
            }
            EXPECT_LT(e, 1e-12) << where;
            worst = std::max(worst, e);
            // Cotangents on y and on the final state (the sequence-parallel chain's dS, dz).
            Generator g(seed + 1000);
            Tensor ry = randn64(yx.shape(), g), rS = randn64(out_x.S.shape(), g);
            Tensor rz = sm ? randn64(out_x.z.shape(), g) : Tensor();
            Tensor lx = sum(yx * ry) + sum(out_x.S * rS), ly = sum(yy * ry) + sum(out_y.S * rS);
            if (sm) {
              lx = lx + sum(out_x.z * rz);
              ly = ly + sum(out_y.z * rz);
            }
            lx.backward();
            ly.backward();
            const std::vector<Tensor> gx = grads(x), gy = grads(y);
            for (size_t i = 0; i < gx.size(); ++i) {
              const double ge = max_rel(gx[i], gy[i]);
              EXPECT_LT(ge, 1e-11) << where << " gradient " << i;
              worst = std::max(worst, ge);
            }
          }
  std::printf("max relative error (fused chunked op vs composed / quadratic, values and gradients): %.3g\n", worst);
}

TEST(LinAttnChunkedOp, RejectsBadArguments) {
  Generator g(3);
  Tensor q = randn64({1, 4, 1, 2}, g), v = randn64({1, 4, 1, 2}, g);
  EXPECT_THROW(linattn_chunked_op(q, q, v, Tensor(), Tensor(), Tensor(), 3, true, 1.0, 2), Error);
  EXPECT_THROW(linattn_chunked_op(q, q, v, Tensor(), Tensor(), Tensor(), 2, true, 1.0, 0), Error);
  // S0 of the wrong feature size (power 2: F = 3 for D = 2).
  EXPECT_THROW(linattn_chunked_op(q, q, v, Tensor(), randn64({1, 1, 2, 2}, g), randn64({1, 1, 2}, g), 2, true,
                                  1.0, 2),
               Error);
  // sm_norm with S0 but no z0.
  EXPECT_THROW(linattn_chunked_op(q, q, v, Tensor(), randn64({1, 1, 3, 2}, g), Tensor(), 2, true, 1.0, 2), Error);
}

}  // namespace
}  // namespace coil
