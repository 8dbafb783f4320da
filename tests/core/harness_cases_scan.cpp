// Harness cases: the fused Mamba-1 selective scan (ops SelectiveScan / SelectiveScanBackward). Each case
// checks y and the final state against a plain double recurrence over the formula of core/op_list.h,
// and the f64 gradient check covers u, dt, A, B, C and h0 through both outputs (the backward kernel, B
// kind). Shapes span a zero and a given initial state, T = 1, and T across several 64-token chunks
// (the backward recomputes the states from those saved at chunk starts), with N not a power of two.
#include <cmath>

#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

using Outs = std::vector<Tensor>;
using HOuts = std::vector<HostTensor>;

// x: u, dt (B, T, D), A (D, N), Bm, Cm (B, T, N) and h0 (B, D, N) when with_h0.
HOuts reference(const HOuts& x, bool with_h0) {
  const int64_t B = x[0].shape[0], T = x[0].shape[1], D = x[0].shape[2], N = x[2].shape[1];
  HostTensor y = HostTensor::zeros({B, T, D}), hT = HostTensor::zeros({B, D, N});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t n = 0; n < N; ++n) {
        double h = with_h0 ? x[5][(b * D + d) * N + n] : 0.0;
        for (int64_t t = 0; t < T; ++t) {
          const double dt = x[1][(b * T + t) * D + d];
          h = std::exp(dt * x[2][d * N + n]) * h + dt * x[0][(b * T + t) * D + d] * x[3][(b * T + t) * N + n];
          y[(b * T + t) * D + d] += h * x[4][(b * T + t) * N + n];
        }
        hT[(b * D + d) * N + n] = h;
      }
  return HOuts{y, hT};
}

OpCase scan_case(std::string name, int64_t B, int64_t T, int64_t D, int64_t N, bool with_h0) {
  OpCase c;
  c.name = std::move(name);
  c.covers = {Op::SelectiveScan, Op::SelectiveScanBackward};
  // dt as softplus leaves it (positive, around mamba_ssm's init range and above), A = -exp(A_log) < 0.
  c.inputs = {normal({B, T, D}), uniform({B, T, D}, 0.05, 0.6), uniform({D, N}, -2.0, -0.1),
              normal({B, T, N}), normal({B, T, N})};
  if (with_h0) c.inputs.push_back(normal({B, D, N}));
  c.bf16_tol_scale = 2.0;
  c.run = [with_h0](const Outs& x) {
    Tensor hT;
    Tensor y = selective_scan(x[0], x[1], x[2], x[3], x[4], with_h0 ? x[5] : Tensor(), &hT);
    return Outs{y, hT};
  };
  c.reference = [with_h0](const HOuts& x) { return reference(x, with_h0); };
  return c;
}

}  // namespace

void add_scan_cases(std::vector<OpCase>& cases) {
  cases.push_back(scan_case("selective_scan_zero_state", 2, 9, 3, 4, false));
  cases.push_back(scan_case("selective_scan_h0", 2, 7, 2, 3, true));
  cases.push_back(scan_case("selective_scan_t1", 3, 1, 2, 5, true));
  cases.push_back(scan_case("selective_scan_chunks", 1, 150, 2, 3, true));
}

}  // namespace coil::harness
