// CUDA chunked linear attention with state in / out (ops LinAttnChunked / LinAttnChunkedBackward)
// against the CPU op, the oracle. Every check runs the registry kernels directly: the forward (y, the
// final state S, z), then the backward on fixed random dy AND final-state gradients dS, dz (what the
// sequence-parallel chain passes back), giving dq, dk, dv, da, dS0, dz0.
//  - f64 and f32: within a few ulp-scale tolerances of the CPU op in f64 on the same inputs.
//  - bf16: every output against the f64 CPU op on the same bf16 inputs, at most 2x the max and rms
//    errors of a NAIVE bf16 implementation against the same reference. The naive one is the composed
//    chunked form (layers' linattn_detail::linattn_chunked_composed: a host loop of framework ops) run
//    on the GPU with every tensor in bf16, gradients by autograd.
// Cases: power 1 and 2, sm_norm and output_norm, with and without decay, with an incoming state and
// from zero, T not a multiple of C, T = 1, D = 64 (F = 2080) and small heads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "layers/linattn.h"
#include "tests/cuda/cuda_test_util.h"

namespace coil {
namespace {

using cuda_test::max_abs;
using cuda_test::max_err;
using cuda_test::rms_err;

struct Case {
  int64_t B, T, H, D, Dv, power;
  bool sm, decay, state;
  int64_t C;
};
std::string name_of(const Case& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) + " D=" +
         std::to_string(c.D) + " Dv=" + std::to_string(c.Dv) + " power=" + std::to_string(c.power) +
         (c.sm ? " sm_norm" : " output_norm") + (c.decay ? " decay" : " no-decay") +
         (c.state ? " state" : " zero-start") + " C=" + std::to_string(c.C);
}

const Case kCases[] = {
    {2, 130, 2, 16, 16, 2, true, true, true, 64},   {1, 100, 2, 8, 12, 2, false, true, true, 32},
    {1, 77, 3, 16, 16, 1, false, true, true, 16},   {2, 50, 2, 8, 8, 1, true, false, true, 16},
    {1, 150, 2, 64, 64, 2, true, true, true, 64},   {1, 70, 1, 64, 64, 2, true, true, false, 128},
    {2, 1, 2, 16, 16, 2, true, true, true, 64},     {1, 90, 2, 16, 16, 2, true, false, false, 32},
};

// Inputs in f64 holding values representable in dtype t (a, S0, z0 in the statistics dtype).
struct Inputs {
  Tensor q, k, v, a, S0, z0, dy, dS, dz;
  double scale;
};
Inputs make_inputs(const Case& c, DType t, uint64_t seed) {
  Generator gen(seed);
  const DType st = t == DType::F64 ? DType::F64 : DType::F32;
  auto draw = [&](const Shape& s, DType d, double sd = 1.0) {
    return Tensor::randn(s, gen, DType::F64, Device::cpu(), 0.0, sd).to(d).to(DType::F64);
  };
  const int64_t F = linattn_chunked_features(c.power, c.D);
  Inputs in;
  in.scale = 1.0 / std::sqrt(double(c.D));
  in.q = draw({c.B, c.T, c.H, c.D}, t);
  in.k = draw({c.B, c.T, c.H, c.D}, t);
  if (c.power == 1 && c.sm) {  // positive features (the ReLU "Linear" baseline)
    in.q = exp(in.q).to(t).to(DType::F64);
    in.k = exp(in.k).to(t).to(DType::F64);
  }
  in.v = draw({c.B, c.T, c.H, c.Dv}, t);
  in.dy = draw({c.B, c.T, c.H, c.Dv}, t);
  if (c.decay)
    in.a = scale(Tensor::uniform({c.B, c.T, c.H}, gen, 0.0, 1.0, DType::F64), -0.3).to(st).to(DType::F64);
  if (c.state) {
    // A state some earlier tokens built (phi(q).z0 > 0), from the CPU op itself on other inputs.
    Tensor kp = draw({c.B, 8, c.H, c.D}, t), vp = draw({c.B, 8, c.H, c.Dv}, t);
    if (c.power == 1 && c.sm) kp = exp(kp);
    Tensor S, z;
    linattn_chunked_op(kp, kp, vp, Tensor(), Tensor(), Tensor(), c.power, c.sm, in.scale, 4, &S, &z);
    in.S0 = S.to(st).to(DType::F64);
    if (c.sm) in.z0 = z.to(st).to(DType::F64);
  }
  in.dS = draw({c.B, c.H, F, c.Dv}, st, 0.1);
  if (c.sm) in.dz = draw({c.B, c.H, F}, st, 0.1);
  return in;
}

struct Outs {
  std::vector<double> y, S, z, dq, dk, dv, da, dS0, dz0;
};

Outs run_op(const Case& c, const Inputs& in, DType t, Device dev) {
  const DType st = t == DType::F64 ? DType::F64 : DType::F32;
  const int64_t F = linattn_chunked_features(c.power, c.D), nc = (c.T + c.C - 1) / c.C;
  auto sd = [&](const Tensor& x) { return x.defined() ? x.to(st).to(dev) : Tensor(); };
  Tensor q = in.q.to(t).to(dev), k = in.k.to(t).to(dev), v = in.v.to(t).to(dev), dy = in.dy.to(t).to(dev);
  Tensor a = sd(in.a), S0 = sd(in.S0), z0 = sd(in.z0), dS = sd(in.dS), dz = sd(in.dz);
  Tensor y = Tensor::empty(v.shape(), t, dev), S = Tensor::empty({c.B, c.H, F, c.Dv}, st, dev);
  Tensor z = c.sm ? Tensor::empty({c.B, c.H, F}, st, dev) : Tensor();
  Tensor Sc = Tensor::empty({nc, c.B, c.H, F, c.Dv}, st, dev);
  Tensor zc = c.sm ? Tensor::empty({nc, c.B, c.H, F}, st, dev) : Tensor();
  Tensor den = c.sm ? Tensor::empty({c.B, c.H, c.T}, st, dev) : Tensor();
  KernelArgs f{Op::LinAttnChunked, {q, k, v, a, S0, z0}, {y, S, z, Sc, zc, den}, {}};
  f.attrs.scale = in.scale;
  f.attrs.power = c.power;
  f.attrs.sm_norm = c.sm;
  f.attrs.dim = c.C;
  dispatch(Op::LinAttnChunked, t, f);
  Tensor dq = Tensor::empty(q.shape(), t, dev), dk = Tensor::empty(q.shape(), t, dev);
  Tensor dv = Tensor::empty(v.shape(), t, dev);
  Tensor da = c.decay ? Tensor::empty(a.shape(), st, dev) : Tensor();
  Tensor dS0 = Tensor::empty(S.shape(), st, dev), dz0 = c.sm ? Tensor::empty({c.B, c.H, F}, st, dev) : Tensor();
  KernelArgs b{Op::LinAttnChunkedBackward, {dy, dS, dz, q, k, v, a, y, Sc, zc, den}, {dq, dk, dv, da, dS0, dz0},
               f.attrs};
  dispatch(Op::LinAttnChunkedBackward, t, b);
  auto vec = [](const Tensor& x) { return x.defined() ? x.to_vector() : std::vector<double>(); };
  return {vec(y), vec(S), vec(z), vec(dq), vec(dk), vec(dv), vec(da), vec(dS0), vec(dz0)};
}

// The naive bf16 implementation: the composed chunked form on the GPU, every tensor in bf16.
Outs naive_bf16(const Case& c, const Inputs& in) {
  const Device dev = Device::cuda(0);
  auto leaf = [&](const Tensor& x) {
    return x.defined() ? x.to(DType::BF16).to(dev).set_requires_grad(true) : Tensor();
  };
  Tensor q = leaf(in.q), k = leaf(in.k), v = leaf(in.v), a = leaf(in.a), S0 = leaf(in.S0), z0 = leaf(in.z0);
  const LinAttnOptions o{c.power == 2 ? LinPower::Two : LinPower::One, c.sm, in.scale};
  LinAttnState st_in{S0, z0}, st_out;
  Tensor y = linattn_detail::linattn_chunked_composed(q, k, v, a, o, c.C, &st_in, &st_out);
  auto b16 = [&](const Tensor& x) { return x.to(DType::BF16).to(dev); };
  Tensor loss = sum(y * b16(in.dy)) + sum(st_out.S * b16(in.dS));
  if (c.sm) loss = loss + sum(st_out.z * b16(in.dz));
  loss.backward();
  auto vec = [](const Tensor& x) { return x.defined() ? x.to(DType::F64).to_vector() : std::vector<double>(); };
  auto grad = [&](const Tensor& x) {
    return x.defined() ? (x.grad().defined() ? vec(x.grad()) : std::vector<double>(size_t(x.numel()), 0.0))
                       : std::vector<double>();
  };
  // Without an incoming state dS0 and dz0 stay empty (outputs() leaves them out for such cases).
  return {vec(y), vec(st_out.S), c.sm ? vec(st_out.z) : std::vector<double>(), grad(q), grad(k), grad(v), grad(a),
          grad(S0), grad(z0)};
}


struct Named {
  const char* name;
  const std::vector<double>* got;
  const std::vector<double>* want;
  const std::vector<double>* naive;
};
std::vector<Named> outputs(const Outs& g, const Outs& w, const Outs* n, bool state) {
  std::vector<Named> v = {{"y", &g.y, &w.y, n ? &n->y : nullptr},       {"S", &g.S, &w.S, n ? &n->S : nullptr},
                          {"z", &g.z, &w.z, n ? &n->z : nullptr},       {"dq", &g.dq, &w.dq, n ? &n->dq : nullptr},
                          {"dk", &g.dk, &w.dk, n ? &n->dk : nullptr},   {"dv", &g.dv, &w.dv, n ? &n->dv : nullptr},
                          {"da", &g.da, &w.da, n ? &n->da : nullptr}};
  if (state) {  // dS0, dz0 of a zero start are not outputs of the naive form
    v.push_back({"dS0", &g.dS0, &w.dS0, n ? &n->dS0 : nullptr});
    v.push_back({"dz0", &g.dz0, &w.dz0, n ? &n->dz0 : nullptr});
  }
  return v;
}

double tight_tol(DType t) { return t == DType::F64 ? 1e-11 : 2e-5; }

void check_tight(DType t) {
  uint64_t seed = 900;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, t, ++seed);
    const Outs want = run_op(c, in, DType::F64, Device::cpu()), got = run_op(c, in, t, Device::cuda(0));
    for (const Named& x : outputs(got, want, nullptr, true)) {
      const double err = max_err(*x.got, *x.want), lim = tight_tol(t) * std::max(1.0, max_abs(*x.want));
      EXPECT_LE(err, lim) << dtype_name(t) << " " << name_of(c) << " " << x.name;
    }
  }
}

TEST(CudaLinAttnChunked, F64MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F64);
}

TEST(CudaLinAttnChunked, F32MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F32);
}

TEST(CudaLinAttnChunked, Bf16WithinTwiceNaiveError) {
  REQUIRE_CUDA();
  uint64_t seed = 1300;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, DType::BF16, ++seed);
    const Outs want = run_op(c, in, DType::F64, Device::cpu());
    const Outs got = run_op(c, in, DType::BF16, Device::cuda(0));
    const Outs naive = naive_bf16(c, in);
    for (const Named& x : outputs(got, want, &naive, c.state)) {
      if (x.want->empty()) continue;
      const double scale = std::max(1.0, max_abs(*x.want));
      const double e_max = max_err(*x.got, *x.want), n_max = max_err(*x.naive, *x.want);
      const double e_rms = rms_err(*x.got, *x.want), n_rms = rms_err(*x.naive, *x.want);
      // An absolute floor of fp32 rounding, for outputs the naive form gets (nearly) exact.
      EXPECT_LE(e_max, 2.0 * n_max + 1e-5 * scale) << name_of(c) << " " << x.name;
      EXPECT_LE(e_rms, 2.0 * n_rms + 1e-5 * scale) << name_of(c) << " " << x.name;
      std::printf("%-60s %-4s max %.3g (naive %.3g)  rms %.3g (naive %.3g)\n", name_of(c).c_str(), x.name, e_max,
                  n_max, e_rms, n_rms);
    }
  }
}

}  // namespace
}  // namespace coil
