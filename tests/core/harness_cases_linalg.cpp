// Harness cases: matmul (batched, broadcast batch dims; the transposed layouts reach the trans_a /
// trans_b paths) and linear with and without bias. References are triple loops.
#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

HostTensor matmul_ref(const HostTensor& a, const HostTensor& b) {
  const size_t na = a.shape.size(), nb = b.shape.size();
  const int64_t M = a.shape[na - 2], K = a.shape[na - 1], N = b.shape[nb - 1];
  const Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  const Shape bt = host_broadcast_shape(ba, bb);
  Shape out = bt;
  out.push_back(M);
  out.push_back(N);
  HostTensor y = HostTensor::zeros(out);
  const int64_t batches = shape_numel(bt);
  for (int64_t p = 0; p < batches; ++p) {
    const int64_t pa = broadcast_source(bt, p, ba), pb = broadcast_source(bt, p, bb);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) acc += a[(pa * M + m) * K + k] * b[(pb * K + k) * N + n];
        y[(p * M + m) * N + n] = acc;
      }
  }
  return y;
}

OpCase matmul_case(std::string name, Shape a, Shape b) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Matmul};
  c.inputs = {normal(a), normal(b)};
  c.run = [](const std::vector<Tensor>& x) { return std::vector<Tensor>{matmul(x[0], x[1])}; };
  c.reference = [](const std::vector<HostTensor>& x) { return std::vector<HostTensor>{matmul_ref(x[0], x[1])}; };
  return c;
}

OpCase linear_case(std::string name, Shape x, int64_t n, bool bias) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::Linear};
  const int64_t k = x.back();
  c.inputs = {normal(x), normal({n, k}, 0.5)};
  if (bias) c.inputs.push_back(normal({n}));
  c.run = [](const std::vector<Tensor>& t) {
    return std::vector<Tensor>{t.size() == 3 ? linear(t[0], t[1], t[2]) : linear(t[0], t[1])};
  };
  c.reference = [](const std::vector<HostTensor>& t) {
    const HostTensor &x = t[0], &w = t[1];
    const int64_t N = w.shape[0], K = w.shape[1], M = x.numel() / K;
    Shape out = x.shape;
    out.back() = N;
    HostTensor y = HostTensor::zeros(out);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = t.size() == 3 ? t[2][n] : 0.0;
        for (int64_t kk = 0; kk < K; ++kk) acc += x[m * K + kk] * w[n * K + kk];
        y[m * N + n] = acc;
      }
    return std::vector<HostTensor>{y};
  };
  return c;
}

}  // namespace

void add_linalg_cases(std::vector<OpCase>& cases) {
  cases.push_back(matmul_case("matmul_2d", {3, 4}, {4, 5}));
  cases.push_back(matmul_case("matmul_batched", {2, 3, 4}, {2, 4, 5}));
  cases.push_back(matmul_case("matmul_broadcast_b", {2, 3, 4}, {4, 5}));    // b shared by the batch
  cases.push_back(matmul_case("matmul_broadcast_a", {1, 3, 4}, {2, 4, 2}));  // a has batch 1
  cases.push_back(matmul_case("matmul_broadcast_4d", {2, 2, 3, 4}, {2, 1, 4, 3}));
  cases.push_back(linear_case("linear_bias", {4, 5}, 3, true));
  cases.push_back(linear_case("linear_no_bias", {4, 5}, 3, false));
  cases.push_back(linear_case("linear_3d", {2, 3, 5}, 4, true));
}

}  // namespace coil::harness
