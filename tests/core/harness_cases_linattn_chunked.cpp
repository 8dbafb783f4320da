// Harness cases: the chunked linear attention with state in / out (ops LinAttnChunked /
// LinAttnChunkedBackward). The reference is the token-by-token recurrence of spec/models.md 5 / 6 in
// plain double loops (S_t = e^{a_t} S_{t-1} + phi(s k_t) v_t^T, z_t likewise, y_t = phi(q_t).S_t over
// max(phi(q_t).z_t, eps)), independent of the chunk algorithm; it checks y and the final state S, z. The
// f64 gradient check covers q, k, v, the decay a and the incoming state S0, z0, and reaches the final
// state's gradients dS, dz (every output enters the loss). The cases cover 2Mamba (power 2, sm_norm,
// decay), Mamba-2S (power 1, output_norm, decay), the "Linear" baseline (power 1, sm_norm, positive
// features, no decay), power 2 output_norm, T not a multiple of the chunk, one chunk longer than T,
// T = 1, and starts from zero and from a given state.
#include <algorithm>
#include <cmath>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

struct Cfg {
  int64_t power = 2;
  bool sm_norm = true;
  bool decay = true;
  bool state = true;  // S0 (and z0 with sm_norm) given
  double scale = 0.5;
  int64_t chunk = 3;
};

int64_t feat_dim(int64_t power, int64_t D) { return power == 2 ? D * (D + 1) / 2 : D; }

std::vector<double> phi(const double* x, int64_t D, int64_t power) {
  if (power == 1) return std::vector<double>(x, x + D);
  std::vector<double> f;
  for (int64_t p = 0; p < D; ++p)
    for (int64_t r = p; r < D; ++r) f.push_back((p == r ? 1.0 : std::sqrt(2.0)) * x[p] * x[r]);
  return f;
}

// Inputs: q, k (B, T, H, D), v (B, T, H, Dv), [a (B, T, H)], [S0 (B, H, F, Dv), [z0 (B, H, F)]].
HOuts reference(const HOuts& x, const Cfg& cfg) {
  const int64_t B = x[0].shape[0], T = x[0].shape[1], H = x[0].shape[2], D = x[0].shape[3];
  const int64_t Dv = x[2].shape[3], F = feat_dim(cfg.power, D);
  size_t next = 3;
  const HostTensor* a = cfg.decay ? &x[next++] : nullptr;
  const HostTensor* S0 = cfg.state ? &x[next++] : nullptr;
  const HostTensor* z0 = cfg.state && cfg.sm_norm ? &x[next++] : nullptr;
  HostTensor y = HostTensor::zeros({B, T, H, Dv}), S = HostTensor::zeros({B, H, F, Dv});
  HostTensor z = HostTensor::zeros({B, H, F});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> St(size_t(F * Dv), 0.0), zt(size_t(F), 0.0);
      if (S0)
        for (int64_t e = 0; e < F * Dv; ++e) St[size_t(e)] = (*S0)[(b * H + h) * F * Dv + e];
      if (z0)
        for (int64_t f = 0; f < F; ++f) zt[size_t(f)] = (*z0)[(b * H + h) * F + f];
      for (int64_t t = 0; t < T; ++t) {
        const int64_t qo = ((b * T + t) * H + h) * D, vo = ((b * T + t) * H + h) * Dv;
        std::vector<double> ks(static_cast<size_t>(D));
        for (int64_t d = 0; d < D; ++d) ks[size_t(d)] = cfg.scale * x[1][qo + d];
        const std::vector<double> pk = phi(ks.data(), D, cfg.power), pq = phi(&x[0].data[size_t(qo)], D, cfg.power);
        const double g = a ? std::exp((*a)[(b * T + t) * H + h]) : 1.0;
        for (int64_t f = 0; f < F; ++f) {
          for (int64_t d = 0; d < Dv; ++d)
            St[size_t(f * Dv + d)] = g * St[size_t(f * Dv + d)] + pk[size_t(f)] * x[2][vo + d];
          zt[size_t(f)] = g * zt[size_t(f)] + pk[size_t(f)];
        }
        double den = 0.0;
        for (int64_t f = 0; f < F; ++f) den += pq[size_t(f)] * zt[size_t(f)];
        const double c = cfg.sm_norm ? std::max(den, 1e-8) : 1.0;
        for (int64_t d = 0; d < Dv; ++d) {
          double num = 0.0;
          for (int64_t f = 0; f < F; ++f) num += pq[size_t(f)] * St[size_t(f * Dv + d)];
          y[vo + d] = num / c;
        }
      }
      for (int64_t e = 0; e < F * Dv; ++e) S[(b * H + h) * F * Dv + e] = St[size_t(e)];
      for (int64_t f = 0; f < F; ++f) z[(b * H + h) * F + f] = zt[size_t(f)];
    }
  HOuts out{y, S};
  if (cfg.sm_norm) out.push_back(z);
  return out;
}

// A denominator state like one the recurrence builds: positive diagonal features (phi(q).z0 > 0 for
// every q), small off-diagonal entries (power 2), so sm_norm never divides by a value near 0.
InputSpec denominator_state(int64_t B, int64_t H, int64_t D, int64_t power) {
  std::vector<double> vals;
  uint64_t r = 12345;
  auto next = [&r] {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    return double(r >> 11) / double(1ull << 53);
  };
  for (int64_t n = 0; n < B * H; ++n)
    for (int64_t p = 0; p < D; ++p)
      for (int64_t q = power == 2 ? p : D - 1; q < D; ++q)
        vals.push_back(power == 1 || p == q ? 1.0 + next() : 0.2 * (next() - 0.5));
  return float_values({B, H, feat_dim(power, D)}, vals);
}

OpCase chunked_case(std::string name, Shape qs, int64_t Dv, Cfg cfg, InputSpec q_spec, InputSpec k_spec) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::LinAttnChunked, Op::LinAttnChunkedBackward};
  const int64_t B = qs[0], T = qs[1], H = qs[2], D = qs[3], F = feat_dim(cfg.power, D);
  c.inputs = {std::move(q_spec), std::move(k_spec), normal({B, T, H, Dv})};
  if (cfg.decay) c.inputs.push_back(uniform({B, T, H}, -0.6, -0.05));
  if (cfg.state) {
    c.inputs.push_back(normal({B, H, F, Dv}, 0.5));
    if (cfg.sm_norm) c.inputs.push_back(denominator_state(B, H, D, cfg.power));
  }
  c.bf16_tol_scale = 2.0;
  c.run = [cfg](const Outs& x) {
    size_t next = 3;
    Tensor a = cfg.decay ? x[next++] : Tensor();
    Tensor S0 = cfg.state ? x[next++] : Tensor();
    Tensor z0 = cfg.state && cfg.sm_norm ? x[next++] : Tensor();
    Tensor S, z;
    Tensor y = linattn_chunked_op(x[0], x[1], x[2], a, S0, z0, cfg.power, cfg.sm_norm, cfg.scale, cfg.chunk, &S, &z);
    Outs out{y, S};
    if (cfg.sm_norm) out.push_back(z);
    return out;
  };
  c.reference = [cfg](const HOuts& x) { return reference(x, cfg); };
  return c;
}

}  // namespace

void add_linattn_chunked_cases(std::vector<OpCase>& cases) {
  const Shape s{2, 7, 2, 3};
  auto n = [](const Shape& sh) { return normal(sh); };
  cases.push_back(chunked_case("linattn_chunked_2mamba_state", s, 2, {2, true, true, true, 0.5, 3}, n(s), n(s)));
  cases.push_back(chunked_case("linattn_chunked_2mamba_zero_start", {1, 5, 2, 3}, 3, {2, true, true, false, 0.7, 2},
                               n({1, 5, 2, 3}), n({1, 5, 2, 3})));
  cases.push_back(chunked_case("linattn_chunked_mamba2s_state", s, 3, {1, false, true, true, 0.5, 3}, n(s), n(s)));
  cases.push_back(chunked_case("linattn_chunked_p1_sm_no_decay", {1, 6, 2, 3}, 2, {1, true, false, true, 0.4, 4},
                               uniform({1, 6, 2, 3}, 0.1, 1.0), uniform({1, 6, 2, 3}, 0.1, 1.0)));
  cases.push_back(chunked_case("linattn_chunked_p2_output_norm_one_chunk", {1, 5, 2, 2}, 2,
                               {2, false, false, true, 0.5, 8}, n({1, 5, 2, 2}), n({1, 5, 2, 2})));
  cases.push_back(chunked_case("linattn_chunked_2mamba_t1", {2, 1, 1, 3}, 2, {2, true, true, true, 0.6, 2},
                               n({2, 1, 1, 3}), n({2, 1, 1, 3})));
}

}  // namespace coil::harness
