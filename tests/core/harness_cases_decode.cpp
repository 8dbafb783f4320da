// Harness cases: the softmax-attention decode step (op AttentionDecode, forward only, so no gradient
// check): one query per (b, h) over a K/V cache, every key visible, against plain double loops. The
// shapes span a one-key cache, head dims that do and do not fill the CUDA kernel's 128-bit loads
// (4, 6, 64, 128), caches long enough for several key splits on a GPU, and an explicit scale.
#include <algorithm>
#include <cmath>
#include <optional>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

// q (B, 1, H, D), k, v (B, P, H, D) -> o (B, 1, H, D).
HostTensor reference(const HOuts& x, double scale) {
  const Shape& ks = x[1].shape;
  const int64_t B = ks[0], P = ks[1], H = ks[2], D = ks[3];
  HostTensor o = HostTensor::zeros({B, 1, H, D});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> p(static_cast<size_t>(P));
      double mx = -INFINITY, z = 0.0;
      for (int64_t j = 0; j < P; ++j) {
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) dot += x[0][(b * H + h) * D + d] * x[1][((b * P + j) * H + h) * D + d];
        p[size_t(j)] = scale * dot;
        mx = std::max(mx, p[size_t(j)]);
      }
      for (double& v : p) z += (v = std::exp(v - mx));
      for (int64_t d = 0; d < D; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j < P; ++j) acc += p[size_t(j)] / z * x[2][((b * P + j) * H + h) * D + d];
        o[(b * H + h) * D + d] = acc;
      }
    }
  return o;
}

OpCase decode_case(std::string name, int64_t B, int64_t P, int64_t H, int64_t D, std::optional<double> scale) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::AttentionDecode};
  c.check_grad = false;
  c.inputs = {normal({B, 1, H, D}), normal({B, P, H, D}), normal({B, P, H, D})};
  c.bf16_tol_scale = 2.0;
  c.run = [=](const Outs& x) { return Outs{attention_decode(x[0], x[1], x[2], scale)}; };
  c.reference = [=](const HOuts& x) {
    return HOuts{reference(x, scale ? *scale : 1.0 / std::sqrt(double(D)))};
  };
  return c;
}

}  // namespace

void add_decode_cases(std::vector<OpCase>& cases) {
  cases.push_back(decode_case("attention_decode", 2, 7, 3, 4, std::nullopt));
  cases.push_back(decode_case("attention_decode_one_key", 3, 1, 2, 6, std::nullopt));
  cases.push_back(decode_case("attention_decode_d6_scaled", 2, 300, 2, 6, 0.7));
  cases.push_back(decode_case("attention_decode_d64", 2, 1500, 3, 64, std::nullopt));
  cases.push_back(decode_case("attention_decode_d128", 1, 700, 2, 128, 0.05));
}

}  // namespace coil::harness
