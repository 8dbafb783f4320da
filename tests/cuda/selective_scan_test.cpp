// CUDA Mamba-1 selective scan (ops SelectiveScan / SelectiveScanBackward) against the CPU op, the oracle.
// Each check runs the op front-end with autograd on both devices (y, the final state hT, and the
// gradients of u, dt, A, B, C, h0 from loss = sum(y ry) + sum(hT rh)):
//  - f64 and f32: within a few ulp-scale tolerances of the CPU op in f64 on the same inputs, in both
//    CUDA forms (sequential over T, split over chunks), also with the backward run over several
//    segments (a lowered partial budget);
//  - bf16 (u, B, C, y and their gradients; dt, A, h0 and the state stay fp32), both forms: every output against the
//    f64 CPU op on the same inputs, with the low-precision rule: max and rms errors at most 2x
//    those of a NAIVE bf16 composition against the same f64 reference. The naive one (naive_bf16 below)
//    is what the composed scan does in a bf16 framework: fp32 arithmetic with every elementwise tensor
//    (the decay exp(dt A), dt u, its product with B, the state, g and the per-state products of the
//    backward) rounded to bf16, and each sum (over n, d, b) accumulated in fp32 and rounded once.
// The Mamba1 layer on CUDA (the fused scan inside) matches the layer on the CPU.
// Shapes cover T across several 64-token chunks, T = 1, N = 16 (Mamba-1), N = 5 (lanes past N), N = 32
// (one channel per warp) and D not a multiple of a block's channels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/ops.h"
#include "core/autograd/grad_mode.h"
#include "core/random.h"
#include "layers/mamba1.h"
#include "tests/cuda/cuda_test_util.h"
#if COIL_HAVE_CUDA
#include "kernels/cuda/selective_scan.h"
#endif

namespace coil {
namespace {

using cuda_test::max_abs;
using cuda_test::max_err;
using cuda_test::rms_err;

struct Case {
  int64_t B, T, D, N;
  bool h0;
};
std::string name_of(const Case& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " D=" + std::to_string(c.D) +
         " N=" + std::to_string(c.N) + (c.h0 ? " h0" : " zero-state");
}

const Case kCases[] = {{2, 150, 40, 16, true}, {1, 200, 21, 5, false}, {3, 1, 9, 16, true},
                       {2, 130, 9, 32, true},  {1, 64, 70, 4, false}};

// Values in f64 that the case's dtype holds exactly (u, B, C, ry rounded to it; dt, A, h0, rh to f32
// unless the dtype is f64).
struct Inputs {
  Tensor u, dt, A, Bm, Cm, h0, ry, rh;
};
Inputs make_inputs(const Case& c, DType t, uint64_t seed) {
  Generator gen(seed);
  const DType st = t == DType::F64 ? DType::F64 : DType::F32;
  auto as = [](Tensor x, DType d) { return x.to(d).to(DType::F64); };
  Inputs in;
  in.u = as(Tensor::randn({c.B, c.T, c.D}, gen, DType::F64), t);
  // dt ~ exp U[log 1e-3, log 1], A = -exp U[0, log 16]: mamba_ssm's ranges, stretched towards strong decay.
  in.dt = as(exp(Tensor::uniform({c.B, c.T, c.D}, gen, std::log(1e-3), 0.0, DType::F64)), st);
  in.A = as(scale(exp(Tensor::uniform({c.D, c.N}, gen, 0.0, std::log(16.0), DType::F64)), -1.0), st);
  in.Bm = as(Tensor::randn({c.B, c.T, c.N}, gen, DType::F64), t);
  in.Cm = as(Tensor::randn({c.B, c.T, c.N}, gen, DType::F64), t);
  if (c.h0) in.h0 = as(Tensor::randn({c.B, c.D, c.N}, gen, DType::F64), st);
  in.ry = as(Tensor::randn({c.B, c.T, c.D}, gen, DType::F64), t);
  in.rh = as(Tensor::randn({c.B, c.D, c.N}, gen, DType::F64), st);
  return in;
}

// y, hT, du, ddt, dA, dB, dC, dh0 (empty without h0).
using Outs = std::vector<std::vector<double>>;
const char* const kNames[] = {"y", "hT", "du", "ddt", "dA", "dB", "dC", "dh0"};

Outs run_op(const Inputs& in, DType t, Device dev) {
  const DType st = t == DType::F64 ? DType::F64 : DType::F32;
  auto leaf = [&](const Tensor& x, DType d) { return x.to(d).to(dev).detach().set_requires_grad(true); };
  Tensor u = leaf(in.u, t), dt = leaf(in.dt, st), A = leaf(in.A, st), Bm = leaf(in.Bm, t), Cm = leaf(in.Cm, t);
  Tensor h0 = in.h0.defined() ? leaf(in.h0, st) : Tensor();
  Tensor hT;
  Tensor y = selective_scan(u, dt, A, Bm, Cm, h0, &hT);
  (sum((y * in.ry.to(t).to(dev)).to(st)) + sum(hT * in.rh.to(st).to(dev))).backward();
  auto host = [](const Tensor& x) { return x.to(Device::cpu()).to(DType::F64).to_vector(); };
  return {host(y), host(hT), host(u.grad()), host(dt.grad()), host(A.grad()), host(Bm.grad()), host(Cm.grad()),
          h0.defined() ? host(h0.grad()) : std::vector<double>()};
}

// The naive composition's rounding to bf16; NaiveWithoutRoundingIsTheScan turns it off.
bool g_naive_rounds = true;
double rb(double x) { return g_naive_rounds ? bf16_to_float(float_to_bf16(float(x))) : double(float(x)); }

// The naive bf16 composition (see the top of the file), in host loops.
Outs naive_bf16(const Case& c, const Inputs& in) {
  const auto u = in.u.to_vector(), dt = in.dt.to_vector(), A = in.A.to_vector(), Bm = in.Bm.to_vector();
  const auto Cm = in.Cm.to_vector(), ry = in.ry.to_vector(), rh = in.rh.to_vector();
  const auto h0 = c.h0 ? in.h0.to_vector() : std::vector<double>();
  const int64_t B = c.B, T = c.T, D = c.D, N = c.N;
  Outs o(8);
  o[0].assign(size_t(B * T * D), 0.0);
  o[1].assign(size_t(B * D * N), 0.0);
  o[2].assign(size_t(B * T * D), 0.0);
  o[3].assign(size_t(B * T * D), 0.0);
  o[4].assign(size_t(D * N), 0.0);
  o[5].assign(size_t(B * T * N), 0.0);
  o[6].assign(size_t(B * T * N), 0.0);
  if (c.h0) o[7].assign(size_t(B * D * N), 0.0);
  std::vector<float> dA(size_t(D * N), 0.0f), dB(size_t(B * T * N), 0.0f), dC(size_t(B * T * N), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) {
      // Forward, keeping every rounded tensor the backward reads.
      std::vector<double> hs(size_t((T + 1) * N)), at(size_t(T * N));
      for (int64_t n = 0; n < N; ++n) hs[size_t(n)] = c.h0 ? rb(h0[size_t((b * D + d) * N + n)]) : 0.0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = (b * T + t) * D + d;
        const double x = rb(float(dt[size_t(i)] * u[size_t(i)]));
        float acc = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          const double a = rb(std::exp(float(dt[size_t(i)] * A[size_t(d * N + n)])));
          at[size_t(t * N + n)] = a;
          const double decayed = rb(float(a * hs[size_t(t * N + n)]));
          const double h = rb(float(decayed + rb(float(x * Bm[size_t((b * T + t) * N + n)]))));
          hs[size_t((t + 1) * N + n)] = h;
          acc += float(h * Cm[size_t((b * T + t) * N + n)]);
        }
        o[0][size_t(i)] = rb(acc);
      }
      std::vector<double> g(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n) {
        o[1][size_t((b * D + d) * N + n)] = hs[size_t(T * N + n)];
        g[size_t(n)] = rb(rh[size_t((b * D + d) * N + n)]);
      }
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t i = (b * T + t) * D + d;
        const double dy = ry[size_t(i)], x = rb(float(dt[size_t(i)] * u[size_t(i)]));
        float dx = 0.0f, ddt_decay = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t bn = (b * T + t) * N + n;
          double& gn = g[size_t(n)];
          gn = rb(float(gn + rb(float(dy * Cm[size_t(bn)]))));
          dC[size_t(bn)] += float(dy * hs[size_t((t + 1) * N + n)]);
          dB[size_t(bn)] += float(gn * x);
          dx += float(gn * Bm[size_t(bn)]);
          const double a = at[size_t(t * N + n)];
          const double da = rb(float(rb(float(gn * hs[size_t(t * N + n)])) * a));
          ddt_decay += float(da * A[size_t(d * N + n)]);
          dA[size_t(d * N + n)] += float(da * dt[size_t(i)]);
          gn = rb(float(gn * a));
        }
        const double dxr = rb(dx);
        o[2][size_t(i)] = rb(float(dt[size_t(i)] * dxr));
        o[3][size_t(i)] = double(float(rb(float(u[size_t(i)] * dxr)) + float(ddt_decay)));
      }
      if (c.h0)
        for (int64_t n = 0; n < N; ++n) o[7][size_t((b * D + d) * N + n)] = g[size_t(n)];
    }
  for (size_t k = 0; k < dA.size(); ++k) o[4][k] = dA[k];
  for (size_t k = 0; k < dB.size(); ++k) {
    o[5][k] = rb(dB[k]);
    o[6][k] = rb(dC[k]);
  }
  return o;
}


// f64: summation order and libm only; f32: fp32 recurrences over a few hundred tokens.
double tight_tol(DType t) { return t == DType::F64 ? 1e-11 : 1e-4; }

// Runs f under each CUDA form of the scan (sequential over T, split over chunks), then restores auto.
void for_each_mode(const std::function<void(const char*)>& f) {
#if COIL_HAVE_CUDA
  for (auto [mode, name] : {std::pair{cuda::ScanMode::kSequential, "sequential"},
                            std::pair{cuda::ScanMode::kSplit, "split"}}) {
    const cuda::ScanMode prev = cuda::selective_scan_mode(mode);
    f(name);
    cuda::selective_scan_mode(prev);
  }
#else
  f("none");
#endif
}

void check_tight(DType t) {
  for_each_mode([&](const char* mode) {
    SCOPED_TRACE(mode);
    uint64_t seed = 500;
    for (const Case& c : kCases) {
      const Inputs in = make_inputs(c, t, ++seed);
      const Outs want = run_op(in, DType::F64, Device::cpu()), got = run_op(in, t, Device::cuda(0));
      for (size_t k = 0; k < want.size(); ++k) {
        const double err = max_err(got[k], want[k]), lim = tight_tol(t) * std::max(1.0, max_abs(want[k]));
        EXPECT_LE(err, lim) << dtype_name(t) << " " << name_of(c) << " " << kNames[k];
      }
    }
  });
}

// The naive reference itself (host only, no GPU needed): without its bf16 rounding it is the scan, so
// every output and gradient matches the CPU op to fp32 rounding.
TEST(CudaSelectiveScan, NaiveWithoutRoundingIsTheScan) {
  uint64_t seed = 100;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, DType::F32, ++seed);
    const Outs want = run_op(in, DType::F64, Device::cpu());
    g_naive_rounds = false;
    const Outs naive = naive_bf16(c, in);
    g_naive_rounds = true;
    for (size_t k = 0; k < want.size(); ++k)
      EXPECT_LE(max_err(naive[k], want[k]), 1e-4 * std::max(1.0, max_abs(want[k]))) << name_of(c) << " " << kNames[k];
  }
}

TEST(CudaSelectiveScan, F64MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F64);
}

TEST(CudaSelectiveScan, F32MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F32);
}

// A budget of one byte leaves one 64-token chunk per backward segment: g and dA carry across launches.
TEST(CudaSelectiveScan, SegmentedBackwardMatchesCpu) {
  REQUIRE_CUDA();
#if COIL_HAVE_CUDA
  const int64_t prev = cuda::selective_scan_partial_budget(1);
  check_tight(DType::F64);
  check_tight(DType::F32);
  cuda::selective_scan_partial_budget(prev);
#endif
}

TEST(CudaSelectiveScan, Bf16WithinTwiceNaiveError) {
  REQUIRE_CUDA();
  for_each_mode([&](const char* mode) {
    SCOPED_TRACE(mode);
    uint64_t seed = 900;
    for (const Case& c : kCases) {
      const Inputs in = make_inputs(c, DType::BF16, ++seed);
      const Outs want = run_op(in, DType::F64, Device::cpu());
      const Outs got = run_op(in, DType::BF16, Device::cuda(0));
      const Outs naive = naive_bf16(c, in);
      for (size_t k = 0; k < want.size(); ++k) {
        const double err = max_err(got[k], want[k]), nerr = max_err(naive[k], want[k]);
        const double rms = rms_err(got[k], want[k]), nrms = rms_err(naive[k], want[k]);
        // Floor: a small fraction of the output's magnitude (an output the naive run gets exactly right
        // must not demand exactness).
        const double floor = 1e-3 * std::max(1e-6, max_abs(want[k]));
        std::printf("%-10s %-32s %-4s max err %.3e naive %.3e | rms %.3e naive %.3e\n", mode, name_of(c).c_str(),
                    kNames[k], err, nerr, rms, nrms);
        EXPECT_LE(err, 2.0 * nerr + floor) << name_of(c) << " " << kNames[k] << ": max error " << err
                                           << " vs naive bf16 " << nerr;
        EXPECT_LE(rms, 2.0 * nrms + floor) << name_of(c) << " " << kNames[k] << ": rms error " << rms
                                           << " vs naive bf16 " << nrms;
      }
    }
  });
}

// The Mamba1 layer on CUDA (f32: every op of the layer, the scan through the fused op) against the same
// weights on the CPU in f64: the output and every parameter's and the input's gradient.
TEST(CudaSelectiveScan, Mamba1LayerMatchesCpu) {
  REQUIRE_CUDA();
  Mamba1Options o;  // d_state 16, expand 2, d_conv 4
  const int64_t C = 24, B = 2, T = 150;
  cuda_test::expect_layer_matches_cpu<Mamba1>(C, o, B, T);
}

}  // namespace
}  // namespace coil
