// The softmax-attention decode step (op AttentionDecode, core/ops.h attention_decode).
//  - CPU (always runs): in f64 it equals the composed path the layer used before, prefix_attention of
//    one query over the cache, to 1e-12; with grad mode on, an input that requires grad is refused.
//  - CUDA (skips without a device): f32 and f64 against the CPU op on the same values, at caches from
//    one key to several thousand (one split and many), head dims on the 128-bit load path (64, 128)
//    and off it (36, 6); bf16 against the f64 CPU op on the same bf16 values, with max |err| at most 2x
//    that of a naive bf16 implementation (bf16 inputs, fp32 arithmetic, the scores S, the probabilities
//    P and the output rounded to bf16, as a bf16 PyTorch reference computes it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/dtype.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/prefix_attention.h"
#include "tests/cuda/cuda_test_util.h"

namespace coil {
namespace {

struct Dims {
  int64_t B, P, H, D;
};
std::string name_of(const Dims& s) {
  return "B=" + std::to_string(s.B) + " P=" + std::to_string(s.P) + " H=" + std::to_string(s.H) +
         " D=" + std::to_string(s.D);
}

// q (B, 1, H, D), k, v (B, P, H, D) in f64 holding values representable in t.
struct Inputs {
  Tensor q, k, v;
};
Inputs make_inputs(const Dims& s, DType t, uint64_t seed) {
  Generator gen(seed);
  auto draw = [&](int64_t T) { return Tensor::randn({s.B, T, s.H, s.D}, gen, DType::F64).to(t).to(DType::F64); };
  Inputs in;
  in.q = draw(1);
  in.k = draw(s.P);
  in.v = draw(s.P);
  return in;
}

std::vector<double> run(const Inputs& in, DType t, Device dev) {
  NoGradGuard ng;
  return attention_decode(in.q.to(t).to(dev), in.k.to(t).to(dev), in.v.to(t).to(dev))
      .to(Device::cpu())
      .to(DType::F64)
      .to_vector();
}

double max_err(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0.0;
  for (size_t i = 0; i < a.size(); ++i) e = std::max(e, std::abs(a[i] - b[i]));
  return e;
}

inline double rb(double x) { return double(bf16_to_float(float_to_bf16(float(x)))); }

std::vector<double> naive_bf16(const Dims& s, const Inputs& in) {
  const std::vector<double> q = in.q.to_vector(), k = in.k.to_vector(), v = in.v.to_vector();
  const float scale = float(1.0 / std::sqrt(double(s.D)));
  std::vector<double> o(q.size());
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      auto kv = [&](int64_t j) { return size_t(((b * s.P + j) * s.H + h) * s.D); };
      const size_t qi = size_t((b * s.H + h) * s.D);
      std::vector<float> S(size_t(s.P));
      float mx = -INFINITY;
      for (int64_t j = 0; j < s.P; ++j) {
        float acc = 0.0f;
        for (int64_t d = 0; d < s.D; ++d) acc += float(q[qi + size_t(d)]) * float(k[kv(j) + size_t(d)]);
        S[size_t(j)] = float(rb(scale * acc));
        mx = std::max(mx, S[size_t(j)]);
      }
      float z = 0.0f;
      for (float x : S) z += std::exp(x - mx);
      const float lse = mx + std::log(z);
      for (int64_t d = 0; d < s.D; ++d) {
        float acc = 0.0f;
        for (int64_t j = 0; j < s.P; ++j)
          acc += float(rb(std::exp(S[size_t(j)] - lse))) * float(v[kv(j) + size_t(d)]);
        o[qi + size_t(d)] = rb(acc);
      }
    }
  return o;
}

TEST(AttentionDecodeCpu, MatchesPrefixAttentionInF64) {
  for (const Dims& s : {Dims{2, 1, 3, 8}, Dims{3, 57, 2, 16}, Dims{1, 300, 4, 64}}) {
    const Inputs in = make_inputs(s, DType::F64, 11 + uint64_t(s.P));
    NoGradGuard ng;
    const double sm = 1.0 / std::sqrt(double(s.D));
    const std::vector<double> got = attention_decode(in.q, in.k, in.v).to_vector();
    const std::vector<double> want = prefix_attention(in.q, in.k, in.v, sm).to_vector();
    ASSERT_EQ(got.size(), want.size());
    EXPECT_LE(max_err(got, want), 1e-12) << name_of(s);
  }
}

TEST(AttentionDecodeCpu, RefusesInputsThatRequireGrad) {
  const Inputs in = make_inputs({1, 4, 2, 8}, DType::F64, 5);
  Tensor q = in.q.detach().set_requires_grad(true);
  try {
    attention_decode(q, in.k, in.v);
    FAIL() << "attention_decode took a q that requires grad";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("forward only"), std::string::npos) << e.what();
  }
  NoGradGuard ng;  // under no-grad the same call runs
  EXPECT_EQ(attention_decode(q, in.k, in.v).shape(), (Shape{1, 1, 2, 8}));
}

const std::vector<Dims> kShapes = {{2, 1, 3, 64},    {2, 100, 3, 64}, {3, 5000, 2, 64},  {1, 2500, 2, 128},
                                   {2, 700, 3, 36},  {2, 3000, 1, 6}, {1, 40000, 2, 64}, {4, 33, 16, 128}};

TEST(CudaAttentionDecode, MatchesTheCpuInF32AndF64) {
  REQUIRE_CUDA();
  uint64_t seed = 100;
  for (const Dims& s : kShapes)
    for (DType t : {DType::F32, DType::F64}) {
      const Inputs in = make_inputs(s, t, ++seed);
      const std::vector<double> got = run(in, t, Device::cuda()), want = run(in, t, Device::cpu());
      const double tol = t == DType::F64 ? 1e-12 : 2e-6;
      EXPECT_LE(max_err(got, want), tol) << name_of(s) << " " << dtype_name(t);
    }
}

TEST(CudaAttentionDecode, Bf16WithinTwiceTheNaiveError) {
  REQUIRE_CUDA();
  uint64_t seed = 200;
  for (const Dims& s : kShapes) {
    const Inputs in = make_inputs(s, DType::BF16, ++seed);
    const std::vector<double> want = run(in, DType::F64, Device::cpu());
    const std::vector<double> got = run(in, DType::BF16, Device::cuda()), naive = naive_bf16(s, in);
    const double err = max_err(got, want), naive_err = max_err(naive, want);
    EXPECT_LE(err, 2.0 * naive_err + 1e-5) << name_of(s) << ": error " << err << ", naive bf16 " << naive_err;
    std::printf("[attention_decode bf16] %-26s err %.2e naive %.2e\n", name_of(s).c_str(), err, naive_err);
  }
}

}  // namespace
}  // namespace coil
