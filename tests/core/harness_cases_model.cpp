// Harness cases: the model ops (embedding, rms_norm, swiglu, softmax, rope, attention,
// cross-entropy, causal depthwise conv1d). Each fused op's case also covers its backward kernel (B
// kind), which its gradient check exercises. References follow the formulas of core/op_list.h.
#include <cmath>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

OpCase embedding_case(std::string name, int64_t V, int64_t C, InputSpec id_spec) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Embedding, Op::EmbeddingBackward};
  c.inputs = {normal({V, C}), std::move(id_spec)};
  c.run = [](const Outs& x) { return Outs{embedding(x[0], x[1])}; };
  c.reference = [](const HOuts& x) {
    const int64_t C = x[0].shape[1];
    Shape out = x[1].shape;
    out.push_back(C);
    HostTensor y = HostTensor::zeros(out);
    for (int64_t m = 0; m < x[1].numel(); ++m)
      for (int64_t j = 0; j < C; ++j) y[m * C + j] = x[0][int64_t(x[1][m]) * C + j];
    return HOuts{y};
  };
  return c;
}

OpCase rms_norm_case(std::string name, Shape xs, double eps) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::RMSNorm, Op::RMSNormBackward};
  c.inputs = {normal(xs), normal({xs.back()}, 0.3, 1.0)};
  c.run = [eps](const Outs& x) { return Outs{rms_norm(x[0], x[1], eps)}; };
  c.reference = [eps](const HOuts& x) {
    const int64_t C = x[0].shape.back(), M = x[0].numel() / C;
    HostTensor y = HostTensor::zeros(x[0].shape);
    for (int64_t m = 0; m < M; ++m) {
      double ms = 0.0;
      for (int64_t j = 0; j < C; ++j) ms += x[0][m * C + j] * x[0][m * C + j];
      const double rstd = 1.0 / std::sqrt(ms / double(C) + eps);
      for (int64_t j = 0; j < C; ++j) y[m * C + j] = x[0][m * C + j] * rstd * x[1][j];
    }
    return HOuts{y};
  };
  return c;
}

// add_rms_norm: outputs h = x + res and rms_norm(h) * w; both enter the gradient check, so the
// backward's dh input (the other readers' gradient) is exercised too.
OpCase add_rms_norm_case(std::string name, Shape xs, double eps) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::AddRMSNorm, Op::AddRMSNormBackward};
  c.inputs = {normal(xs), normal(xs), normal({xs.back()}, 0.3, 1.0)};
  c.run = [eps](const Outs& x) {
    auto [h, y] = add_rms_norm(x[0], x[1], x[2], eps);
    return Outs{h, y};
  };
  c.reference = [eps](const HOuts& x) {
    const int64_t C = x[0].shape.back(), M = x[0].numel() / C;
    HostTensor h = HostTensor::zeros(x[0].shape), y = HostTensor::zeros(x[0].shape);
    for (int64_t m = 0; m < M; ++m) {
      double ms = 0.0;
      for (int64_t j = 0; j < C; ++j) {
        h[m * C + j] = x[0][m * C + j] + x[1][m * C + j];
        ms += h[m * C + j] * h[m * C + j];
      }
      const double rstd = 1.0 / std::sqrt(ms / double(C) + eps);
      for (int64_t j = 0; j < C; ++j) y[m * C + j] = h[m * C + j] * rstd * x[2][j];
    }
    return HOuts{h, y};
  };
  return c;
}

HostTensor softmax_ref(const HostTensor& x) {
  const int64_t n = x.shape.back(), M = x.numel() / n;
  HostTensor y = HostTensor::zeros(x.shape);
  for (int64_t m = 0; m < M; ++m) {
    double mx = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[m * n + j]);
    for (int64_t j = 0; j < n; ++j) s += std::exp(x[m * n + j] - mx);
    for (int64_t j = 0; j < n; ++j) y[m * n + j] = std::exp(x[m * n + j] - mx) / s;
  }
  return y;
}

OpCase softmax_case(std::string name, InputSpec in) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Softmax, Op::SoftmaxBackward};
  c.inputs = {std::move(in)};
  c.run = [](const Outs& x) { return Outs{softmax(x[0])}; };
  c.reference = [](const HOuts& x) { return HOuts{softmax_ref(x[0])}; };
  return c;
}

// Round a non-negative integer position to bf16's 8 significant bits, ties to even (independent of
// coil's float_to_bf16: scale to the bf16 grid spacing and use the FPU's round-half-even).
double bf16_position(int64_t p) {
  if (p < 256) return double(p);
  const int e = int(std::floor(std::log2(double(p))));
  const double step = std::ldexp(1.0, e - 7);
  return std::nearbyint(double(p) / step) * step;
}

OpCase rope_case(std::string name, Shape xs, int64_t pos_offset, double theta,
                 bool bf16_positions = false) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Rope};
  c.inputs = {normal(xs)};
  c.run = [=](const Outs& x) { return Outs{rope(x[0], pos_offset, theta, bf16_positions)}; };
  c.reference = [=](const HOuts& x) {
    const int64_t B = x[0].shape[0], T = x[0].shape[1], H = x[0].shape[2], D = x[0].shape[3];
    HostTensor y = HostTensor::zeros(x[0].shape);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t i = 0; i < D / 2; ++i) {
            const double pos = bf16_positions ? bf16_position(pos_offset + t) : double(pos_offset + t);
            const double ang = pos * std::pow(theta, -2.0 * double(i) / double(D));
            const int64_t base = ((b * T + t) * H + h) * D + 2 * i;
            const double x0 = x[0][base], x1 = x[0][base + 1];
            y[base] = x0 * std::cos(ang) - x1 * std::sin(ang);
            y[base + 1] = x0 * std::sin(ang) + x1 * std::cos(ang);
          }
    return HOuts{y};
  };
  return c;
}

OpCase attention_case(std::string name, Shape s, std::optional<double> scale) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Attention, Op::AttentionBackward};
  c.inputs = {normal(s), normal(s), normal(s)};
  c.bf16_tol_scale = 2.0;
  c.run = [=](const Outs& x) { return Outs{causal_attention(x[0], x[1], x[2], scale)}; };
  c.reference = [=](const HOuts& x) {
    const int64_t B = s[0], T = s[1], H = s[2], D = s[3];
    const double sc = scale ? *scale : 1.0 / std::sqrt(double(D));
    auto at = [&](const HostTensor& t, int64_t b, int64_t i, int64_t h, int64_t d) {
      return t[((b * T + i) * H + h) * D + d];
    };
    HostTensor o = HostTensor::zeros(s);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) {
          std::vector<double> p(size_t(t + 1));
          double mx = -INFINITY, z = 0.0;
          for (int64_t u = 0; u <= t; ++u) {
            double dot = 0.0;
            for (int64_t d = 0; d < D; ++d) dot += at(x[0], b, t, h, d) * at(x[1], b, u, h, d);
            p[size_t(u)] = sc * dot;
            mx = std::max(mx, p[size_t(u)]);
          }
          for (auto& v : p) z += (v = std::exp(v - mx));
          for (int64_t d = 0; d < D; ++d) {
            double acc = 0.0;
            for (int64_t u = 0; u <= t; ++u) acc += p[size_t(u)] / z * at(x[2], b, u, h, d);
            o[((b * T + t) * H + h) * D + d] = acc;
          }
        }
    return HOuts{o};
  };
  return c;
}

// attention(): q (B, Tq, H, D) over k, v (B, Tk, H, D), causal bottom-right aligned (query i sees keys
// j <= Tk - Tq + i) or every key visible; with lse the case has two outputs, o and lse (B, Tq, H), and
// the gradient check's loss sums both, so lse's gradient (the backward kernel's dlse) is checked too.
OpCase prefix_attention_case(std::string name, int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D,
                             bool causal, bool with_lse) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Attention, Op::AttentionBackward};
  c.inputs = {normal({B, Tq, H, D}), normal({B, Tk, H, D}), normal({B, Tk, H, D})};
  c.bf16_tol_scale = 2.0;
  const double sc = 0.6;
  c.run = [=](const Outs& x) {
    Tensor lse;
    Tensor o = attention(x[0], x[1], x[2], sc, causal, with_lse ? &lse : nullptr);
    return with_lse ? Outs{o, lse} : Outs{o};
  };
  c.reference = [=](const HOuts& x) {
    auto qat = [&](int64_t b, int64_t i, int64_t h, int64_t d) { return x[0][((b * Tq + i) * H + h) * D + d]; };
    auto kat = [&](const HostTensor& t, int64_t b, int64_t j, int64_t h, int64_t d) {
      return t[((b * Tk + j) * H + h) * D + d];
    };
    HostTensor o = HostTensor::zeros({B, Tq, H, D}), lse = HostTensor::zeros({B, Tq, H});
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Tq; ++i) {
          const int64_t n = causal ? Tk - Tq + i + 1 : Tk;  // visible keys 0 .. n - 1
          std::vector<double> p(static_cast<size_t>(n));
          double mx = -INFINITY, z = 0.0;
          for (int64_t j = 0; j < n; ++j) {
            double dot = 0.0;
            for (int64_t d = 0; d < D; ++d) dot += qat(b, i, h, d) * kat(x[1], b, j, h, d);
            p[size_t(j)] = sc * dot;
            mx = std::max(mx, p[size_t(j)]);
          }
          for (auto& v : p) z += (v = std::exp(v - mx));
          lse[(b * Tq + i) * H + h] = mx + std::log(z);
          for (int64_t d = 0; d < D; ++d) {
            double acc = 0.0;
            for (int64_t j = 0; j < n; ++j) acc += p[size_t(j)] / z * kat(x[2], b, j, h, d);
            o[((b * Tq + i) * H + h) * D + d] = acc;
          }
        }
    return with_lse ? HOuts{o, lse} : HOuts{o};
  };
  return c;
}

OpCase cross_entropy_case(std::string name, Shape logits, InputSpec targets, int64_t ignore_index) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::CrossEntropy, Op::CrossEntropyBackward};
  c.inputs = {normal(logits, 2.0), std::move(targets)};
  c.run = [=](const Outs& x) { return Outs{cross_entropy(x[0], x[1], ignore_index)}; };
  c.reference = [=](const HOuts& x) {
    const int64_t V = x[0].shape.back(), M = x[0].numel() / V;
    double total = 0.0;
    int64_t count = 0;
    for (int64_t m = 0; m < M; ++m) {
      const int64_t tgt = int64_t(x[1][m]);
      if (tgt == ignore_index) continue;
      double mx = -INFINITY, z = 0.0;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, x[0][m * V + j]);
      for (int64_t j = 0; j < V; ++j) z += std::exp(x[0][m * V + j] - mx);
      total += mx + std::log(z) - x[0][m * V + tgt];
      ++count;
    }
    return HOuts{HostTensor({count ? total / double(count) : 0.0}, {})};
  };
  return c;
}

OpCase conv1d_case(int64_t W) {
  OpCase c;
  c.name = "conv1d_w" + std::to_string(W);
  c.covers = {Op::Conv1d, Op::Conv1dBackward};
  const int64_t B = 2, T = 5, C = 3;
  c.inputs = {normal({B, T, C}), normal({C, W}, 0.7), normal({C})};
  c.run = [](const Outs& x) { return Outs{conv1d_causal(x[0], x[1], x[2])}; };
  c.reference = [=](const HOuts& x) {
    HostTensor y = HostTensor::zeros({B, T, C});
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t ch = 0; ch < C; ++ch) {
          double acc = x[2][ch];
          for (int64_t k = 0; k < W; ++k) {
            const int64_t src = t - (W - 1) + k;
            if (src >= 0) acc += x[1][ch * W + k] * x[0][(b * T + src) * C + ch];
          }
          y[(b * T + t) * C + ch] = acc;
        }
    return HOuts{y};
  };
  return c;
}

}  // namespace

void add_model_cases(std::vector<OpCase>& cases) {
  // Repeated ids: the backward must accumulate rows, not overwrite them.
  cases.push_back(embedding_case("embedding", 5, 4, int_values({2, 3}, {1, 3, 1, 0, 4, 1})));
  cases.push_back(embedding_case("embedding_random_ids", 6, 3, ids({8}, 6)));
  cases.push_back(rms_norm_case("rms_norm", {4, 8}, 1e-5));
  cases.push_back(rms_norm_case("rms_norm_3d", {2, 3, 6}, 1e-6));
  cases.push_back(add_rms_norm_case("add_rms_norm", {4, 8}, 1e-5));
  cases.push_back(add_rms_norm_case("add_rms_norm_3d", {2, 3, 6}, 1e-6));

  OpCase sw;
  sw.name = "swiglu";
  sw.covers = {Op::SwiGLU, Op::SwiGLUBackward};
  sw.inputs = {normal({3, 5}, 2.0), normal({3, 5})};
  sw.run = [](const Outs& x) { return Outs{swiglu(x[0], x[1])}; };
  sw.reference = [](const HOuts& x) {
    HostTensor y = x[0];
    for (int64_t i = 0; i < y.numel(); ++i) y[i] = x[0][i] / (1.0 + std::exp(-x[0][i])) * x[1][i];
    return HOuts{y};
  };
  cases.push_back(sw);

  cases.push_back(softmax_case("softmax", normal({2, 3, 5}, 2.0)));
  // Large logits: a kernel that forgets to subtract the max overflows in f32 / bf16.
  cases.push_back(softmax_case("softmax_large", normal({3, 4}, 3.0, 100.0)));
  cases.push_back(rope_case("rope", {2, 3, 2, 4}, 0, 10000.0));
  cases.push_back(rope_case("rope_pos_offset", {1, 4, 3, 6}, 7, 500.0));
  // positions 299..304 fall on bf16's spacing-2 grid (ties 299, 301, 303 go to even mantissas)
  cases.push_back(rope_case("rope_bf16_positions", {1, 6, 2, 4}, 299, 10000.0, true));
  cases.push_back(attention_case("attention", {2, 5, 2, 4}, std::nullopt));
  cases.push_back(attention_case("attention_scale", {1, 6, 3, 8}, 0.7));
  cases.push_back(attention_case("attention_t1", {2, 1, 2, 4}, std::nullopt));
  cases.push_back(prefix_attention_case("attention_prefix_causal", 2, 3, 7, 2, 4, true, false));
  cases.push_back(prefix_attention_case("attention_prefix_causal_lse", 1, 4, 6, 2, 4, true, true));
  cases.push_back(prefix_attention_case("attention_full", 2, 3, 5, 2, 4, false, false));
  cases.push_back(prefix_attention_case("attention_full_lse", 1, 5, 3, 2, 4, false, true));
  cases.push_back(prefix_attention_case("attention_square_lse", 1, 4, 4, 2, 4, true, true));
  cases.push_back(cross_entropy_case("cross_entropy", {6, 5}, ids({6}, 5), -100));
  cases.push_back(cross_entropy_case("cross_entropy_ignore_rows", {5, 4},
                                     int_values({5}, {2, -100, 0, -100, 3}), -100));
  cases.push_back(cross_entropy_case("cross_entropy_3d_custom_ignore", {2, 3, 4},
                                     int_values({2, 3}, {1, 0, 3, 1, 2, 1}), 1));
  cases.push_back(cross_entropy_case("cross_entropy_all_ignored", {3, 4},
                                     int_values({3}, {-100, -100, -100}), -100));
  for (int64_t w = 1; w <= 4; ++w) cases.push_back(conv1d_case(w));
}

}  // namespace coil::harness
