// The LM's math: the attention mixer against an independent loop reference of spec section 3, the
// block's residual wiring, causality, recompute on/off, and whole-model gradients against finite
// differences in f64.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/attention.h"
#include "layers/lm.h"

namespace coil {
namespace {

const ParamOptions kF64{DType::F64, Device::cpu()};

ModelConfig small_config(uint64_t seed = 3) {
  ModelConfig c;
  c.vocab = 11;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.head_dim = 4;
  c.mlp_hidden = 12;
  c.seed = seed;
  return c;
}

Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(B * T);
  for (auto& x : v) x = int64_t(g.next_uniform() * V) % V;
  return Tensor::from_ints(v, {B, T});
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Spec section 3 written as plain loops: [Q|K|V] = x W_qkv^T with head h of part p at channels
// p*H*D + h*D .. +D, interleaved RoPE with f_i = theta^(-2i/D), causal softmax(q.k / sqrt(D)) v,
// heads merged in order, then W_o.
std::vector<double> reference_attention(const std::vector<double>& x, int64_t B, int64_t T,
                                        int64_t C, int64_t H, int64_t D, double theta,
                                        const std::vector<double>& wqkv,
                                        const std::vector<double>& wo) {
  const int64_t I = H * D;
  std::vector<double> qkv(B * T * 3 * I, 0.0);
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t n = 0; n < 3 * I; ++n)
      for (int64_t c = 0; c < C; ++c) qkv[bt * 3 * I + n] += x[bt * C + c] * wqkv[n * C + c];
  auto at = [&](int64_t b, int64_t t, int64_t part, int64_t h, int64_t d) -> double& {
    return qkv[((b * T + t) * 3 + part) * I + h * D + d];
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t part = 0; part < 2; ++part)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t i = 0; i < D / 2; ++i) {
            const double ang = double(t) * std::pow(theta, -2.0 * double(i) / double(D));
            double& x0 = at(b, t, part, h, 2 * i);
            double& x1 = at(b, t, part, h, 2 * i + 1);
            const double a = x0, c = x1;
            x0 = a * std::cos(ang) - c * std::sin(ang);
            x1 = a * std::sin(ang) + c * std::cos(ang);
          }
  std::vector<double> merged(B * T * I, 0.0);
  const double s = 1.0 / std::sqrt(double(D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> w(i + 1);
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double u = 0;
          for (int64_t d = 0; d < D; ++d) u += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          w[j] = s * u;
          mx = std::max(mx, w[j]);
        }
        for (int64_t j = 0; j <= i; ++j) z += (w[j] = std::exp(w[j] - mx));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t d = 0; d < D; ++d)
            merged[(b * T + i) * I + h * D + d] += w[j] / z * at(b, j, 2, h, d);
      }
  std::vector<double> out(B * T * C, 0.0);
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t n = 0; n < I; ++n) out[bt * C + c] += merged[bt * I + n] * wo[c * I + n];
  return out;
}

TEST(Attention, MatchesLoopReference) {
  const int64_t B = 2, T = 6, C = 10, H = 2, D = 4;  // C != H * D on purpose
  Generator gen(11);
  SoftmaxAttention attn(C, H, D, 10000.0, gen, kF64);
  Tensor x = Tensor::randn({B, T, C}, gen, DType::F64);
  Tensor y = attn.forward(x);
  ASSERT_EQ(y.shape(), (Shape{B, T, C}));
  std::vector<double> want = reference_attention(x.to_vector(), B, T, C, H, D, 10000.0,
                                                 attn.qkv->weight.to_vector(),
                                                 attn.o->weight.to_vector());
  EXPECT_LT(max_abs_diff(y.to_vector(), want), 1e-10);

  // A small theta makes the rotation angles large, so a wrong pairing or frequency shows up.
  Generator gen2(12);
  SoftmaxAttention attn2(C, H, D, 3.0, gen2, kF64);
  want = reference_attention(x.to_vector(), B, T, C, H, D, 3.0, attn2.qkv->weight.to_vector(),
                             attn2.o->weight.to_vector());
  EXPECT_LT(max_abs_diff(attn2.forward(x).to_vector(), want), 1e-10);
}

TEST(Block, ResidualWiring) {
  // With W_o and W_down zero the block is the identity.
  ModelConfig c = small_config();
  Generator gen(1);
  Block blk(c, gen, kF64);
  Tensor x = Tensor::randn({2, 3, c.d_model}, gen, DType::F64);
  {
    NoGradGuard no_grad;
    static_cast<SoftmaxAttention&>(*blk.mixer).o->weight.zero_();
    blk.mlp->down->weight.zero_();
  }
  EXPECT_EQ(blk.forward(x).to_vector(), x.to_vector());
}

TEST(Block, MatchesComposition) {
  ModelConfig c = small_config();
  Generator gen(2);
  Block blk(c, gen, kF64);
  Tensor x = Tensor::randn({2, 3, c.d_model}, gen, DType::F64);
  Tensor h = x + blk.mixer->forward(rms_norm(x, blk.norm1->weight, c.norm_eps));
  Tensor want = h + blk.mlp->forward(rms_norm(h, blk.norm2->weight, c.norm_eps));
  EXPECT_LT(max_abs_diff(blk.forward(x).to_vector(), want.to_vector()), 1e-14);
}

TEST(LanguageModel, ForwardShapesAndInputChecks) {
  LanguageModel m(small_config());
  Tensor ids = random_ids(3, 7, 11, 1);
  Tensor logits = m.forward(ids);
  EXPECT_EQ(logits.shape(), (Shape{3, 7, 11}));
  EXPECT_EQ(m.loss(ids, ids).shape(), Shape{});
  EXPECT_THROW(m.forward(Tensor::from_ints({1, 2, 3}, {3})), Error);
  EXPECT_THROW(m.loss(ids, random_ids(3, 6, 11, 2)), Error);
}

TEST(LanguageModel, IsCausal) {
  LanguageModel m(small_config());
  const int64_t T = 9, changed = 5;
  Tensor ids = random_ids(2, T, 11, 4);
  std::vector<int64_t> v = ids.to_ints();
  v[changed] = (v[changed] + 3) % 11;          // row 0, position 5
  v[T + T - 1] = (v[T + T - 1] + 1) % 11;      // row 1, last position
  NoGradGuard no_grad;
  std::vector<double> a = m.forward(ids).to_vector();
  std::vector<double> b = m.forward(Tensor::from_ints(v, {2, T})).to_vector();
  const int64_t V = 11;
  for (int64_t t = 0; t < T; ++t) {
    double d0 = 0, d1 = 0;
    for (int64_t k = 0; k < V; ++k) {
      d0 = std::max(d0, std::abs(a[t * V + k] - b[t * V + k]));
      d1 = std::max(d1, std::abs(a[(T + t) * V + k] - b[(T + t) * V + k]));
    }
    if (t < changed) {
      EXPECT_EQ(d0, 0.0) << "row 0, position " << t;
    } else {
      EXPECT_GT(d0, 1e-6) << "row 0, position " << t;
    }
    if (t < T - 1) {
      EXPECT_EQ(d1, 0.0) << "row 1, position " << t;
    } else {
      EXPECT_GT(d1, 1e-6) << "row 1, position " << t;
    }
  }
}

TEST(LanguageModel, RecomputeGivesIdenticalLossAndGradients) {
  ModelConfig c = small_config(9);
  c.n_layers = 3;
  ModelConfig cr = c;
  cr.recompute = true;
  LanguageModel plain(c), rec(cr);
  Tensor ids = random_ids(2, 8, 11, 5), targets = random_ids(2, 8, 11, 6);
  Tensor l0 = plain.loss(ids, targets), l1 = rec.loss(ids, targets);
  EXPECT_EQ(l0.item(), l1.item());
  l0.backward();
  l1.backward();
  NamedTensors p0 = plain.named_parameters(), p1 = rec.named_parameters();
  ASSERT_EQ(p0.size(), p1.size());
  for (size_t i = 0; i < p0.size(); ++i) {
    ASSERT_TRUE(p1[i].second.grad().defined()) << p1[i].first;
    EXPECT_EQ(p0[i].second.grad().to_vector(), p1[i].second.grad().to_vector()) << p0[i].first;
  }
  // Recompute keeps far fewer graph nodes alive between forward and backward.
  const int64_t base = Node::live_count();
  Tensor kept_plain = plain.loss(ids, targets);
  const int64_t nodes_plain = Node::live_count() - base;
  Tensor kept_rec = rec.loss(ids, targets);
  const int64_t nodes_rec = Node::live_count() - base - nodes_plain;
  EXPECT_LT(nodes_rec, nodes_plain / 2) << nodes_rec << " vs " << nodes_plain;

  // Inference under no-grad skips the recompute wrapper and gives the same loss.
  NoGradGuard no_grad;
  EXPECT_EQ(rec.loss(ids, targets).item(), l0.item());
}

TEST(LanguageModel, GradientsMatchFiniteDifferences) {
  // f64 model; central differences on a few entries of every parameter.
  ModelConfig c = small_config(21);
  LanguageModel m(c, kF64);
  Tensor ids = random_ids(2, 5, 11, 7), targets = random_ids(2, 5, 11, 8);
  m.loss(ids, targets).backward();
  const double h = 1e-6;
  for (auto& [name, p] : m.named_parameters()) {
    std::vector<double> grad = p.grad().to_vector();
    for (int64_t i : {int64_t(0), p.numel() / 2, p.numel() - 1}) {
      auto loss_at = [&](double delta) {
        NoGradGuard no_grad;
        p.data<double>()[i] += delta;
        p.bump_version();
        const double l = m.loss(ids, targets).item();
        p.data<double>()[i] -= delta;
        p.bump_version();
        return l;
      };
      const double fd = (loss_at(h) - loss_at(-h)) / (2 * h);
      EXPECT_NEAR(grad[i], fd, 1e-7 + 1e-5 * std::abs(fd)) << name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace coil
