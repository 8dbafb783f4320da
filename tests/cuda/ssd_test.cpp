// CUDA Mamba-2 SSD in chunks (ops SsdChunked / SsdChunkedBackward) against the CPU op, the oracle. Each
// check runs the op front-end with autograd on both devices: y, the final state sT, and the gradients
// of q, k, v, a, s0 from loss = sum(y ry) + sum(sT rs) (so the final state's gradient enters the
// backward):
//  - f64 and f32: within ulp-scale tolerances of the CPU op in f64 on the same inputs;
//  - bf16 (q, k, v, y and their gradients; a, s0 and the states stay fp32): every output against the
//    f64 CPU op, with the low-precision rule: max and rms errors at most 2x those of a NAIVE bf16
//    implementation against the same f64 reference. The naive one is the composed chunked form
//    (ssd_chunked_composed: masked decay matrices, per-chunk states, a masked matrix passing them) run
//    by coil's own CUDA ops with every tensor in bf16, its gradients by autograd. So that it sees the
//    same inputs, a and s0 are drawn as bf16 values (the fused op still reads them in fp32).
// Shapes cover G = 1 (q, k shared by every head) and G = H, T not a multiple of the chunk, T = 1, a
// zero and a given initial state, and the paper's head shape (P = 64, N = 128).
// The Mamba2 layer on CUDA (the fused op inside, T across several chunks) matches the layer on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/mamba2.h"
#include "layers/ssm_scan.h"
#include "tests/cuda/cuda_test_util.h"

namespace coil {
namespace {

using cuda_test::max_abs;
using cuda_test::max_err;
using cuda_test::rms_err;

struct Case {
  int64_t B, H, G, T, N, P, chunk;
  bool s0;
};
std::string name_of(const Case& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) + " G=" + std::to_string(c.G) +
         " T=" + std::to_string(c.T) + " N=" + std::to_string(c.N) + " P=" + std::to_string(c.P) +
         " chunk=" + std::to_string(c.chunk) + (c.s0 ? " s0" : " zero-state");
}

const Case kCases[] = {{2, 4, 1, 200, 16, 8, 64, true},  {1, 3, 3, 130, 8, 5, 32, false},
                       {2, 2, 1, 64, 32, 16, 16, true},  {1, 2, 2, 1, 4, 4, 8, true},
                       {1, 2, 1, 300, 128, 64, 128, true}, {1, 2, 2, 100, 12, 7, 256, true}};

// Values in f64 that the case's dtype holds exactly (q, k, v, ry in it; a, s0, rs in fp32, or bf16 for
// the bf16 case so that the naive bf16 composition sees them exactly too).
struct Inputs {
  Tensor q, k, v, a, s0, ry, rs;
};
Inputs make_inputs(const Case& c, DType t, uint64_t seed) {
  Generator gen(seed);
  const DType st = t == DType::F64 ? DType::F64 : (t == DType::BF16 ? DType::BF16 : DType::F32);
  auto as = [](Tensor x, DType d) { return x.to(d).to(DType::F64); };
  Inputs in;
  in.q = as(Tensor::randn({c.B, c.G, c.T, c.N}, gen, DType::F64), t);
  in.k = as(Tensor::randn({c.B, c.G, c.T, c.N}, gen, DType::F64), t);
  in.v = as(Tensor::randn({c.B, c.H, c.T, c.P}, gen, DType::F64), t);
  // a = dt A: dt in Mamba-2's init range and above, A in [-16, -1]: from weak to strong decay.
  in.a = as(scale(exp(Tensor::uniform({c.B, c.H, c.T}, gen, std::log(1e-3), std::log(1.5), DType::F64)), -1.0), st);
  if (c.s0) in.s0 = as(Tensor::randn({c.B, c.H, c.P, c.N}, gen, DType::F64), st);
  in.ry = as(Tensor::randn({c.B, c.H, c.T, c.P}, gen, DType::F64), t);
  in.rs = as(Tensor::randn({c.B, c.H, c.P, c.N}, gen, DType::F64), st);
  return in;
}

// y, sT, dq, dk, dv, da, ds0 (empty without s0).
using Outs = std::vector<std::vector<double>>;
const char* const kNames[] = {"y", "sT", "dq", "dk", "dv", "da", "ds0"};

// The fused op (composed = false) in dtype t with a, s0 in the statistics dtype, or the composed form
// with every tensor in t (the naive run).
Outs run_op(const Case& c, const Inputs& in, DType t, Device dev, bool composed = false) {
  const DType st = composed ? t : (t == DType::F64 ? DType::F64 : DType::F32);
  auto leaf = [&](const Tensor& x, DType d) { return x.to(d).to(dev).detach().set_requires_grad(true); };
  Tensor q = leaf(in.q, t), k = leaf(in.k, t), v = leaf(in.v, t), a = leaf(in.a, st);
  Tensor s0 = in.s0.defined() ? leaf(in.s0, st) : Tensor();
  Tensor sT;
  Tensor y = composed ? ssd_chunked_composed(q, k, v, a, c.chunk, s0, &sT) : ssd_chunked(q, k, v, a, c.chunk, s0, &sT);
  (sum((y * in.ry.to(t).to(dev)).to(st)) + sum(sT * in.rs.to(st).to(dev))).backward();
  auto host = [](const Tensor& x) { return x.to(Device::cpu()).to(DType::F64).to_vector(); };
  return {host(y), host(sT), host(q.grad()), host(k.grad()), host(v.grad()), host(a.grad()),
          s0.defined() ? host(s0.grad()) : std::vector<double>()};
}


// f64: summation order and libm only; f32: fp32 GEMMs over chunks and states over a few hundred tokens.
double tight_tol(DType t) { return t == DType::F64 ? 1e-11 : 2e-4; }

void check_tight(DType t) {
  uint64_t seed = 500;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, t, ++seed);
    const Outs want = run_op(c, in, DType::F64, Device::cpu()), got = run_op(c, in, t, Device::cuda(0));
    for (size_t k = 0; k < want.size(); ++k) {
      const double err = max_err(got[k], want[k]), lim = tight_tol(t) * std::max(1.0, max_abs(want[k]));
      EXPECT_LE(err, lim) << dtype_name(t) << " " << name_of(c) << " " << kNames[k];
    }
  }
}

TEST(CudaSsd, F64MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F64);
}

TEST(CudaSsd, F32MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F32);
}

TEST(CudaSsd, Bf16WithinTwiceNaiveError) {
  REQUIRE_CUDA();
  uint64_t seed = 900;
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c, DType::BF16, ++seed);
    const Outs want = run_op(c, in, DType::F64, Device::cpu());
    const Outs got = run_op(c, in, DType::BF16, Device::cuda(0));
    const Outs naive = run_op(c, in, DType::BF16, Device::cuda(0), true);
    for (size_t k = 0; k < want.size(); ++k) {
      const double err = max_err(got[k], want[k]), nerr = max_err(naive[k], want[k]);
      const double rms = rms_err(got[k], want[k]), nrms = rms_err(naive[k], want[k]);
      // Floor: a small fraction of the output's magnitude (an output the naive run gets exactly right
      // must not demand exactness).
      const double floor = 1e-3 * std::max(1e-6, max_abs(want[k]));
      std::printf("%-52s %-4s max err %.3e naive %.3e | rms %.3e naive %.3e\n", name_of(c).c_str(), kNames[k], err,
                  nerr, rms, nrms);
      EXPECT_LE(err, 2.0 * nerr + floor) << name_of(c) << " " << kNames[k] << ": max error " << err
                                         << " vs naive bf16 " << nerr;
      EXPECT_LE(rms, 2.0 * nrms + floor) << name_of(c) << " " << kNames[k] << ": rms error " << rms
                                         << " vs naive bf16 " << nrms;
    }
  }
}

// The Mamba2 layer on CUDA (f32: every op of the layer, the SSD through the fused op) against the same
// weights on the CPU in f64: the output and every parameter's and the input's gradient.
TEST(CudaSsd, Mamba2LayerMatchesCpu) {
  REQUIRE_CUDA();
  Mamba2Options o;
  o.d_state = 16;
  o.head_dim = 8;
  o.expand = 2;
  o.chunk_size = 16;
  const int64_t C = 24, B = 2, T = 70;
  cuda_test::expect_layer_matches_cpu<Mamba2>(C, o, B, T);
}

}  // namespace
}  // namespace coil
