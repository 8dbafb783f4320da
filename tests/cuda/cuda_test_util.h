// Shared by the CUDA test files: every CUDA test starts with REQUIRE_CUDA(), which skips it when this
// process sees no CUDA device (the only reason a coil test may skip itself); the error measures the
// kernel tests compare with; and the layer check of the Mamba scans (a layer on CUDA in f32 against the
// same weights on the CPU in f64).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/module.h"

#define REQUIRE_CUDA()                                             \
  do {                                                             \
    if (!::coil::device_type_available(::coil::DeviceType::CUDA))  \
      GTEST_SKIP() << "no CUDA device in this process";            \
  } while (0)

namespace coil::cuda_test {

inline double max_abs(const std::vector<double>& x) {
  double m = 0.0;
  for (double v : x) m = std::max(m, std::fabs(v));
  return m;
}
// max |got - want|; a NaN anywhere counts as infinite.
inline double max_err(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double m = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    m = std::isnan(e) ? INFINITY : std::max(m, e);
  }
  return m;
}
inline double rms_err(const std::vector<double>& got, const std::vector<double>& want) {
  double s = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) s += (got[i] - want[i]) * (got[i] - want[i]);
  return want.empty() ? 0.0 : std::sqrt(s / double(want.size()));
}

// Layer (C, options, Generator&, ParamOptions) built twice from one seed, f64 on the CPU and f32 on
// CUDA (weights copied from the CPU one), run on the same f32-representable x (B, T, C): the output,
// dx and every parameter's gradient (of sum(y * r)) agree to 1e-4 of max(1, the reference's max |.|).
template <typename Layer, typename Options>
void expect_layer_matches_cpu(int64_t C, const Options& o, int64_t B, int64_t T) {
  Generator g1(7), g2(7);
  Layer cpu(C, o, g1, ParamOptions{DType::F64, Device::cpu()});
  Layer gpu(C, o, g2, ParamOptions{DType::F32, Device::cuda(0)});
  const auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  {
    NoGradGuard no_grad;
    for (size_t i = 0; i < pc.size(); ++i) Tensor(pg[i].second).copy_(pc[i].second);  // shares storage
  }
  Generator gen(8);
  // f32-representable inputs, so both devices see the same values.
  Tensor x = Tensor::randn({B, T, C}, gen, DType::F64).to(DType::F32).to(DType::F64);
  Tensor r = Tensor::randn({B, T, C}, gen, DType::F64).to(DType::F32).to(DType::F64);
  Tensor xc = x.set_requires_grad(true);
  Tensor xg = x.to(DType::F32).to(Device::cuda(0)).detach().set_requires_grad(true);
  Tensor yc = cpu.forward(xc), yg = gpu.forward(xg);
  sum(yc * r).backward();
  sum(yg * r.to(DType::F32).to(Device::cuda(0))).backward();
  auto host = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::F64).to_vector(); };
  auto check = [&](const std::string& what, const std::vector<double>& got, const std::vector<double>& want) {
    const double err = max_err(got, want), lim = 1e-4 * std::max(1.0, max_abs(want));
    EXPECT_LE(err, lim) << what;
  };
  check("y", host(yg), host(yc));
  check("dx", host(xg.grad()), host(xc.grad()));
  for (size_t i = 0; i < pc.size(); ++i)
    check("d " + pc[i].first, host(pg[i].second.grad()), host(pc[i].second.grad()));
}

}  // namespace coil::cuda_test
