// prefix_attention (layers/prefix_attention.h), what the sequence shards of softmax and 2Mamba-E run:
// without a decay the fused attention op, with one the block-wise online-softmax path. Both equal the
// composed definition (full score matrix, additive causal mask, softmax) in value and in every
// gradient, for one block, several query and key blocks, partial masks and a single decode query;
// the fused op equals the block path (run with zero decay) for Tq < Tk causal and non-causal, with and
// without the lse output; fp64 finite differences; and the block path's peak memory stays below one
// (Tq, Tk) score tensor.
#include <gtest/gtest.h>

#include <cmath>

#include "core/allocator.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/linear_mixer_test_util.h"
#include "layers/prefix_attention.h"

namespace coil {
namespace {

using linear_test::fd_check;
using linear_test::max_rel;

// The definition, all as autograd ops on the whole (Tq, Tk) score matrix; lse = log sum_j e^{s_ij}
// (B, Tq, H) when asked for.
Tensor composed(const Tensor& q, const Tensor& k, const Tensor& v, double sm, const Tensor& aq,
                const Tensor& ak, Tensor* lse = nullptr, bool causal = true) {
  const int64_t Tq = q.size(1), Tk = k.size(1), P = Tk - Tq;
  Tensor s = scale(matmul(q.permute({0, 2, 1, 3}), k.permute({0, 2, 3, 1})), sm);  // (B, H, Tq, Tk)
  if (aq.defined()) s = s + aq.permute({0, 2, 1}).unsqueeze(3) - ak.permute({0, 2, 1}).unsqueeze(2);
  std::vector<double> mask(size_t(Tq * Tk), 0.0);
  for (int64_t i = 0; causal && i < Tq; ++i)
    for (int64_t j = P + i + 1; j < Tk; ++j) mask[size_t(i * Tk + j)] = -1e30;
  s = s + Tensor::from_vector(mask, {Tq, Tk}, q.dtype(), q.device());
  if (lse) *lse = log(sum(exp(s), 3)).permute({0, 2, 1});  // small scores: no max shift needed
  return matmul(softmax(s), v.permute({0, 2, 1, 3})).permute({0, 2, 1, 3});
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector()) m = std::max(m, std::abs(x));
  return m;
}

struct Case {
  int64_t B, Tq, Tk, H, D;
  bool decay;
};

// Leaves q, k, v (and log-decay cumsums, decreasing along time) drawn from `seed`.
std::vector<Tensor> leaves(const Case& c, uint64_t seed, DType dt = DType::F64) {
  Generator g(seed);
  std::vector<Tensor> out = {Tensor::randn({c.B, c.Tq, c.H, c.D}, g, dt),
                             Tensor::randn({c.B, c.Tk, c.H, c.D}, g, dt),
                             Tensor::randn({c.B, c.Tk, c.H, c.D}, g, dt)};
  if (c.decay) {
    Tensor ak = cumsum(Tensor::uniform({c.B, c.Tk, c.H}, g, -0.3, 0.0, dt), 1);
    out.push_back(ak.narrow(1, c.Tk - c.Tq, c.Tq).clone());  // its own storage (a leaf of its own)
    out.push_back(ak);
  }
  for (Tensor& t : out) t.set_requires_grad(true);
  return out;
}

Tensor run(bool blocked, const std::vector<Tensor>& l, double sm) {
  const Tensor none;
  const Tensor& aq = l.size() > 3 ? l[3] : none;
  const Tensor& ak = l.size() > 3 ? l[4] : none;
  return blocked ? prefix_attention(l[0], l[1], l[2], sm, aq, ak) : composed(l[0], l[1], l[2], sm, aq, ak);
}

TEST(PrefixAttention, BlockedEqualsTheComposedDefinition) {
  // One block; several query and key blocks (128 queries, 128 keys) with the diagonal crossing block
  // edges; a decode query over a prefix longer than its (16,384-key) block; Tq = Tk (the sp rank-0 /
  // unsharded case).
  for (const Case c : {Case{2, 5, 9, 2, 4, false}, Case{2, 5, 9, 2, 4, true},
                       Case{1, 200, 300, 2, 4, false}, Case{1, 200, 300, 2, 4, true},
                       Case{1, 1, 16500, 1, 4, true}, Case{1, 130, 130, 1, 4, false}}) {
    const double sm = 1.0 / std::sqrt(double(c.D));
    std::vector<Tensor> a = leaves(c, 11), b = leaves(c, 11);
    Generator g(5);
    Tensor dy = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F64);
    Tensor ya = run(true, a, sm), yb = run(false, b, sm);
    EXPECT_LT(max_rel(ya, yb), 1e-12) << "Tq " << c.Tq << " Tk " << c.Tk << " decay " << c.decay;
    sum(ya * dy).backward();
    sum(yb * dy).backward();
    for (size_t i = 0; i < a.size(); ++i) {
      // acs_q shifts a whole row of scores, which softmax ignores: its gradient is 0 up to rounding
      // in both forms, so it is compared in absolute terms.
      const double e = i == 3 ? max_abs(a[i].grad()) + max_abs(b[i].grad())
                              : max_rel(a[i].grad(), b[i].grad());
      EXPECT_LT(e, 1e-11) << "input " << i << " Tq " << c.Tq << " Tk " << c.Tk << " decay " << c.decay;
    }
  }
}

// The log-sum-exp output (differentiable) and the non-causal form (every key visible, any Tk), as
// the ring of sequence parallel uses them; a loss on both outputs.
TEST(PrefixAttention, LseOutputAndNonCausal) {
  for (const bool causal : {true, false}) {
    for (const Case c : {Case{1, 200, 300, 2, 4, true}, Case{2, 7, 3, 2, 4, false}}) {
      if (causal && c.Tk < c.Tq) continue;
      std::vector<Tensor> a = leaves(c, 61), b = leaves(c, 61);
      Generator g(9);
      Tensor dy = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F64);
      Tensor dl = Tensor::randn({c.B, c.Tq, c.H}, g, DType::F64);
      const Tensor none;
      Tensor la, lb;
      Tensor ya = prefix_attention(a[0], a[1], a[2], 0.5, c.decay ? a[3] : none, c.decay ? a[4] : none, &la, causal);
      Tensor yb = composed(b[0], b[1], b[2], 0.5, c.decay ? b[3] : none, c.decay ? b[4] : none, &lb, causal);
      EXPECT_LT(max_rel(ya, yb), 1e-12);
      EXPECT_LT(max_rel(la, lb), 1e-12);
      (sum(ya * dy) + sum(la * dl)).backward();
      (sum(yb * dy) + sum(lb * dl)).backward();
      for (size_t i = 0; i < a.size(); ++i)
        EXPECT_LT(max_rel(a[i].grad(), b[i].grad()), 1e-11) << "input " << i << " causal " << causal;
    }
  }
  const Case c{1, 3, 5, 2, 4, true};
  std::vector<Tensor> l = leaves(c, 71);
  Generator g(10);
  Tensor w = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F64), wl = Tensor::randn({c.B, c.Tq, c.H}, g, DType::F64);
  fd_check(
      [&] {
        Tensor lse;
        Tensor y = prefix_attention(l[0], l[1], l[2], 0.5, l[3], l[4], &lse, false);
        return sum(y * w) + sum(lse * wl);
      },
      l, {"q", "k", "v", "acs_q", "acs_k"}, 40, 1e-6, 1e-7);
}

// The fused op (no decay) against the block path, reached with all-zero decay cumsums (the same scores):
// the value, lse and the q, k, v gradients, causal (Tq < Tk, Tq = Tk, across block edges) and not
// (Tk < Tq too), with the loss on the output alone or on the output and lse (the ring's dlse).
TEST(PrefixAttention, FusedEqualsBlockPath) {
  for (const bool causal : {true, false}) {
    for (const Case c : {Case{2, 5, 9, 2, 4, false}, Case{1, 200, 300, 2, 4, false},
                         Case{1, 130, 130, 3, 8, false}, Case{2, 7, 3, 2, 4, false}}) {
      if (causal && c.Tk < c.Tq) continue;
      for (const bool with_lse : {false, true}) {
        std::vector<Tensor> a = leaves(c, 81), b = leaves(c, 81);
        Generator g(12);
        Tensor dy = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F64);
        Tensor dl = Tensor::randn({c.B, c.Tq, c.H}, g, DType::F64);
        const Tensor zq = Tensor::zeros({c.B, c.Tq, c.H}, DType::F64), zk = Tensor::zeros({c.B, c.Tk, c.H}, DType::F64);
        Tensor la, lb;
        Tensor ya = prefix_attention(a[0], a[1], a[2], 0.45, Tensor(), Tensor(), with_lse ? &la : nullptr, causal);
        Tensor yb = prefix_attention(b[0], b[1], b[2], 0.45, zq, zk, with_lse ? &lb : nullptr, causal);
        const std::string what = "Tq " + std::to_string(c.Tq) + " Tk " + std::to_string(c.Tk) + " causal " +
                                 std::to_string(causal) + " lse " + std::to_string(with_lse);
        EXPECT_LT(max_rel(ya, yb), 1e-12) << what;
        Tensor loss_a = sum(ya * dy), loss_b = sum(yb * dy);
        if (with_lse) {
          EXPECT_EQ(la.shape(), (Shape{c.B, c.Tq, c.H})) << what;
          EXPECT_LT(max_rel(la, lb), 1e-12) << what;
          loss_a = loss_a + sum(la * dl);
          loss_b = loss_b + sum(lb * dl);
        }
        loss_a.backward();
        loss_b.backward();
        for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_rel(a[i].grad(), b[i].grad()), 1e-11) << "input " << i << " " << what;
      }
    }
  }
}

TEST(PrefixAttention, Fp64FiniteDifferences) {
  for (const bool decay : {false, true}) {
    const Case c{1, 3, 7, 2, 4, decay};
    std::vector<Tensor> l = leaves(c, 21);
    Generator g(6);
    Tensor w = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F64);
    std::vector<std::string> names = {"q", "k", "v", "acs_q", "acs_k"};
    names.resize(l.size());
    fd_check([&] { return sum(run(true, l, 0.5) * w); }, l, names, 40, 1e-6, 1e-7);
  }
}

// fp32: the scores, exponentials and rescalings round at f32 (~1e-6 of the output's scale here).
TEST(PrefixAttention, Fp32CloseToFp64) {
  const Case c{1, 200, 300, 2, 8, true};
  std::vector<Tensor> a = leaves(c, 31, DType::F32), b = leaves(c, 31, DType::F64);
  EXPECT_LT(max_rel(run(true, a, 0.35), run(true, b, 0.35)), 5e-6);
}

// bf16 inputs (as under autocast on a GPU) run in f32 inside and come back in bf16, gradients too
// (the CPU has no bf16 arithmetic, so this also shows that nothing inside computes in bf16).
TEST(PrefixAttention, Bf16InputsComputeInF32) {
  const Case c{1, 200, 300, 2, 8, true};
  std::vector<Tensor> ref = leaves(c, 51), lo;
  for (size_t i = 0; i < ref.size(); ++i) {
    lo.push_back(ref[i].detach().to(i < 3 ? DType::BF16 : DType::F32));  // the decay stays f32
    lo.back().set_requires_grad(true);
  }
  Generator g(8);
  Tensor dy = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F64);
  Tensor y_lo = run(true, lo, 0.35), y_ref = run(true, ref, 0.35);
  EXPECT_EQ(y_lo.dtype(), DType::BF16);
  EXPECT_LT(max_rel(y_lo.to(DType::F64), y_ref), 3e-2);
  sum(y_lo.to(DType::F64) * dy).backward();
  sum(y_ref * dy).backward();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(lo[i].grad().dtype(), DType::BF16) << "input " << i;
    EXPECT_LT(max_rel(lo[i].grad().to(DType::F64), ref[i].grad()), 5e-2) << "input " << i;
  }
  EXPECT_EQ(lo[4].grad().dtype(), DType::F32);
  EXPECT_LT(max_rel(lo[4].grad().to(DType::F64), ref[4].grad()), 5e-2);
}

// The point of the blocks: a shard of Tq queries over Tk keys never holds a (Tq, Tk) tensor (the
// composed form holds several), forward and backward; what it does hold is O(Tk D) (the k, v
// gradients and their per-block pieces). With a decay, so that the block path is what runs.
TEST(PrefixAttention, PeakMemoryBelowOneScoreMatrix) {
  const Case c{1, 256, 1024, 4, 16, true};
  std::vector<Tensor> l = leaves(c, 41, DType::F32);
  Generator g(7);
  Tensor dy = Tensor::randn({c.B, c.Tq, c.H, c.D}, g, DType::F32);
  Allocator& a = allocator_for(DeviceType::CPU);
  auto peak_of = [&](bool blocked) {
    const int64_t before = a.stats(0).current_bytes;
    a.reset_peak(0);
    sum(run(blocked, l, 0.25) * dy).backward();
    for (Tensor& t : l) t.zero_grad();
    return a.stats(0).peak_bytes - before;
  };
  const int64_t scores = c.B * c.H * c.Tq * c.Tk * 4;  // one f32 (B, H, Tq, Tk) tensor
  const int64_t blocked = peak_of(true), full = peak_of(false);
  std::cout << "[prefix_attention] Tq 256, Tk 1024, 4 heads of 16, f32: peak bytes blocked " << blocked
            << ", composed " << full << " (one score matrix " << scores << ")\n";
  EXPECT_LT(blocked, scores);
  EXPECT_GT(full, 2 * scores);  // the measurement sees the composed form's score matrices
}

}  // namespace
}  // namespace coil
