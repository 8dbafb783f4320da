// Helpers shared by the linear-mixer tests: relative error, fp64 random tensors, a tiny fp64 mixer of a
// preset, and a central finite-difference gradient check of a scalar function of some leaf tensors.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "layers/linear_mixer.h"

namespace coil::linear_test {

inline const ParamOptions kF64{DType::F64, Device::cpu()};

// max |a - b| / max |b|
inline double max_rel(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
  auto x = a.to_vector(), y = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / std::max(den, 1e-300);
}

inline Tensor randn64(const Shape& s, Generator& g, double stddev = 1.0) {
  return Tensor::randn(s, g, DType::F64, Device::cpu(), 0.0, stddev);
}

// A tiny fp64 mixer of a preset (options may be edited after construction: form, chunk_size).
inline std::shared_ptr<LinearAttentionMixer> tiny_mixer(const LinearMixerOptions& o, uint64_t seed,
                                                        int64_t C = 12, int64_t H = 2,
                                                        int64_t D = 4) {
  Generator gen(seed);
  return std::make_shared<LinearAttentionMixer>(C, H, D, o, 1e-5, gen, kF64);
}

// Multiplies a parameter in place (to reach strong decays).
inline void scale_param(const Tensor& p, double alpha, double beta = 0.0) {
  double* d = p.data<double>();
  for (int64_t i = 0; i < p.numel(); ++i) d[i] = alpha * d[i] + beta;
}

// Checks d f / d leaf against central differences for every leaf (all entries, or `max_entries`
// evenly spaced ones). f must rebuild its graph from the leaves' current values. Returns the largest
// |fd - ad| / max(1, |ad|) seen.
inline double fd_check(const std::function<Tensor()>& f, const std::vector<Tensor>& leaves,
                       const std::vector<std::string>& names, int64_t max_entries = 40,
                       double h = 1e-6, double tol = 1e-7) {
  for (const Tensor& l : leaves) l.zero_grad();
  f().backward();
  double worst = 0;
  for (size_t li = 0; li < leaves.size(); ++li) {
    const Tensor& leaf = leaves[li];
    Tensor g = leaf.grad();
    std::vector<double> ad =
        g.defined() ? g.to_vector() : std::vector<double>(size_t(leaf.numel()), 0.0);
    double* d = leaf.data<double>();
    const int64_t n = leaf.numel();
    const int64_t stride = std::max<int64_t>(1, n / max_entries);
    for (int64_t i = 0; i < n; i += stride) {
      const double x0 = d[i];
      d[i] = x0 + h;
      double fp;
      double fm;
      {
        NoGradGuard ng;
        fp = f().item();
        d[i] = x0 - h;
        fm = f().item();
      }
      d[i] = x0;
      const double fd = (fp - fm) / (2 * h);
      const double err = std::abs(fd - ad[size_t(i)]) / std::max(1.0, std::abs(ad[size_t(i)]));
      worst = std::max(worst, err);
      EXPECT_LT(err, tol) << names[li] << "[" << i << "]: finite difference " << fd << ", autograd "
                          << ad[size_t(i)];
    }
  }
  return worst;
}

}  // namespace coil::linear_test
