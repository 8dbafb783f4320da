// Helpers shared by the Mamba / hybrid tests: relative error, the forms-agree, sharding and
// finite-difference checks of a Mixer, each printing the largest error it saw.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/lm.h"
#include "layers/mixer.h"
#include "trainer/adamw.h"
#include "trainer/demo.h"

namespace coil::mamba_test {

inline const ParamOptions kF64{DType::F64, Device::cpu()};

// max |a - b| / max |b|
inline double max_rel(const std::vector<double>& x, const std::vector<double>& y) {
  EXPECT_EQ(x.size(), y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / std::max(den, 1e-300);
}
inline double max_rel(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
  return max_rel(a.to_vector(), b.to_vector());
}

// Adds beta to every entry of a parameter in place (e.g. dt_bias + 3: decays of -50 per token).
inline void shift_param(const Tensor& p, double beta) {
  NoGradGuard no_grad;
  double* d = p.data<double>();
  for (int64_t i = 0; i < p.numel(); ++i) d[i] += beta;
  p.bump_version();
}

// The token-by-token run through step().
inline Tensor run_steps(const Mixer& m, const Tensor& x) {
  MixerState st;
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < x.size(1); ++t) ys.push_back(m.step(x.narrow(1, t, 1), st));
  EXPECT_EQ(st.values_per_sequence(), m.decode_state_values(x.size(1)));
  return concat(ys, 1);
}

// forward_stateful over consecutive shards of the given lengths, the state passed along; the output
// and the gradients of sum(y * r) w.r.t. x and every parameter must equal the unsharded run's.
// Returns the largest relative error seen (output or gradient).
inline double check_sharding(Mixer& m, const Tensor& x0, const Tensor& r,
                             const std::vector<int64_t>& lens) {
  m.zero_grad();
  Tensor x = x0.clone().set_requires_grad(true);
  Tensor full = m.forward(x);
  sum(full * r).backward();
  std::vector<std::vector<double>> want{x.grad().to_vector()};
  for (const Tensor& p : m.parameters()) want.push_back(p.grad().to_vector());

  m.zero_grad();
  Tensor xs = x0.clone().set_requires_grad(true);
  MixerState st;
  std::vector<Tensor> outs;
  int64_t off = 0;
  for (int64_t len : lens) {
    MixerState next;
    outs.push_back(m.forward_stateful(xs.narrow(1, off, len), st, &next));
    st = next;
    off += len;
  }
  EXPECT_EQ(off, x0.size(1));
  Tensor y = concat(outs, 1);
  double err = max_rel(y, full);
  EXPECT_LT(err, 1e-10) << "outputs";
  sum(y * r).backward();
  std::vector<std::vector<double>> got{xs.grad().to_vector()};
  for (const Tensor& p : m.parameters()) got.push_back(p.grad().to_vector());
  NamedTensors names = m.named_parameters();
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = max_rel(got[i], want[i]);
    EXPECT_LT(e, 1e-10) << (i == 0 ? std::string("d input") : "d " + names[i - 1].first);
    err = std::max(err, e);
  }
  return err;
}

// Central differences of f w.r.t. `samples` evenly spread entries of each leaf (contiguous f64),
// against the autograd gradient. Returns the largest |fd - ad| / max(1e-2, |ad|): the floor keeps the
// difference quotient's rounding noise (~1e-16 |f| / h) out of the tiny entries.
inline double fd_check(const std::function<Tensor()>& f, const std::vector<Tensor>& leaves,
                       const std::vector<std::string>& names, int64_t samples = 6,
                       double h = 1e-6) {
  for (const Tensor& l : leaves) l.zero_grad();
  f().backward();
  double worst = 0;
  for (size_t li = 0; li < leaves.size(); ++li) {
    const Tensor& p = leaves[li];
    std::vector<double> grad = p.grad().defined() ? p.grad().to_vector()
                                                  : std::vector<double>(size_t(p.numel()), 0.0);
    const int64_t n = p.numel(), k = std::min(samples, n);
    for (int64_t s = 0; s < k; ++s) {
      const int64_t i = k == 1 ? 0 : s * (n - 1) / (k - 1);
      auto at = [&](double delta) {
        NoGradGuard no_grad;
        p.data<double>()[i] += delta;
        p.bump_version();
        const double v = f().item();
        p.data<double>()[i] -= delta;
        p.bump_version();
        return v;
      };
      const double fd = (at(h) - at(-h)) / (2 * h);
      const double err = std::abs(fd - grad[size_t(i)]) / std::max(1e-2, std::abs(grad[size_t(i)]));
      EXPECT_LT(err, 1e-6) << names[li] << "[" << i << "]: autograd " << grad[size_t(i)] << ", fd "
                           << fd;
      worst = std::max(worst, err);
    }
  }
  return worst;
}

// A tiny LM config (vocab 16, d 16, MLP 32) with the given mixer; its options are the caller's.
inline ModelConfig tiny_lm_config(const std::string& mixer, uint64_t seed = 1) {
  ModelConfig c;
  c.mixer = mixer;
  c.vocab = 16;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.head_dim = 8;
  c.mlp_hidden = 32;
  c.seed = seed;
  c.mamba2.d_state = 8;
  c.mamba2.head_dim = 8;
  c.mamba2.chunk_size = 8;
  c.mamba1.d_state = 8;
  // Chunk 4 keeps the (B, L, L, d_inner, N) decay tensors under the CPU kernels' OpenMP threshold:
  // on a shared 2-core machine a parallel region per elementwise op can cost milliseconds each.
  c.mamba1.chunk_size = 4;
  return c;
}

// 50 AdamW steps (lr 1e-2) on one fixed batch of 4 x 24 tokens with a period-6 pattern; returns the
// loss before each step and the final one (51 values).
inline std::vector<double> train_losses(const ModelConfig& c, int64_t steps = 50) {
  LanguageModel model(c);
  EXPECT_EQ(model.num_parameters(), LanguageModel::count_parameters(c));
  TokenBatch batch = make_repeat_batch(4, 24, c.vocab, 6, 3);
  AdamW opt(model.parameters(), AdamWOptions{1e-2});
  std::vector<double> losses;
  for (int64_t step = 0; step < steps; ++step) {
    opt.zero_grad();
    Tensor loss = model.loss(batch.ids, batch.targets);
    losses.push_back(loss.item());
    loss.backward();
    opt.step();
  }
  NoGradGuard no_grad;
  losses.push_back(model.loss(batch.ids, batch.targets).item());
  return losses;
}

// "Clearly decreasing": finite, the last loss below 40% of the first, the mean of the last ten
// losses below the mean of the first ten.
inline void expect_trains(const std::vector<double>& l, const std::string& what) {
  for (double v : l) ASSERT_TRUE(std::isfinite(v)) << what;
  double head = 0, tail = 0;
  for (size_t i = 0; i < 10; ++i) {
    head += l[i] / 10;
    tail += l[l.size() - 1 - i] / 10;
  }
  std::printf("%s: loss %.4f -> %.4f after %zu steps\n", what.c_str(), l.front(), l.back(),
              l.size() - 1);
  EXPECT_LT(l.back(), 0.4 * l.front()) << what;
  EXPECT_LT(tail, head) << what;
}

}  // namespace coil::mamba_test
