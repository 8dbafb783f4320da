// CUDA softmax attention (ops Attention / AttentionBackward) against the CPU op, the oracle, for Tq
// queries over Tk >= Tq keys, causal (bottom-right aligned) or not, with and without lse's gradient.
//  - f32 and f64 (native kernels): o and lse through the registry, dq / dk / dv through the autograd
//    front-end (causal_attention, or attention() with lse, + backward), within a few ulp-scale
//    tolerances of the CPU op.
//  - bf16 (cuDNN's fused attention where it takes the call, else the native kernels): every output
//    against the f64 CPU op on the same bf16 inputs, with the low-precision rule of the flash-attention
//    tests: max |err| is at most 2x that of a NAIVE bf16 implementation, both against the f64 reference.
//    The naive implementation (naive_bf16 below) is what a bf16 PyTorch reference does: bf16 inputs,
//    fp32 arithmetic, and every matmul output (S, O, dP, dV, dQ, dK) and the probabilities P and dS
//    rounded to bf16; its lse stays fp32 (as every implementation keeps it).
// Shapes cover T not a multiple of 64, T = 1, D = 64 and 128 (plus 4, 8, 32, 256), B * H > 1.
// With cuDNN built in, the D = 64 / 128 shapes must run on cuDNN (the test names the reason if not),
// the backward with lse's gradient too (composed from plain cuDNN calls: cuDNN's graph takes no dlse;
// see kernels/cuda/cudnn_sdpa.cpp and attention.cu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "tests/cuda/cuda_test_util.h"
#if COIL_HAVE_CUDA
#include "kernels/cuda/attention.h"
#endif

namespace coil {
namespace {

using cuda_test::max_abs;
using cuda_test::max_err;

// One call: Tq queries over Tk keys; dlse: lse is an output of the loss too (the backward's dlse).
struct Shape4 {
  int64_t B, T, H, D;
  int64_t Tk = 0;  // 0: T (square)
  bool causal = true, dlse = false;
  int64_t keys() const { return Tk ? Tk : T; }
  int64_t last(int64_t i) const { return causal ? keys() - T + i : keys() - 1; }  // last visible key
};
std::string name_of(const Shape4& s) {
  return "B=" + std::to_string(s.B) + " Tq=" + std::to_string(s.T) + " Tk=" + std::to_string(s.keys()) +
         " H=" + std::to_string(s.H) + " D=" + std::to_string(s.D) + (s.causal ? " causal" : " full") +
         (s.dlse ? " dlse" : "");
}

// The tensors of one check, drawn in f64 and rounded to `t` (so every dtype sees exact values).
struct Inputs {
  Tensor q, k, v, dO;  // q, dO (B, Tq, H, D), k, v (B, Tk, H, D) f64, values representable in the test dtype
  Tensor dlse;         // (B, H, Tq) f64, bf16-representable (so exact in f32 too)
  double scale;
};
Inputs make_inputs(const Shape4& s, DType t, uint64_t seed) {
  Generator gen(seed);
  auto draw = [&](int64_t T) { return Tensor::randn({s.B, T, s.H, s.D}, gen, DType::F64).to(t).to(DType::F64); };
  Inputs in;
  in.q = draw(s.T);
  in.k = draw(s.keys());
  in.v = draw(s.keys());
  in.dO = draw(s.T);
  in.dlse = Tensor::randn({s.B, s.H, s.T}, gen, DType::F64).to(DType::BF16).to(DType::F64);
  in.scale = 1.0 / std::sqrt(double(s.D));
  return in;
}

// Outputs of one implementation, all as f64 host vectors.
struct Outs {
  std::vector<double> o, lse, dq, dk, dv;
};

// The CPU op in f64 (the oracle): forward through the registry, backward through its kernel.
Outs cpu_reference(const Shape4& s, const Inputs& in) {
  Tensor o = Tensor::empty({s.B, s.T, s.H, s.D}, DType::F64);
  Tensor lse = Tensor::empty({s.B, s.H, s.T}, DType::F64);
  KernelArgs f{Op::Attention, {in.q, in.k, in.v}, {o, lse}, {}};
  f.attrs.scale = in.scale;
  f.attrs.causal = s.causal;
  dispatch(Op::Attention, DType::F64, f);
  Tensor dq = Tensor::empty(o.shape(), DType::F64), dk = Tensor::empty(in.k.shape(), DType::F64),
         dv = Tensor::empty(in.k.shape(), DType::F64);
  KernelArgs b{Op::AttentionBackward, {in.dO, in.q, in.k, in.v, o, lse}, {dq, dk, dv}, {}};
  if (s.dlse) b.in.push_back(in.dlse);
  b.attrs.scale = in.scale;
  b.attrs.causal = s.causal;
  dispatch(Op::AttentionBackward, DType::F64, b);
  return {o.to_vector(), lse.to_vector(), dq.to_vector(), dk.to_vector(), dv.to_vector()};
}

// The CUDA op in dtype t: o and lse through the registry kernel; o, dq, dk, dv through the front-end
// (causal_attention for the square causal case, else attention(), with lse in the loss when s.dlse).
Outs cuda_run(const Shape4& s, const Inputs& in, DType t) {
  const Device gpu = Device::cuda(0);
  Tensor q = in.q.to(t).to(gpu), k = in.k.to(t).to(gpu), v = in.v.to(t).to(gpu);
  Tensor o = Tensor::empty(q.shape(), t, gpu);
  Tensor lse = Tensor::empty({s.B, s.H, s.T}, t == DType::F64 ? DType::F64 : DType::F32, gpu);
  KernelArgs f{Op::Attention, {q, k, v}, {o, lse}, {}};
  f.attrs.scale = in.scale;
  f.attrs.causal = s.causal;
  dispatch(Op::Attention, t, f);

  q.set_requires_grad(true);
  k.set_requires_grad(true);
  v.set_requires_grad(true);
  const Tensor dO = in.dO.to(t).to(gpu);
  Tensor o2;
  if (s.causal && !s.Tk && !s.dlse) {
    o2 = causal_attention(q, k, v, in.scale);
    o2.backward(dO);
  } else {
    Tensor l2;  // (B, Tq, H)
    o2 = attention(q, k, v, in.scale, s.causal, s.dlse ? &l2 : nullptr);
    Tensor loss = sum(o2 * dO);
    if (s.dlse) {
      if (loss.dtype() != l2.dtype()) loss = loss.to(l2.dtype());  // bf16 o, f32 lse
      EXPECT_EQ(l2.to(DType::F64).permute({0, 2, 1}).contiguous().to_vector(), lse.to_vector())
          << "front-end lse differs from the registry kernel's, " << name_of(s);
      loss = loss + sum(l2 * in.dlse.permute({0, 2, 1}).to(l2.dtype()).to(gpu));
    }
    loss.backward();
  }
  Outs r{o.to_vector(), lse.to_vector(), q.grad().to_vector(), k.grad().to_vector(), v.grad().to_vector()};
  EXPECT_EQ(o2.to_vector(), r.o) << "front-end o differs from the registry kernel's, " << name_of(s);
  return r;
}


// --- f32 / f64 ------------------------------------------------------------------------------------------
// Tolerance relative to the output's magnitude: f64 differs from the CPU only by summation order and
// libm; f32 by fp32 accumulation over at most a few hundred keys (errors ~1e-7 relative, 100x margin).
double tight_tol(DType t) { return t == DType::F64 ? 1e-12 : 1e-5; }

const Shape4 kFloatShapes[] = {{2, 128, 2, 64}, {1, 200, 3, 64}, {2, 77, 2, 128}, {2, 33, 3, 4},
                               {1, 1, 2, 8},    {1, 150, 1, 256}, {3, 64, 2, 32},
                               // Tq < Tk causal (a later sequence shard), non-causal (an earlier
                               // shard's keys; Tk < Tq too), with lse's gradient
                               {2, 50, 2, 64, 130}, {1, 1, 2, 32, 77}, {2, 64, 3, 64, 64, false},
                               {1, 90, 2, 16, 40, false}, {2, 50, 2, 64, 130, true, true},
                               {1, 64, 2, 32, 64, false, true}, {2, 40, 2, 8, 0, true, true}};

void check_tight(DType t) {
  uint64_t seed = 100;
  for (const Shape4& s : kFloatShapes) {
    const Inputs in = make_inputs(s, t, ++seed);
    const Outs want = cpu_reference(s, in), got = cuda_run(s, in, t);
    const struct {
      const char* name;
      const std::vector<double>&g, &w;
    } outs[] = {{"o", got.o, want.o}, {"lse", got.lse, want.lse}, {"dq", got.dq, want.dq},
                {"dk", got.dk, want.dk}, {"dv", got.dv, want.dv}};
    for (const auto& x : outs) {
      const double err = max_err(x.g, x.w), lim = tight_tol(t) * std::max(1.0, max_abs(x.w));
      EXPECT_LE(err, lim) << dtype_name(t) << " " << name_of(s) << " " << x.name;
    }
  }
}

TEST(CudaAttention, F64MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F64);
}

TEST(CudaAttention, F32MatchesCpu) {
  REQUIRE_CUDA();
  check_tight(DType::F32);
}

// Non-contiguous q, k, v (a (B, H, T, D) buffer seen as (B, T, H, D)) give the contiguous result.
TEST(CudaAttention, NonContiguousInputs) {
  REQUIRE_CUDA();
  const Shape4 s{2, 40, 3, 16};
  const Inputs in = make_inputs(s, DType::F32, 7);
  const Outs want = cuda_run(s, in, DType::F32);
  const Device gpu = Device::cuda(0);
  auto strided = [&](const Tensor& x) {  // same values, (B, H, T, D) memory order
    return x.to(DType::F32).permute({0, 2, 1, 3}).contiguous().to(gpu).permute({0, 2, 1, 3});
  };
  Tensor q = strided(in.q), k = strided(in.k), v = strided(in.v);
  ASSERT_FALSE(q.is_contiguous());
  q.set_requires_grad(true);
  k.set_requires_grad(true);
  v.set_requires_grad(true);
  Tensor o = causal_attention(q, k, v, in.scale);
  o.backward(in.dO.to(DType::F32).to(gpu));
  EXPECT_EQ(o.to_vector(), want.o);
  EXPECT_EQ(q.grad().to_vector(), want.dq);
  EXPECT_EQ(k.grad().to_vector(), want.dk);
  EXPECT_EQ(v.grad().to_vector(), want.dv);
}

// --- bf16 -----------------------------------------------------------------------------------------------
inline double rb(double x) { return double(bf16_to_float(float_to_bf16(float(x)))); }

// The naive bf16 implementation (see the top of the file), on host vectors of bf16 values.
Outs naive_bf16(const Shape4& s, const Inputs& in) {
  const std::vector<double> q = in.q.to_vector(), k = in.k.to_vector(), v = in.v.to_vector(),
                            dO = in.dO.to_vector(), dl = in.dlse.to_vector();
  const int64_t T = s.T, Tk = s.keys(), D = s.D;
  const float scale = float(in.scale);
  Outs r;
  r.o.assign(q.size(), 0.0);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(k.size(), 0.0);
  r.dv.assign(k.size(), 0.0);
  r.lse.assign(size_t(s.B * s.H * T), 0.0);
  auto at = [&](int64_t b, int64_t t, int64_t h) { return size_t(((b * T + t) * s.H + h) * D); };
  auto kat = [&](int64_t b, int64_t t, int64_t h) { return size_t(((b * Tk + t) * s.H + h) * D); };
  auto dot = [&](const std::vector<double>& a, size_t ia, const std::vector<double>& b, size_t ib) {
    float acc = 0.0f;
    for (int64_t d = 0; d < D; ++d) acc += float(a[ia + size_t(d)]) * float(b[ib + size_t(d)]);
    return acc;
  };
  std::vector<double> P(size_t(T * Tk)), dS(size_t(T * Tk));  // (Tq, Tk) of one (b, h)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      std::fill(P.begin(), P.end(), 0.0);
      std::fill(dS.begin(), dS.end(), 0.0);
      for (int64_t i = 0; i < T; ++i) {
        const int64_t n = s.last(i) + 1;
        std::vector<float> S(static_cast<size_t>(n));
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          S[size_t(j)] = float(rb(scale * dot(q, at(b, i, h), k, kat(b, j, h))));
          mx = std::max(mx, S[size_t(j)]);
        }
        float z = 0.0f;
        for (int64_t j = 0; j < n; ++j) z += std::exp(S[size_t(j)] - mx);
        const float lse = mx + std::log(z);
        const size_t stat = size_t((b * s.H + h) * T + i);
        r.lse[stat] = lse;
        for (int64_t j = 0; j < n; ++j) P[size_t(i * Tk + j)] = rb(std::exp(S[size_t(j)] - lse));
        for (int64_t d = 0; d < D; ++d) {
          float acc = 0.0f;
          for (int64_t j = 0; j < n; ++j) acc += float(P[size_t(i * Tk + j)]) * float(v[kat(b, j, h) + size_t(d)]);
          r.o[at(b, i, h) + size_t(d)] = rb(acc);
        }
        // softmax backward as bf16 autograd computes it: dS = P (dP - sum_j P dP + dlse), rounded
        std::vector<float> dP(static_cast<size_t>(n));
        float delta = s.dlse ? -float(dl[stat]) : 0.0f;
        for (int64_t j = 0; j < n; ++j) {
          dP[size_t(j)] = float(rb(dot(dO, at(b, i, h), v, kat(b, j, h))));
          delta += float(P[size_t(i * Tk + j)]) * dP[size_t(j)];
        }
        for (int64_t j = 0; j < n; ++j)
          dS[size_t(i * Tk + j)] = rb(float(P[size_t(i * Tk + j)]) * (dP[size_t(j)] - delta));
      }
      for (int64_t i = 0; i < T; ++i)
        for (int64_t d = 0; d < D; ++d) {
          float acc = 0.0f;
          for (int64_t j = 0; j <= s.last(i); ++j)
            acc += float(dS[size_t(i * Tk + j)]) * float(k[kat(b, j, h) + size_t(d)]);
          r.dq[at(b, i, h) + size_t(d)] = rb(scale * acc);
        }
      for (int64_t j = 0; j < Tk; ++j)
        for (int64_t d = 0; d < D; ++d) {
          float ak = 0.0f, av = 0.0f;
          for (int64_t i = 0; i < T; ++i) {  // P and dS are 0 where key j is masked
            ak += float(dS[size_t(i * Tk + j)]) * float(q[at(b, i, h) + size_t(d)]);
            av += float(P[size_t(i * Tk + j)]) * float(dO[at(b, i, h) + size_t(d)]);
          }
          r.dk[kat(b, j, h) + size_t(d)] = rb(scale * ak);
          r.dv[kat(b, j, h) + size_t(d)] = rb(av);
        }
    }
  return r;
}

const Shape4 kBf16Shapes[] = {{2, 128, 2, 64}, {1, 200, 3, 64}, {2, 77, 2, 128}, {3, 64, 4, 64},
                              {1, 1, 2, 64},   {1, 320, 2, 128}, {2, 96, 2, 32},  {2, 33, 2, 4},
                              {2, 100, 2, 64, 260}, {1, 64, 2, 128, 192}, {2, 96, 2, 64, 96, false},
                              {1, 70, 2, 64, 33, false}, {2, 100, 2, 64, 260, true, true},
                              {1, 96, 2, 64, 96, false, true}, {2, 40, 2, 32, 72, true, true}};

// Every shape of `shapes` in bf16 against the f64 CPU op, within 2x the naive bf16 error. With
// expect_cudnn (and cuDNN built in) the D = 64 / 128 calls must run on cuDNN (the backward with dlse as
// cuDNN's plain backward plus a forward of P K and a backward for P^T (dlse q), attention.cu).
void check_bf16(const std::vector<Shape4>& shapes, bool expect_cudnn, uint64_t seed) {
  for (const Shape4& s : shapes) {
    std::string impl = "native";
#if COIL_HAVE_CUDA
    std::string why_f, why_b;
    const cuda::AttentionShape as{s.B, s.T, s.keys(), s.H, s.D, s.causal, s.dlse};
    const auto f = cuda::bf16_attention_impl(0, as, false, &why_f);
    const auto b = cuda::bf16_attention_impl(0, as, true, &why_b);
    impl = std::string("fwd ") + cuda::attention_impl_name(f) + ", bwd " + cuda::attention_impl_name(b);
    if (expect_cudnn && cuda::cudnn_attention_built() && (s.D == 64 || s.D == 128)) {
      EXPECT_EQ(f, cuda::AttentionImpl::CuDNN) << name_of(s) << ": " << why_f;
      EXPECT_EQ(b, cuda::AttentionImpl::CuDNN) << name_of(s) << ": " << why_b;
    }
    if (b == cuda::AttentionImpl::Native && !why_b.empty()) impl += " (" + why_b.substr(0, 200) + ")";
#endif
    const Inputs in = make_inputs(s, DType::BF16, ++seed);
    const Outs want = cpu_reference(s, in), got = cuda_run(s, in, DType::BF16), naive = naive_bf16(s, in);
    const struct {
      const char* name;
      const std::vector<double>&g, &n, &w;
    } outs[] = {{"o", got.o, naive.o, want.o},       {"lse", got.lse, naive.lse, want.lse},
                {"dq", got.dq, naive.dq, want.dq},   {"dk", got.dk, naive.dk, want.dk},
                {"dv", got.dv, naive.dv, want.dv}};
    std::string line;
    for (const auto& x : outs) {
      const double err = max_err(x.g, x.w), naive_err = max_err(x.n, x.w);
      // A floor of 1e-5 of the magnitude keeps exact cases (T = 1: o = v) from demanding bit equality.
      const double lim = 2.0 * naive_err + 1e-5 * std::max(1.0, max_abs(x.w));
      EXPECT_LE(err, lim) << "bf16 " << name_of(s) << " " << x.name << " (" << impl << "): error " << err
                          << ", naive bf16 error " << naive_err;
      char buf[96];
      std::snprintf(buf, sizeof(buf), " %s %.2e/%.2e", x.name, err, naive_err);
      line += buf;
    }
    std::printf("[attention bf16] %-44s %-26s err/naive:%s\n", name_of(s).c_str(), impl.c_str(), line.c_str());
  }
}

TEST(CudaAttention, Bf16WithinTwiceNaiveError) {
  REQUIRE_CUDA();
#if COIL_HAVE_CUDA
  std::printf("[attention bf16] %s\n", cuda::cudnn_attention_info().c_str());
#endif
  check_bf16(std::vector<Shape4>(std::begin(kBf16Shapes), std::end(kBf16Shapes)), true, 500);
}

// The native bf16 kernels (what runs where cuDNN takes no call) on the prefix, non-causal and dlse
// shapes, with cuDNN switched off for the test.
TEST(CudaAttention, Bf16NativeKernelsWithinTwiceNaiveError) {
  REQUIRE_CUDA();
  const char* before = std::getenv("COIL_CUDNN_ATTENTION");
  const std::string saved = before ? before : "";
  setenv("COIL_CUDNN_ATTENTION", "0", 1);
  check_bf16({{2, 100, 2, 64, 260}, {1, 70, 2, 64, 33, false}, {2, 100, 2, 64, 260, true, true},
              {1, 96, 2, 64, 96, false, true}, {2, 64, 2, 64}},
             false, 900);
  if (before) setenv("COIL_CUDNN_ATTENTION", saved.c_str(), 1);
  else unsetenv("COIL_CUDNN_ATTENTION");
}

}  // namespace
}  // namespace coil
