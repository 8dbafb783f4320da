// The fused training-step ops on CUDA: AddRMSNorm against Add then RMSNorm (bit for bit, forward and
// backward, on both the block-per-row and the bf16 warp-per-row paths) and against the CPU; the
// one-pass causal conv1d backward against the CPU at the models' widths; AdamWMulti against one
// AdamW per tensor (bit for bit on CUDA and on the CPU) across several launches' worth of tensors;
// SumSquaresMulti (the global gradient norm) against per-tensor sums.
// The CUDA tests skip themselves without a CUDA device; the CPU test always runs.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "tests/cuda/cuda_test_util.h"

namespace coil {
namespace {

uint64_t g_seed = 4000;
Tensor randn(const Shape& s, DType t, Device dev, double stddev = 1.0, double mean = 0.0) {
  Generator gen(++g_seed);
  return Tensor::randn(s, gen, DType::F64, Device::cpu(), mean, stddev).to(t).to(dev);
}

std::vector<double> host(const Tensor& t) { return t.to(Device::cpu()).to(DType::F64).to_vector(); }

void expect_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  const std::vector<double> va = host(a), vb = host(b);
  ASSERT_EQ(va.size(), vb.size()) << what;
  for (size_t i = 0; i < va.size(); ++i)
    if (!(va[i] == vb[i] || (std::isnan(va[i]) && std::isnan(vb[i])))) {
      ADD_FAILURE() << what << ": differs at [" << i << "]: " << va[i] << " vs " << vb[i];
      return;
    }
}

// |a - b| <= atol * max(1, max|b|) + rtol * |b| elementwise.
void expect_close(const Tensor& a, const Tensor& b, double atol, double rtol, const std::string& what) {
  const std::vector<double> va = host(a), vb = host(b);
  ASSERT_EQ(va.size(), vb.size()) << what;
  double scale = 1.0;
  for (double v : vb) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::abs(va[i] - vb[i]) <= atol * scale + rtol * std::abs(vb[i]))) {
      ADD_FAILURE() << what << ": [" << i << "] " << va[i] << " vs " << vb[i];
      return;
    }
}

// Forward outputs and the gradients of x, res, w for loss = sum(h * gh) + sum(y * gy).
struct NormRun {
  Tensor h, y, dx, dres, dw;
};
NormRun run_norm(bool fused, const Tensor& x0, const Tensor& r0, const Tensor& w0, const Tensor& gh,
                 const Tensor& gy) {
  Tensor x = x0.detach().set_requires_grad(true), r = r0.detach().set_requires_grad(true);
  Tensor w = w0.detach().set_requires_grad(true);
  Tensor h, y;
  if (fused) {
    std::tie(h, y) = add_rms_norm(x, r, w, 1e-5);
  } else {
    h = x + r;
    y = rms_norm(h, w, 1e-5);
  }
  (sum(h * gh) + sum(y * gy)).backward();
  return {h.detach(), y.detach(), x.grad(), r.grad(), w.grad()};
}

TEST(CudaFusedOps, AddRmsNormIsAddThenRmsNorm) {
  REQUIRE_CUDA();
  // (M, C): a block per row (C = 48, and f32 at 1024), the bf16 warp-per-row path (1024 = 256 * 4,
  // 512), and enough rows for several dw partial blocks.
  for (DType t : {DType::BF16, DType::F32}) {
    for (Shape s : {Shape{3, 7, 48}, Shape{300, 1024}, Shape{2, 700, 512}}) {
      const Device dev = Device::cuda();
      const int64_t C = s.back();
      Tensor x = randn(s, t, dev), r = randn(s, t, dev, 2.0), w = randn({C}, t, dev, 0.3, 1.0);
      Tensor gh = randn(s, t, dev), gy = randn(s, t, dev);
      const std::string what = std::string(dtype_name(t)) + " " + shape_str(s);
      NormRun f = run_norm(true, x, r, w, gh, gy), u = run_norm(false, x, r, w, gh, gy);
      expect_same_bits(f.h, u.h, what + " h");
      expect_same_bits(f.y, u.y, what + " y");
      expect_same_bits(f.dx, u.dx, what + " dx");
      expect_same_bits(f.dres, u.dres, what + " dres");
      expect_same_bits(f.dw, u.dw, what + " dw");
      if (t == DType::F32) {  // and the CPU in f64 on the same inputs
        auto cpu = [](const Tensor& a) { return a.to(Device::cpu()).to(DType::F64); };
        NormRun c = run_norm(true, cpu(x), cpu(r), cpu(w), cpu(gh), cpu(gy));
        expect_close(f.h, c.h, 2e-5, 1e-4, what + " vs cpu h");
        expect_close(f.y, c.y, 2e-5, 1e-4, what + " vs cpu y");
        expect_close(f.dx, c.dx, 2e-5, 1e-4, what + " vs cpu dx");
        expect_close(f.dres, c.dres, 2e-5, 1e-4, what + " vs cpu dres");
        expect_close(f.dw, c.dw, 2e-5, 1e-4, what + " vs cpu dw");
      }
    }
  }
}

// W <= 4 takes the one-pass kernel; channel counts that leave a partial block, lengths that are not
// a multiple of the run length and sequences shorter than a run.
TEST(CudaFusedOps, Conv1dBackwardMatchesTheCpu) {
  REQUIRE_CUDA();
  for (int64_t W : {1, 2, 3, 4}) {
    for (Shape s : {Shape{2, 300, 520}, Shape{3, 5, 40}, Shape{1, 129, 7}}) {
      const Device dev = Device::cuda();
      const int64_t C = s[2];
      Tensor x = randn(s, DType::F32, dev), w = randn({C, W}, DType::F32, dev, 0.5);
      Tensor b = randn({C}, DType::F32, dev), dy = randn(s, DType::F32, dev);
      // GPU f32 against the CPU in f64 on the same values.
      auto grads = [&](DType dt, Device d) {
        Tensor xx = x.to(dt).to(d).detach().set_requires_grad(true);
        Tensor ww = w.to(dt).to(d).detach().set_requires_grad(true);
        Tensor bb = b.to(dt).to(d).detach().set_requires_grad(true);
        conv1d_causal(xx, ww, bb).backward(dy.to(dt).to(d));
        return std::vector<Tensor>{xx.grad(), ww.grad(), bb.grad()};
      };
      const std::vector<Tensor> g = grads(DType::F32, dev), ref = grads(DType::F64, Device::cpu());
      const std::string what = "conv1d W=" + std::to_string(W) + " " + shape_str(s);
      expect_close(g[0], ref[0], 2e-5, 1e-4, what + " dx");
      expect_close(g[1], ref[1], 2e-5, 1e-4, what + " dw");
      expect_close(g[2], ref[2], 2e-5, 1e-4, what + " db");
    }
  }
}

// Sizes: 150 tensors (more than two launches' worth at 64 a launch), most not a whole number of
// blocks or vectors, an empty one and one of 13M elements (thousands of blocks).
std::vector<Shape> adamw_shapes() {
  std::vector<Shape> s;
  for (int i = 0; i < 148; ++i) s.push_back({int64_t(1 + 37 * (i % 40)), int64_t(3 + i % 5)});
  s.push_back({0, 4});
  s.push_back({13000000});
  return s;
}

// Tensor i of check_adamw_multi: every fifth one a view one element into a larger buffer, so its data
// is not 16-byte aligned (the CUDA kernel's scalar path) while still contiguous.
Tensor adamw_tensor(const Tensor& full, size_t i) {
  return i % 5 == 3 ? full.reshape({full.numel()}).narrow(0, 1, full.numel() - 1) : full;
}

void check_adamw_multi(Device dev, DType t) {
  std::vector<Shape> shapes = adamw_shapes();
  if (!dev.is_cuda()) shapes.back() = {70000};  // keep the CPU run short
  std::vector<Tensor> p1, g, m1, v1, p2, m2, v2;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Shape s = shapes[i];
    if (i % 5 == 3) s = {shape_numel(s) + 1};
    p1.push_back(adamw_tensor(randn(s, t, dev), i));
    g.push_back(adamw_tensor(randn(s, t, dev), i));
    m1.push_back(adamw_tensor(randn(s, t, dev, 0.1), i));
    v1.push_back(adamw_tensor(square(randn(s, t, dev, 0.05)), i));  // >= 0
    p2.push_back(p1.back().clone());
    m2.push_back(m1.back().clone());
    v2.push_back(v1.back().clone());
    if (i % 5 == 3) {  // the copies at the same odd offset
      for (Tensor* x : {&p2.back(), &m2.back(), &v2.back()}) {
        Tensor wide = Tensor::zeros({x->numel() + 1}, t, dev);
        wide.narrow(0, 1, x->numel()).copy_(*x);
        *x = wide.narrow(0, 1, x->numel());
      }
    }
  }
  AdamWParams hp;
  hp.lr = 0.01;
  hp.weight_decay = 0.1;
  hp.beta2 = 0.95;
  for (int64_t step = 1; step <= 2; ++step) {
    hp.step = step;
    for (size_t i = 0; i < shapes.size(); ++i) adamw_step(p1[i], g[i], m1[i], v1[i], hp);
    adamw_step_multi(p2, g, m2, v2, hp);
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::string what = std::string(dev.is_cuda() ? "cuda " : "cpu ") + dtype_name(t) + " tensor " +
                             std::to_string(i);
    expect_same_bits(p2[i], p1[i], what + " param");
    expect_same_bits(m2[i], m1[i], what + " m");
    expect_same_bits(v2[i], v1[i], what + " v");
  }
}

TEST(CudaFusedOps, AdamWMultiIsAdamWPerTensor) {
  REQUIRE_CUDA();
  check_adamw_multi(Device::cuda(), DType::F32);
  check_adamw_multi(Device::cuda(), DType::F64);
}

TEST(CpuFusedOps, AdamWMultiIsAdamWPerTensor) {
  check_adamw_multi(Device::cpu(), DType::F32);
  check_adamw_multi(Device::cpu(), DType::F64);
}

// SumSquaresMulti over 301 tensors (three launches' worth at 128 a launch) of mixed sizes, one of 5M
// elements and an empty one: each entry against the f64 sum of that tensor's squares (on the CPU,
// bit for bit sum_squares of the tensor); the same inputs give the same bits.
void check_sum_squares_multi(Device dev, DType t) {
  std::vector<Tensor> xs;
  for (int i = 0; i < 301; ++i) {
    const Shape s = i == 7 ? Shape{dev.is_cuda() ? 5000000 : 50000}
                           : i == 150 ? Shape{0, 3} : Shape{int64_t(1 + 53 * (i % 31)), 3};
    xs.push_back(randn(s, t, dev));
  }
  const Tensor got = sum_squares_multi(xs);
  ASSERT_EQ(got.shape(), (Shape{301}));
  EXPECT_EQ(got.dtype(), t == DType::F64 ? DType::F64 : DType::F32);
  const std::vector<double> g = host(got), again = host(sum_squares_multi(xs));
  const double tol = t == DType::F64 ? 1e-12 : 1e-6;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = sum_squares(xs[i].to(Device::cpu()).to(DType::F64)).item();
    EXPECT_NEAR(g[i], want, tol * want) << dtype_name(t) << " tensor " << i;
    EXPECT_EQ(again[i], g[i]) << "not deterministic: " << dtype_name(t) << " tensor " << i;
    if (!dev.is_cuda()) EXPECT_EQ(g[i], sum_squares(xs[i]).item()) << dtype_name(t) << " tensor " << i;
  }
}

TEST(CudaFusedOps, SumSquaresMultiIsTheSumOfEverySquare) {
  REQUIRE_CUDA();
  for (DType t : {DType::F32, DType::F64, DType::BF16}) check_sum_squares_multi(Device::cuda(), t);
}

TEST(CpuFusedOps, SumSquaresMultiIsTheSumOfEverySquare) {
  for (DType t : {DType::F32, DType::F64}) check_sum_squares_multi(Device::cpu(), t);
}

}  // namespace
}  // namespace coil
