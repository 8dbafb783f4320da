// CUDA masked quadratic linear attention (ops LinAttn / LinAttnBackward) against the CPU op, the oracle.
// Every check runs the registry kernels directly (forward, then backward on a fixed random dO):
//  - f64 and f32 (the simple GPU kernels): within a few ulp-scale tolerances of the CPU op in f64 on the
//    same inputs.
//  - bf16 (tensor-core tiles at D = Dv = 64, the simple kernels otherwise): every output against the
//    f64 CPU op on the same bf16 inputs, with the low-precision rule of the issue: the max and the rms
//    errors are at most 2x those of a NAIVE bf16 implementation, all against the f64 reference. The naive one
//    (naive_bf16 below) is what a bf16 framework composition does: bf16 inputs, fp32 arithmetic, and
//    every matmul output (q k^T, w v, dO v^T, the dV / dQ / dK products) and every elementwise tensor
//    (w, the normalised weight, dw, dU) rounded to bf16; its denominator and dacs stay fp32.
// The exp form (power kLinAttnPowerExp, 2Mamba-E) has its own naive bf16 composition (naive_bf16_exp:
// what a framework's bf16 softmax attention with an additive bias does).
// Shapes cover T not a multiple of 64, T = 1, several (b, h), power 1, 2 and exp, sm_norm and
// output_norm, with and without the decay; the decay is a real cumulative log decay (a_t in [-0.3, 0])
// as the layers feed it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "tests/cuda/cuda_test_util.h"

namespace coil {
namespace {

using cuda_test::max_abs;
using cuda_test::max_err;
using cuda_test::rms_err;

struct Case {
  int64_t B, T, H, D, Dv;
  int64_t power;
  bool sm_norm, decay;
};
std::string name_of(const Case& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
         " D=" + std::to_string(c.D) + " Dv=" + std::to_string(c.Dv) + " power=" +
         (c.power == kLinAttnPowerExp ? std::string("exp") : std::to_string(c.power)) +
         (c.sm_norm ? " sm_norm" : " output_norm") + (c.decay ? " decay" : " no-decay");
}

const Case kCases[] = {
    {2, 130, 2, 64, 64, 2, true, true},  {1, 64, 3, 64, 64, 2, true, true},  {1, 1, 2, 64, 64, 2, true, true},
    {2, 200, 1, 64, 64, 2, false, true}, {1, 190, 2, 64, 64, 1, false, true}, {1, 100, 2, 64, 64, 2, true, false},
    {2, 77, 2, 32, 48, 2, true, true},   {1, 50, 1, 16, 16, 1, false, false},
    // 2Mamba-E: several key tiles per row (the online max grows as the decay favours near keys), two
    // forward CTAs, T = 1, no decay, and the simple bf16 kernels (D != 64).
    {2, 130, 2, 64, 64, kLinAttnPowerExp, true, true},  {1, 300, 2, 64, 64, kLinAttnPowerExp, true, true},
    {1, 200, 2, 64, 64, kLinAttnPowerExp, true, false}, {1, 1, 2, 64, 64, kLinAttnPowerExp, true, true},
    {2, 77, 2, 32, 48, kLinAttnPowerExp, true, true},
};

// Inputs in f64 holding values representable in dtype t (acs in f32 for bf16 / f32).
struct Inputs {
  Tensor q, k, v, acs, dO;
  double scale;
};
Inputs make_inputs(const Case& c, DType t, uint64_t seed) {
  Generator gen(seed);
  auto draw = [&](const Shape& s) { return Tensor::randn(s, gen, DType::F64).to(t).to(DType::F64); };
  Inputs in;
  in.q = draw({c.B, c.T, c.H, c.D});
  in.k = draw({c.B, c.T, c.H, c.D});
  in.v = draw({c.B, c.T, c.H, c.Dv});
  in.dO = draw({c.B, c.T, c.H, c.Dv});
  in.scale = 1.0 / std::sqrt(double(c.D));
  if (c.decay) {
    std::vector<double> a(size_t(c.B * c.T * c.H));
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t h = 0; h < c.H; ++h) {
        double run = 0.0;
        for (int64_t t = 0; t < c.T; ++t) {
          run -= 0.3 * gen.next_uniform();
          a[size_t((b * c.T + t) * c.H + h)] = double(float(run));
        }
      }
    in.acs = Tensor::from_vector(a, {c.B, c.T, c.H}, DType::F64);
  }
  return in;
}

struct Outs {
  std::vector<double> y, den, dq, dk, dv, dacs;
};

Outs run_op(const Case& c, const Inputs& in, DType t, Device dev) {
  const DType st = t == DType::F64 ? DType::F64 : DType::F32;
  Tensor q = in.q.to(t).to(dev), k = in.k.to(t).to(dev), v = in.v.to(t).to(dev), dO = in.dO.to(t).to(dev);
  Tensor acs = c.decay ? in.acs.to(st).to(dev) : Tensor();
  Tensor y = Tensor::empty(v.shape(), t, dev), den = Tensor::empty({c.B, c.H, c.T}, st, dev);
  KernelArgs f{Op::LinAttn, {q, k, v, acs}, {y, den}, {}};
  f.attrs.scale = in.scale;
  f.attrs.power = c.power;
  f.attrs.sm_norm = c.sm_norm;
  dispatch(Op::LinAttn, t, f);
  Tensor dq = Tensor::empty(q.shape(), t, dev), dk = Tensor::empty(q.shape(), t, dev),
         dv = Tensor::empty(v.shape(), t, dev);
  Tensor dacs = c.decay ? Tensor::empty(acs.shape(), st, dev) : Tensor();
  KernelArgs b{Op::LinAttnBackward, {dO, q, k, v, acs, y, den}, {dq, dk, dv, dacs}, f.attrs};
  dispatch(Op::LinAttnBackward, t, b);
  return {y.to_vector(), den.to_vector(), dq.to_vector(), dk.to_vector(), dv.to_vector(),
          c.decay ? dacs.to_vector() : std::vector<double>()};
}

double rb(double x) { return bf16_to_float(float_to_bf16(float(x))); }
double rf(double x) { return double(float(x)); }

// The exp form's naive bf16 composition: bf16 inputs, fp32 arithmetic; the matmul outputs (q k^T, P v,
// dO v^T, the dQ / dK / dV products) and the elementwise P and G = P (dP - Delta) rounded to bf16; the
// decay bias and the softmax in fp32 (den = the fp32 log-sum-exp), dacs in fp32.
Outs naive_bf16_exp(const Case& c, const Inputs& in) {
  const auto q = in.q.to_vector(), k = in.k.to_vector(), v = in.v.to_vector(), dO = in.dO.to_vector();
  const auto acs = c.decay ? in.acs.to_vector() : std::vector<double>();
  const int64_t B = c.B, T = c.T, H = c.H, D = c.D, Dv = c.Dv;
  auto at = [&](const std::vector<double>& x, int64_t b, int64_t t, int64_t h, int64_t n) {
    return &x[size_t(((b * T + t) * H + h) * n)];
  };
  auto ac = [&](int64_t b, int64_t t, int64_t h) { return c.decay ? acs[size_t((b * T + t) * H + h)] : 0.0; };
  Outs o;
  o.y.assign(v.size(), 0.0);
  o.den.assign(size_t(B * H * T), 0.0);
  o.dq.assign(q.size(), 0.0);
  o.dk.assign(q.size(), 0.0);
  o.dv.assign(v.size(), 0.0);
  if (c.decay) o.dacs.assign(acs.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> P(size_t(T * T), 0.0), G(size_t(T * T), 0.0);
      for (int64_t i = 0; i < T; ++i) {
        std::vector<float> z(size_t(i + 1));
        float m = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += float(at(q, b, i, h, D)[d] * at(k, b, j, h, D)[d]);
          z[size_t(j)] = float(in.scale) * float(rb(dot)) + float(ac(b, i, h) - ac(b, j, h));
          m = std::max(m, z[size_t(j)]);
        }
        float total = 0.0f;
        for (int64_t j = 0; j <= i; ++j) total += std::exp(z[size_t(j)] - m);
        o.den[size_t((b * H + h) * T + i)] = rf(m + std::log(total));
        for (int64_t j = 0; j <= i; ++j) P[size_t(i * T + j)] = rb(std::exp(z[size_t(j)] - m) / total);
        double* yi = &o.y[size_t(((b * T + i) * H + h) * Dv)];
        for (int64_t e = 0; e < Dv; ++e) {
          float num = 0.0f;
          for (int64_t j = 0; j <= i; ++j) num += float(P[size_t(i * T + j)] * at(v, b, j, h, Dv)[e]);
          yi[e] = rb(num);
        }
        float delta = 0.0f;
        for (int64_t e = 0; e < Dv; ++e) delta += float(at(dO, b, i, h, Dv)[e] * yi[e]);
        for (int64_t j = 0; j <= i; ++j) {
          float dpf = 0.0f;
          for (int64_t e = 0; e < Dv; ++e) dpf += float(at(dO, b, i, h, Dv)[e] * at(v, b, j, h, Dv)[e]);
          const float g = float(P[size_t(i * T + j)] * (rb(dpf) - double(delta)));
          G[size_t(i * T + j)] = rb(g);
          if (c.decay) {
            o.dacs[size_t((b * T + i) * H + h)] = rf(o.dacs[size_t((b * T + i) * H + h)] + g);
            o.dacs[size_t((b * T + j) * H + h)] = rf(o.dacs[size_t((b * T + j) * H + h)] - g);
          }
        }
      }
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t d = 0; d < D; ++d) {
          float aq = 0.0f, ak = 0.0f;
          for (int64_t j = 0; j <= t; ++j) aq += float(G[size_t(t * T + j)] * at(k, b, j, h, D)[d]);
          for (int64_t i = t; i < T; ++i) ak += float(G[size_t(i * T + t)] * at(q, b, i, h, D)[d]);
          o.dq[size_t(((b * T + t) * H + h) * D + d)] = rb(float(in.scale * rb(aq)));
          o.dk[size_t(((b * T + t) * H + h) * D + d)] = rb(float(in.scale * rb(ak)));
        }
        for (int64_t e = 0; e < Dv; ++e) {
          float av = 0.0f;
          for (int64_t i = t; i < T; ++i) av += float(P[size_t(i * T + t)] * at(dO, b, i, h, Dv)[e]);
          o.dv[size_t(((b * T + t) * H + h) * Dv + e)] = rb(av);
        }
      }
    }
  return o;
}

// The naive bf16 implementation (see the top of the file), in host loops.
Outs naive_bf16(const Case& c, const Inputs& in) {
  if (c.power == kLinAttnPowerExp) return naive_bf16_exp(c, in);
  const auto q = in.q.to_vector(), k = in.k.to_vector(), v = in.v.to_vector(), dO = in.dO.to_vector();
  const auto acs = c.decay ? in.acs.to_vector() : std::vector<double>();
  const int64_t B = c.B, T = c.T, H = c.H, D = c.D, Dv = c.Dv;
  auto qi = [&](const std::vector<double>& x, int64_t b, int64_t t, int64_t h, int64_t n) {
    return &x[size_t(((b * T + t) * H + h) * n)];
  };
  Outs o;
  o.y.assign(v.size(), 0.0);
  o.den.assign(size_t(B * H * T), 0.0);
  o.dq.assign(q.size(), 0.0);
  o.dk.assign(q.size(), 0.0);
  o.dv.assign(v.size(), 0.0);
  if (c.decay) o.dacs.assign(acs.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      // w (rounded), u, L per (i, j)
      std::vector<double> W(size_t(T * T), 0.0), U(size_t(T * T), 0.0), Lm(size_t(T * T), 0.0);
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += float(qi(q, b, i, h, D)[d] * qi(k, b, j, h, D)[d]);
          const double u = rf(in.scale * rb(dot));
          const double L = c.decay ? rf(std::exp(float(acs[size_t((b * T + i) * H + h)] -
                                                       acs[size_t((b * T + j) * H + h)])))
                                   : 1.0;
          U[size_t(i * T + j)] = u;
          Lm[size_t(i * T + j)] = L;
          W[size_t(i * T + j)] = rb(float((c.power == 2 ? u * u : u) * L));
        }
      std::vector<double> rc(static_cast<size_t>(T)), dl(static_cast<size_t>(T));
      for (int64_t i = 0; i < T; ++i) {
        float total = 0.0f;
        for (int64_t j = 0; j <= i; ++j) total += float(W[size_t(i * T + j)]);
        o.den[size_t((b * H + h) * T + i)] = total;
        const double cden = c.sm_norm ? std::max(double(total), 1e-8) : 1.0;
        double* yi = &o.y[size_t(((b * T + i) * H + h) * Dv)];
        for (int64_t e = 0; e < Dv; ++e) {
          float num = 0.0f;
          for (int64_t j = 0; j <= i; ++j) num += float(W[size_t(i * T + j)] * qi(v, b, j, h, Dv)[e]);
          yi[e] = rb(float(rb(num) / cden));
        }
        float delta = 0.0f;
        if (c.sm_norm && total > 1e-8)
          for (int64_t e = 0; e < Dv; ++e) delta += float(qi(dO, b, i, h, Dv)[e] * yi[e]);
        rc[size_t(i)] = 1.0 / cden;
        dl[size_t(i)] = delta;
      }
      std::vector<double> P(size_t(T * T), 0.0), DU(size_t(T * T), 0.0);
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          float dpf = 0.0f;
          for (int64_t e = 0; e < Dv; ++e) dpf += float(qi(dO, b, i, h, Dv)[e] * qi(v, b, j, h, Dv)[e]);
          const double dw = rb(float((rb(dpf) - dl[size_t(i)]) * rc[size_t(i)]));
          const double w = W[size_t(i * T + j)];
          P[size_t(i * T + j)] = rb(float(w * rc[size_t(i)]));
          DU[size_t(i * T + j)] =
              rb(float((c.power == 2 ? 2.0 * U[size_t(i * T + j)] : 1.0) * Lm[size_t(i * T + j)] * dw));
          if (c.decay) {
            const float g = float(w * dw);
            o.dacs[size_t((b * T + i) * H + h)] = rf(o.dacs[size_t((b * T + i) * H + h)] + g);
            o.dacs[size_t((b * T + j) * H + h)] = rf(o.dacs[size_t((b * T + j) * H + h)] - g);
          }
        }
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t d = 0; d < D; ++d) {
          float aq = 0.0f, ak = 0.0f;
          for (int64_t j = 0; j <= t; ++j) aq += float(DU[size_t(t * T + j)] * qi(k, b, j, h, D)[d]);
          for (int64_t i = t; i < T; ++i) ak += float(DU[size_t(i * T + t)] * qi(q, b, i, h, D)[d]);
          o.dq[size_t(((b * T + t) * H + h) * D + d)] = rb(float(in.scale * rb(aq)));
          o.dk[size_t(((b * T + t) * H + h) * D + d)] = rb(float(in.scale * rb(ak)));
        }
        for (int64_t e = 0; e < Dv; ++e) {
          float av = 0.0f;
          for (int64_t i = t; i < T; ++i) av += float(P[size_t(i * T + t)] * qi(dO, b, i, h, Dv)[e]);
          o.dv[size_t(((b * T + t) * H + h) * Dv + e)] = rb(av);
        }
      }
    }
  return o;
}


struct Named {
  const char* name;
  const std::vector<double>* got;
  const std::vector<double>* want;
  const std::vector<double>* naive;
};
std::vector<Named> outputs(const Outs& g, const Outs& w, const Outs* n) {
  return {{"y", &g.y, &w.y, n ? &n->y : nullptr},       {"den", &g.den, &w.den, n ? &n->den : nullptr},
          {"dq", &g.dq, &w.dq, n ? &n->dq : nullptr},    {"dk", &g.dk, &w.dk, n ? &n->dk : nullptr},
          {"dv", &g.dv, &w.dv, n ? &n->dv : nullptr},    {"dacs", &g.dacs, &w.dacs, n ? &n->dacs : nullptr}};
}

// f64: summation order and libm only; f32: fp32 sums over at most a few hundred terms.
double tight_tol(DType t) { return t == DType::F64 ? 1e-11 : 2e-5; }

void check_tight(DType t) {
  uint64_t seed = 300;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, t, ++seed);
    const Outs want = run_op(c, in, DType::F64, Device::cpu()), got = run_op(c, in, t, Device::cuda(0));
    for (const Named& x : outputs(got, want, nullptr)) {
      const double err = max_err(*x.got, *x.want), lim = tight_tol(t) * std::max(1.0, max_abs(*x.want));
      EXPECT_LE(err, lim) << dtype_name(t) << " " << name_of(c) << " " << x.name;
    }
  }
}

TEST(CudaLinAttn, F64MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F64);
}

TEST(CudaLinAttn, F32MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F32);
}

TEST(CudaLinAttn, Bf16WithinTwiceNaiveError) {
  REQUIRE_CUDA();
  uint64_t seed = 700;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, DType::BF16, ++seed);
    const Outs want = run_op(c, in, DType::F64, Device::cpu());
    const Outs got = run_op(c, in, DType::BF16, Device::cuda(0));
    const Outs naive = naive_bf16(c, in);
    for (const Named& x : outputs(got, want, &naive)) {
      const double err = max_err(*x.got, *x.want), nerr = max_err(*x.naive, *x.want);
      const double rms = rms_err(*x.got, *x.want), nrms = rms_err(*x.naive, *x.want);
      // Floor: a small fraction of the output's magnitude (an output the naive run gets exactly
      // right, e.g. the gradients at T = 1, must not demand exactness).
      const double floor = 1e-3 * std::max(1e-6, max_abs(*x.want));
      std::printf("%-50s %-4s max err %.3e naive %.3e | rms %.3e naive %.3e\n", name_of(c).c_str(), x.name,
                  err, nerr, rms, nrms);
      EXPECT_LE(err, 2.0 * nerr + floor) << name_of(c) << " " << x.name << ": max error " << err
                                         << " vs naive bf16 " << nerr;
      EXPECT_LE(rms, 2.0 * nrms + floor) << name_of(c) << " " << x.name << ": rms error " << rms
                                         << " vs naive bf16 " << nrms;
    }
  }
}

// The kernels' view contract (core/ops.h linattn_qkv): q, k, v read from, and dq, dk, dv written into,
// strided views of one packed (B, T, 3H, D) tensor give exactly the dense run's outputs (the same
// arithmetic on the same values), on the tensor-core path (in place, D = 64) and the staged paths
// (other D, f32). The packed gradient starts as NaN, so an element the kernels miss fails the check.
TEST(CudaLinAttn, PackedViewsMatchDense) {
  REQUIRE_CUDA();
  uint64_t seed = 900;
  for (DType t : {DType::BF16, DType::F32}) {
    for (const Case& c : kCases) {
      if (c.D != c.Dv) continue;
      const Inputs in = make_inputs(c, t, ++seed);
      const Device dev = Device::cuda(0);
      const Outs dense = run_op(c, in, t, dev);
      const DType st = t == DType::F64 ? DType::F64 : DType::F32;
      Tensor packed = concat({in.q, in.k, in.v}, 2).to(t).to(dev);  // (B, T, 3H, D)
      Tensor gpacked = Tensor::full(packed.shape(), NAN, t, dev);
      auto part = [&](const Tensor& x, int64_t i) { return x.narrow(2, i * c.H, c.H); };
      Tensor dO = in.dO.to(t).to(dev), acs = c.decay ? in.acs.to(st).to(dev) : Tensor();
      Tensor y = Tensor::empty({c.B, c.T, c.H, c.Dv}, t, dev), den = Tensor::empty({c.B, c.H, c.T}, st, dev);
      KernelArgs f{Op::LinAttn, {part(packed, 0), part(packed, 1), part(packed, 2), acs}, {y, den}, {}};
      f.attrs.scale = in.scale;
      f.attrs.power = c.power;
      f.attrs.sm_norm = c.sm_norm;
      dispatch(Op::LinAttn, t, f);
      Tensor dacs = c.decay ? Tensor::empty(acs.shape(), st, dev) : Tensor();
      KernelArgs b{Op::LinAttnBackward,
                   {dO, part(packed, 0), part(packed, 1), part(packed, 2), acs, y, den},
                   {part(gpacked, 0), part(gpacked, 1), part(gpacked, 2), dacs},
                   f.attrs};
      dispatch(Op::LinAttnBackward, t, b);
      const Outs got{y.to_vector(), den.to_vector(), part(gpacked, 0).contiguous().to_vector(),
                     part(gpacked, 1).contiguous().to_vector(), part(gpacked, 2).contiguous().to_vector(),
                     c.decay ? dacs.to_vector() : std::vector<double>()};
      for (const Named& x : outputs(got, dense, nullptr))
        EXPECT_EQ(max_err(*x.got, *x.want), 0.0) << dtype_name(t) << " " << name_of(c) << " " << x.name;
    }
  }
}

// The front-end on a packed projection: y and the packed gradient (through autograd) equal those of
// linattn on the split, contiguous q, k, v, in bf16 on the tensor-core path.
TEST(CudaLinAttn, QkvFrontEndMatchesSplit) {
  REQUIRE_CUDA();
  const Case c{2, 130, 2, 64, 64, 2, true, true};
  const Inputs in = make_inputs(c, DType::BF16, 1234);
  const Device dev = Device::cuda(0);
  const int64_t I = c.H * c.D;
  Tensor packed = concat({in.q, in.k, in.v}, 2).reshape({c.B, c.T, 3 * I}).to(DType::BF16).to(dev);
  Tensor acs = in.acs.to(DType::F32).to(dev);
  Tensor dO = in.dO.to(DType::BF16).to(dev);
  Tensor x1 = packed.clone(), x2 = packed.clone();
  x1.set_requires_grad(true);
  x2.set_requires_grad(true);
  Tensor y1 = linattn_qkv(x1, acs, c.H, c.power, c.sm_norm, in.scale);
  sum(y1 * dO).backward();
  auto split_part = [&](int64_t i) { return x2.narrow(2, i * I, I).reshape({c.B, c.T, c.H, c.D}); };
  Tensor y2 = linattn(split_part(0), split_part(1), split_part(2), acs, c.power, c.sm_norm, in.scale);
  sum(y2 * dO).backward();
  EXPECT_EQ(max_err(y1.to_vector(), y2.to_vector()), 0.0);
  EXPECT_EQ(max_err(x1.grad().to_vector(), x2.grad().to_vector()), 0.0);
}

}  // namespace
}  // namespace coil
