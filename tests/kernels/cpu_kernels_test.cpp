// Direct tests of the CPU reference kernels (kernels/cpu), called through the registry without the op
// front-ends: hand-computed values for the contract details (transposes, broadcast, reverse, ignore
// rows, range checks, dtype coverage), and central differences for every fused backward kernel (f64).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "core/registry.h"
#include "core/tensor.h"
#include "kernels/cpu/matmul.h"

namespace coil {
namespace {

using Vec = std::vector<double>;

Tensor f64(const Vec& v, const Shape& s) { return Tensor::from_vector(v, s, DType::F64); }
Tensor ids(const std::vector<int64_t>& v) {
  return Tensor::from_ints(v, {int64_t(v.size())}, DType::I32);
}
Tensor empty64(const Shape& s) { return Tensor::empty(s, DType::F64); }

// A view of `base`'s storage with the given geometry (no autograd, no checks).
Tensor raw_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset = 0) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

void run(Op op, std::vector<Tensor> in, std::vector<Tensor> out, const OpAttrs& attrs = {},
         DType t = DType::F64) {
  KernelArgs args{op, std::move(in), std::move(out), attrs};
  Registry::instance().lookup(Backend::CPU, op, t)(args);
}

void expect_near(const Vec& got, const Vec& want, double tol, const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << what << " [" << i << "]";
}

Vec random_vec(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (double& x : v) x = dist(gen);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central-difference gradient of loss() with respect to every element of the f64 tensor x.
Vec numeric_grad(const Tensor& x, const std::function<double()>& loss, double h = 1e-6) {
  double* p = x.data<double>();
  Vec g(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double keep = p[i];
    p[i] = keep + h;
    const double up = loss();
    p[i] = keep - h;
    const double down = loss();
    p[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// --- registry coverage ---------------------------------------------------------------------------------

TEST(CpuKernels, EveryOpHasF32AndF64) {
  for (int i = 0; i < kNumOps; ++i) {
    const Op op = Op(i);
    EXPECT_TRUE(supports(Backend::CPU, op, DType::F32)) << op_name(op);
    EXPECT_TRUE(supports(Backend::CPU, op, DType::F64)) << op_name(op);
  }
}

TEST(CpuKernels, Bf16OnlyForMemoryOps) {
  EXPECT_FALSE(supports(Backend::CPU, Op::Exp, DType::BF16));
  EXPECT_FALSE(supports(Backend::CPU, Op::Matmul, DType::BF16));
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64}) {
    EXPECT_TRUE(supports(Backend::CPU, Op::Copy, t)) << t;
    EXPECT_TRUE(supports(Backend::CPU, Op::Fill, t)) << t;
  }
}

// --- memory ---------------------------------------------------------------------------------------------

TEST(CpuKernels, CopyConvertsAndFollowsStrides) {
  Tensor src = f64({2.7, -2.7, 0.5, 1e9 + 0.9, -7.0, 3.0}, {2, 3});
  Tensor src_t = raw_view(src, {3, 2}, {1, 3});  // transposed view
  Tensor dst = Tensor::empty({3, 2}, DType::I64);
  run(Op::Copy, {src_t}, {dst}, {}, DType::I64);
  EXPECT_EQ(dst.to_ints(), (std::vector<int64_t>{2, 1000000000, -2, -7, 0, 3}));

  // f64 -> bf16 rounds to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  Tensor b = Tensor::empty({2}, DType::BF16);
  run(Op::Copy, {f64({1.0 + 1.0 / 256, 1.0 + 3.0 / 256}, {2})}, {b}, {}, DType::BF16);
  Tensor back = Tensor::empty({2}, DType::F32);
  run(Op::Copy, {b}, {back}, {}, DType::F32);
  expect_near(back.to_vector(), {1.0, 1.0 + 4.0 / 256}, 0);
}

TEST(CpuKernels, FillStridedViewOnly) {
  Tensor base = f64({0, 0, 0, 0, 0, 0}, {2, 3});
  OpAttrs at;
  at.alpha = 5.0;
  run(Op::Fill, {}, {raw_view(base, {2}, {3}, 1)}, at);  // column 1
  expect_near(base.to_vector(), {0, 5, 0, 0, 5, 0}, 0);
  Tensor i = Tensor::empty({3}, DType::I32);
  at.alpha = -2.9;
  run(Op::Fill, {}, {i}, at, DType::I32);
  EXPECT_EQ(i.to_ints(), (std::vector<int64_t>{-2, -2, -2}));
}

TEST(CpuKernels, ConcatStridedInputs) {
  Tensor a = f64({1, 2, 3, 4}, {2, 2});
  Tensor a_t = raw_view(a, {2, 2}, {1, 2});  // [[1, 3], [2, 4]]
  Tensor b = f64({9, 8}, {2, 1});
  Tensor out = empty64({2, 3});
  OpAttrs at;
  at.dim = 1;
  run(Op::Concat, {a_t, b}, {out}, at);
  expect_near(out.to_vector(), {1, 3, 9, 2, 4, 8}, 0);
}

// --- elementwise ----------------------------------------------------------------------------------------

TEST(CpuKernels, AddWithStrideZeroBroadcast) {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor row = f64({10, 20, 30}, {3});
  Tensor b = raw_view(row, {2, 3}, {0, 1});  // row broadcast over dim 0
  Tensor out = empty64({2, 3});
  run(Op::Add, {a, b}, {out});
  expect_near(out.to_vector(), {11, 22, 33, 14, 25, 36}, 0);
  // a transposed (non-contiguous) minus a column broadcast along dim 1
  Tensor col = f64({100, 200}, {2, 1});
  Tensor a_t = raw_view(a, {3, 2}, {1, 3});  // [[1, 4], [2, 5], [3, 6]]
  Tensor out2 = empty64({3, 2});
  run(Op::Sub, {a_t, raw_view(col, {3, 2}, {0, 1})}, {out2});
  expect_near(out2.to_vector(), {-99, -196, -98, -195, -97, -194}, 0);
}

TEST(CpuKernels, UnaryEdgeCases) {
  Tensor x = f64({-1000, -1, 0, 1, 30, 1000}, {6});
  Tensor y = empty64({6});
  run(Op::Softplus, {x}, {y});
  expect_near(y.to_vector(), {0, std::log1p(std::exp(-1.0)), std::log(2.0), std::log1p(std::exp(1.0)),
                              30, 1000},
              1e-12);
  run(Op::Sigmoid, {x}, {y});
  expect_near(y.to_vector(), {0, 1 / (1 + std::exp(1.0)), 0.5, 1 / (1 + std::exp(-1.0)), 1, 1}, 1e-12);
  OpAttrs at;
  at.alpha = 2;
  at.beta = -1;
  run(Op::Scale, {x}, {y}, at);
  expect_near(y.to_vector(), {-2001, -3, -1, 1, 59, 1999}, 0);
  run(Op::Relu, {x}, {y});
  expect_near(y.to_vector(), {0, 0, 0, 1, 30, 1000}, 0);
  run(Op::ReluBackward, {f64({1, 2, 3, 4, 5, 6}, {6}), x}, {y});
  expect_near(y.to_vector(), {0, 0, 0, 4, 5, 6}, 0);
}

// --- reductions -----------------------------------------------------------------------------------------

TEST(CpuKernels, CumsumForwardAndReverse) {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = empty64({2, 3});
  OpAttrs at;
  at.dim = 1;
  at.reverse = true;
  run(Op::Cumsum, {x}, {y}, at);
  expect_near(y.to_vector(), {6, 5, 3, 15, 11, 6}, 0);
  at.dim = 0;
  at.reverse = false;
  run(Op::Cumsum, {x}, {y}, at);
  expect_near(y.to_vector(), {1, 2, 3, 5, 7, 9}, 0);
}

TEST(CpuKernels, SumMeanMaxOverMiddleDim) {
  Tensor x = f64({1, 5, 3, 2, 3, 7, 0, 7}, {2, 2, 2});
  Tensor y = empty64({2, 1, 2});
  OpAttrs at;
  at.dim = 1;
  run(Op::Sum, {x}, {y}, at);
  expect_near(y.to_vector(), {4, 7, 3, 14}, 0);
  run(Op::Mean, {x}, {y}, at);
  expect_near(y.to_vector(), {2, 3.5, 1.5, 7}, 0);
  run(Op::Max, {x}, {y}, at);
  expect_near(y.to_vector(), {3, 5, 3, 7}, 0);
  // The gradient goes to the first index attaining the max (the tie 7, 7 routes to the first).
  Tensor dx = empty64({2, 2, 2});
  run(Op::MaxBackward, {f64({10, 20, 30, 40}, {2, 1, 2}), x, y}, {dx}, at);
  expect_near(dx.to_vector(), {0, 20, 10, 0, 30, 40, 0, 0}, 0);
  Tensor ss = empty64({});
  run(Op::SumSquares, {x}, {ss});
  EXPECT_EQ(ss.item(), 1 + 25 + 9 + 4 + 9 + 49 + 0 + 49);
}

// --- matmul ---------------------------------------------------------------------------------------------

TEST(CpuKernels, MatmulHandValues) {
  Tensor a = f64({1, 2, 3, 4}, {1, 2, 2});
  Tensor b = f64({5, 6, 7, 8}, {1, 2, 2});
  Tensor out = empty64({1, 2, 2});
  run(Op::Matmul, {a, b}, {out});
  expect_near(out.to_vector(), {19, 22, 43, 50}, 0);
  OpAttrs at;
  at.beta = 1.0;  // accumulate: out += a b
  run(Op::Matmul, {a, b}, {out}, at);
  expect_near(out.to_vector(), {38, 44, 86, 100}, 0);
}

// Every transpose combination, with a broadcast (batch 1) operand on either side.
TEST(CpuKernels, MatmulTransposesAndBroadcastBatch) {
  const int64_t Bt = 3, M = 4, K = 5, N = 6;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (int bcast = 0; bcast < 2; ++bcast) {
        const int64_t Ba = bcast == 0 ? 1 : Bt, Bb = bcast == 0 ? Bt : 1;
        const Vec A = random_vec(Ba * M * K, 1), Bm = random_vec(Bb * K * N, 2);  // logical layouts
        Vec a_stored(A.size()), b_stored(Bm.size());
        for (int64_t p = 0; p < Ba; ++p)
          for (int64_t i = 0; i < M; ++i)
            for (int64_t k = 0; k < K; ++k)
              a_stored[p * M * K + (ta ? k * M + i : i * K + k)] = A[(p * M + i) * K + k];
        for (int64_t p = 0; p < Bb; ++p)
          for (int64_t k = 0; k < K; ++k)
            for (int64_t j = 0; j < N; ++j)
              b_stored[p * K * N + (tb ? j * K + k : k * N + j)] = Bm[(p * K + k) * N + j];
        Vec want(Bt * M * N, 0.0);
        for (int64_t p = 0; p < Bt; ++p)
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
              for (int64_t k = 0; k < K; ++k)
                want[(p * M + i) * N + j] += A[((Ba == 1 ? 0 : p) * M + i) * K + k] *
                                             Bm[((Bb == 1 ? 0 : p) * K + k) * N + j];
        Tensor a = f64(a_stored, ta ? Shape{Ba, K, M} : Shape{Ba, M, K});
        Tensor b = f64(b_stored, tb ? Shape{Bb, N, K} : Shape{Bb, K, N});
        Tensor out = empty64({Bt, M, N});
        OpAttrs at;
        at.trans_a = ta;
        at.trans_b = tb;
        run(Op::Matmul, {a, b}, {out}, at);
        expect_near(out.to_vector(), want, 1e-12,
                    "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                        " bcast=" + std::to_string(bcast));
      }
    }
  }
}

TEST(CpuKernels, GemmCblasAndLoopsAgree) {
  // N > the loop GEMM's 256-column block, odd sizes everywhere.
  const int64_t M = 37, K = 41, N = 301;
  const Vec A = random_vec(M * K, 3), B = random_vec(K * N, 4), C0 = random_vec(M * N, 5);
  for (int flags = 0; flags < 8; ++flags) {
    cpu::GemmArgs<double> g;
    g.trans_a = flags & 1;
    g.trans_b = flags & 2;
    g.accumulate = flags & 4;
    g.M = M, g.N = N, g.K = K;
    g.a = A.data();
    g.b = B.data();
    Vec c1 = C0, c2 = C0;
    g.c = c1.data();
    cpu::gemm(g);
    g.c = c2.data();
    cpu::gemm_loops(g);
    expect_near(c1, c2, 1e-12, "flags " + std::to_string(flags));

    std::vector<float> af(A.begin(), A.end()), bf(B.begin(), B.end()), cf1(C0.begin(), C0.end());
    std::vector<float> cf2 = cf1;
    cpu::GemmArgs<float> h;
    h.trans_a = g.trans_a, h.trans_b = g.trans_b, h.accumulate = g.accumulate;
    h.M = M, h.N = N, h.K = K;
    h.a = af.data();
    h.b = bf.data();
    h.c = cf1.data();
    cpu::gemm(h);
    h.c = cf2.data();
    cpu::gemm_loops(h);
    for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(cf1[i], cf2[i], 1e-4) << "f32 flags " << flags;
  }
  std::cout << "gemm uses CBLAS: " << (cpu::gemm_uses_cblas() ? "yes" : "no") << "\n";
}

TEST(CpuKernels, LinearWithAndWithoutBias) {
  Tensor x = f64({1, 2, 3, 4}, {2, 2});       // (M=2, K=2)
  Tensor w = f64({1, 0, 1, 1, 0, 2}, {3, 2});  // (N=3, K=2)
  Tensor y = empty64({2, 3});
  run(Op::Linear, {x, w}, {y});
  expect_near(y.to_vector(), {1, 3, 4, 3, 7, 8}, 0);
  run(Op::Linear, {x, w, f64({10, 20, 30}, {3})}, {y});
  expect_near(y.to_vector(), {11, 23, 34, 13, 27, 38}, 0);
}

// --- model ops ------------------------------------------------------------------------------------------

TEST(CpuKernels, EmbeddingLookupAndRangeCheck) {
  Tensor table = f64({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor out = empty64({3, 2});
  run(Op::Embedding, {table, ids({2, 0, 2})}, {out});
  expect_near(out.to_vector(), {20, 21, 0, 1, 20, 21}, 0);
  Tensor dtable = empty64({3, 2});
  run(Op::EmbeddingBackward, {f64({1, 2, 3, 4, 5, 6}, {3, 2}), ids({2, 0, 2})}, {dtable});
  expect_near(dtable.to_vector(), {3, 4, 0, 0, 6, 8}, 0);
  for (int64_t bad : {3, -1}) {
    try {
      run(Op::Embedding, {table, ids({0, bad})}, {empty64({2, 2})});
      ADD_FAILURE() << "id " << bad << " did not throw";
    } catch (const Error& e) {
      const std::string msg = e.message();
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("position 1"), std::string::npos) << msg;
    }
  }
}

TEST(CpuKernels, CrossEntropyIgnoreIndex) {
  // Row 0: uniform over 2 classes, target 1. Row 1: ignored. Row 2: logits (1, 0), target 0.
  Tensor logits = f64({0, 0, 5, -5, 1, 0}, {3, 2});
  Tensor targets = ids({1, -100, 0});
  Tensor loss = empty64({}), lse = empty64({3});
  run(Op::CrossEntropy, {logits, targets}, {loss, lse});
  const double l2 = std::log1p(std::exp(-1.0));
  EXPECT_NEAR(loss.item(), (std::log(2.0) + l2) / 2, 1e-14);
  EXPECT_NEAR(lse.to_vector()[2], 1 + l2, 1e-14);
  Tensor dlogits = empty64({3, 2});
  run(Op::CrossEntropyBackward, {f64({2.0}, {}), logits, targets, lse}, {dlogits});
  const double s1 = 1 / (1 + std::exp(-1.0));  // softmax(1, 0)[0]
  expect_near(dlogits.to_vector(), {0.5, -0.5, 0, 0, s1 - 1, 1 - s1}, 1e-14);

  // Every row ignored: loss 0, gradient 0.
  Tensor none = ids({-100, -100, -100});
  run(Op::CrossEntropy, {logits, none}, {loss, lse});
  EXPECT_EQ(loss.item(), 0.0);
  run(Op::CrossEntropyBackward, {f64({1.0}, {}), logits, none, lse}, {dlogits});
  expect_near(dlogits.to_vector(), {0, 0, 0, 0, 0, 0}, 0);

  OpAttrs at;
  at.ignore_index = -1;
  EXPECT_THROW(run(Op::CrossEntropy, {logits, ids({0, 2, -1})}, {loss, lse}, at), Error);
  EXPECT_THROW(run(Op::CrossEntropy, {logits, ids({0, -100, 1})}, {loss, lse}, at), Error);
}

TEST(CpuKernels, Conv1dMatchesDirectFormula) {
  const int64_t B = 2, T = 5, C = 3;
  for (int64_t W = 1; W <= 4; ++W) {
    const Vec x = random_vec(B * T * C, 10 + W), w = random_vec(C * W, 20 + W), b = random_vec(C, 30);
    Vec want(B * T * C);
    for (int64_t bi = 0; bi < B; ++bi)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) {
          double s = b[c];
          for (int64_t k = 0; k < W; ++k) {
            const int64_t src = t - (W - 1) + k;
            if (src >= 0) s += w[c * W + k] * x[(bi * T + src) * C + c];
          }
          want[(bi * T + t) * C + c] = s;
        }
    Tensor y = empty64({B, T, C});
    run(Op::Conv1d, {f64(x, {B, T, C}), f64(w, {C, W}), f64(b, {C})}, {y});
    expect_near(y.to_vector(), want, 1e-14, "W=" + std::to_string(W));
  }
  // Hand value: W = 2, one channel, w = (0.5, 2), b = 1, x = (1, 2, 3) -> (1+2, 1+0.5+4, 1+1+6).
  Tensor y = empty64({1, 3, 1});
  run(Op::Conv1d, {f64({1, 2, 3}, {1, 3, 1}), f64({0.5, 2}, {1, 2}), f64({1}, {1})}, {y});
  expect_near(y.to_vector(), {3, 5.5, 8}, 0);
}

TEST(CpuKernels, RopeRotatesPairsAndReverses) {
  // D = 4: pair 0 turns by p, pair 1 by p / theta^(1/2) = p / 10 for theta = 100.
  Tensor x = f64({1, 0, 0, 1}, {1, 1, 1, 4});
  Tensor y = empty64({1, 1, 1, 4});
  OpAttrs at;
  at.theta = 100;
  at.pos_offset = 3;
  run(Op::Rope, {x}, {y}, at);
  expect_near(y.to_vector(), {std::cos(3.0), std::sin(3.0), -std::sin(0.3), std::cos(0.3)}, 1e-14);
  Tensor z = empty64({1, 1, 1, 4});
  at.reverse = true;
  run(Op::Rope, {y}, {z}, at);
  expect_near(z.to_vector(), {1, 0, 0, 1}, 1e-14);
}

TEST(CpuKernels, AttentionHandValues) {
  // B = H = 1, T = 2, D = 1: query 0 sees key 0 only; query 1 mixes both.
  Tensor q = f64({1, 2}, {1, 2, 1, 1}), k = f64({3, 1}, {1, 2, 1, 1}), v = f64({10, 20}, {1, 2, 1, 1});
  Tensor o = empty64({1, 2, 1, 1}), lse = empty64({1, 1, 2});
  OpAttrs at;
  at.scale = 0.5;
  run(Op::Attention, {q, k, v}, {o, lse}, at);
  const double s10 = 0.5 * 2 * 3, s11 = 0.5 * 2 * 1;
  const double l1 = std::log(std::exp(s10) + std::exp(s11));
  expect_near(lse.to_vector(), {1.5, l1}, 1e-14);
  expect_near(o.to_vector(), {10, (10 * std::exp(s10) + 20 * std::exp(s11)) / std::exp(l1)}, 1e-14);
}

TEST(CpuKernels, AdamWOneStep) {
  Tensor p = f64({1, -1}, {2}), g = f64({0.5, -2}, {2}), m = f64({0, 0}, {2}), v = f64({0, 0}, {2});
  OpAttrs at;
  at.lr = 0.1, at.beta1 = 0.9, at.beta2 = 0.999, at.eps = 1e-8, at.weight_decay = 0.1, at.step = 1;
  run(Op::AdamW, {p, g, m, v}, {}, at);
  // Decay: p * (1 - 0.01). Step 1: mhat = g, vhat = g^2, so the update is lr * g / (|g| + eps).
  expect_near(p.to_vector(), {0.99 - 0.1 * 0.5 / (0.5 + 1e-8), -0.99 + 0.1 * 2 / (2 + 1e-8)}, 1e-15);
  expect_near(m.to_vector(), {0.05, -0.2}, 1e-15);
  expect_near(v.to_vector(), {0.00025, 0.004}, 1e-15);
  // Step 2 with g = 0: m = 0.045, v = 0.00024975, mhat = 0.045 / 0.19, vhat = 0.00024975 / 0.001999.
  const double p1 = p.to_vector()[0];
  OpAttrs at2 = at;
  at2.step = 2;
  run(Op::AdamW, {p, f64({0, 0}, {2}), m, v}, {}, at2);
  const double mhat = 0.045 / 0.19, vhat = 0.00024975 / (1 - 0.999 * 0.999);
  EXPECT_NEAR(p.to_vector()[0], p1 * 0.99 - 0.1 * mhat / (std::sqrt(vhat) + 1e-8), 1e-14);
}

// --- fused backward kernels against central differences (f64) ------------------------------------------

TEST(CpuKernels, RMSNormBackwardMatchesFiniteDifferences) {
  const int64_t M = 3, C = 5;
  Tensor x = f64(random_vec(M * C, 40), {M, C}), w = f64(random_vec(C, 41), {C});
  const Vec r = random_vec(M * C, 42);
  OpAttrs at;
  at.eps = 1e-3;
  Tensor y = empty64({M, C}), rstd = empty64({M});
  auto loss = [&] {
    run(Op::RMSNorm, {x, w}, {y, rstd}, at);
    return dot(y.to_vector(), r);
  };
  const Vec gx = numeric_grad(x, loss), gw = numeric_grad(w, loss);
  loss();
  Tensor dx = empty64({M, C}), dw = empty64({C});
  run(Op::RMSNormBackward, {f64(r, {M, C}), x, w, rstd}, {dx, dw}, at);
  expect_near(dx.to_vector(), gx, 1e-7, "dx");
  expect_near(dw.to_vector(), gw, 1e-7, "dw");
}

TEST(CpuKernels, SwiGLUAndSoftmaxBackwardMatchFiniteDifferences) {
  const int64_t M = 2, n = 4;
  Tensor gate = f64(random_vec(M * n, 50, -3, 3), {M, n}), up = f64(random_vec(M * n, 51), {M, n});
  const Vec r = random_vec(M * n, 52);
  Tensor y = empty64({M, n});
  auto swiglu_loss = [&] {
    run(Op::SwiGLU, {gate, up}, {y});
    return dot(y.to_vector(), r);
  };
  const Vec gg = numeric_grad(gate, swiglu_loss), gu = numeric_grad(up, swiglu_loss);
  Tensor dg = empty64({M, n}), du = empty64({M, n});
  run(Op::SwiGLUBackward, {f64(r, {M, n}), gate, up}, {dg, du});
  expect_near(dg.to_vector(), gg, 1e-7, "dgate");
  expect_near(du.to_vector(), gu, 1e-7, "dup");

  auto softmax_loss = [&] {
    run(Op::Softmax, {gate}, {y});
    return dot(y.to_vector(), r);
  };
  const Vec gs = numeric_grad(gate, softmax_loss);
  Tensor dx = empty64({M, n});
  run(Op::SoftmaxBackward, {f64(r, {M, n}), gate}, {dx});  // takes the input x, recomputes y
  expect_near(dx.to_vector(), gs, 1e-7, "softmax dx");
}

TEST(CpuKernels, AttentionBackwardMatchesFiniteDifferences) {
  const int64_t B = 2, T = 4, H = 2, D = 3;
  const Shape s{B, T, H, D};
  Tensor q = f64(random_vec(B * T * H * D, 60), s), k = f64(random_vec(B * T * H * D, 61), s),
         v = f64(random_vec(B * T * H * D, 62), s);
  const Vec r = random_vec(B * T * H * D, 63);
  OpAttrs at;
  at.scale = 0.7;
  Tensor o = empty64(s), lse = empty64({B, H, T});
  auto loss = [&] {
    run(Op::Attention, {q, k, v}, {o, lse}, at);
    return dot(o.to_vector(), r);
  };
  const Vec gq = numeric_grad(q, loss), gk = numeric_grad(k, loss), gv = numeric_grad(v, loss);
  loss();
  Tensor dq = empty64(s), dk = empty64(s), dv = empty64(s);
  run(Op::AttentionBackward, {f64(r, s), q, k, v, o, lse}, {dq, dk, dv}, at);
  expect_near(dq.to_vector(), gq, 1e-7, "dq");
  expect_near(dk.to_vector(), gk, 1e-7, "dk");
  expect_near(dv.to_vector(), gv, 1e-7, "dv");
}

TEST(CpuKernels, CrossEntropyAndConvBackwardMatchFiniteDifferences) {
  const int64_t M = 4, V = 5;
  Tensor logits = f64(random_vec(M * V, 70, -2, 2), {M, V});
  Tensor targets = ids({3, -100, 0, 4});
  Tensor loss = empty64({}), lse = empty64({M});
  auto ce = [&] {
    run(Op::CrossEntropy, {logits, targets}, {loss, lse});
    return 1.5 * loss.item();
  };
  const Vec gl = numeric_grad(logits, ce);
  ce();
  Tensor dlogits = empty64({M, V});
  run(Op::CrossEntropyBackward, {f64({1.5}, {}), logits, targets, lse}, {dlogits});
  expect_near(dlogits.to_vector(), gl, 1e-7, "dlogits");

  const int64_t B = 2, T = 5, C = 3, W = 3;
  Tensor x = f64(random_vec(B * T * C, 71), {B, T, C}), w = f64(random_vec(C * W, 72), {C, W}),
         b = f64(random_vec(C, 73), {C});
  const Vec r = random_vec(B * T * C, 74);
  Tensor y = empty64({B, T, C});
  auto conv = [&] {
    run(Op::Conv1d, {x, w, b}, {y});
    return dot(y.to_vector(), r);
  };
  const Vec gx = numeric_grad(x, conv), gw = numeric_grad(w, conv), gb = numeric_grad(b, conv);
  Tensor dx = empty64({B, T, C}), dw = empty64({C, W}), db = empty64({C});
  run(Op::Conv1dBackward, {f64(r, {B, T, C}), x, w}, {dx, dw, db});
  expect_near(dx.to_vector(), gx, 1e-7, "conv dx");
  expect_near(dw.to_vector(), gw, 1e-7, "conv dw");
  expect_near(db.to_vector(), gb, 1e-7, "conv db");
}

// The f32 instantiations agree with f64 on the row / attention / loss kernels (aux outputs in f32).
TEST(CpuKernels, F32MatchesF64) {
  const int64_t B = 2, T = 3, H = 2, D = 4, M = 6, V = 7;
  const Vec x = random_vec(M * V, 80, -3, 3), w = random_vec(V, 81);
  const Vec q = random_vec(B * T * H * D, 82), k = random_vec(B * T * H * D, 83),
            v = random_vec(B * T * H * D, 84);
  const std::vector<int64_t> tg = {0, 6, -100, 3, 2, 1};
  for (DType t : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype_name(t));
    const double tol = t == DType::F32 ? 1e-5 : 1e-13;
    auto make = [&](const Vec& vals, const Shape& s) { return Tensor::from_vector(vals, s, t); };
    OpAttrs at;
    at.eps = 1e-5;
    at.scale = 0.5;
    Tensor y = Tensor::empty({M, V}, t), rstd = Tensor::empty({M}, t);
    run(Op::RMSNorm, {make(x, {M, V}), make(w, {V})}, {y, rstd}, at, t);
    Tensor y64 = empty64({M, V}), rstd64 = empty64({M});
    run(Op::RMSNorm, {f64(x, {M, V}), f64(w, {V})}, {y64, rstd64}, at);
    expect_near(y.to_vector(), y64.to_vector(), tol, "rms_norm y");
    expect_near(rstd.to_vector(), rstd64.to_vector(), tol, "rms_norm rstd");

    Tensor loss = Tensor::empty({}, t), lse = Tensor::empty({M}, t);
    run(Op::CrossEntropy, {make(x, {M, V}), ids(tg)}, {loss, lse}, at, t);
    Tensor loss64 = empty64({}), lse64 = empty64({M});
    run(Op::CrossEntropy, {f64(x, {M, V}), ids(tg)}, {loss64, lse64}, at);
    EXPECT_NEAR(loss.item(), loss64.item(), tol);

    const Shape s{B, T, H, D};
    Tensor o = Tensor::empty(s, t), l = Tensor::empty({B, H, T}, t);
    run(Op::Attention, {make(q, s), make(k, s), make(v, s)}, {o, l}, at, t);
    Tensor o64 = empty64(s), l64 = empty64({B, H, T});
    run(Op::Attention, {f64(q, s), f64(k, s), f64(v, s)}, {o64, l64}, at);
    expect_near(o.to_vector(), o64.to_vector(), tol, "attention o");
    expect_near(l.to_vector(), l64.to_vector(), tol, "attention lse");
  }
}

}  // namespace
}  // namespace coil
