// AdamW against a hand-written closed form (two steps, weight decay, bias correction), parameter
// groups, skipped parameters without gradients, and global-norm gradient clipping.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "trainer/adamw.h"
#include "trainer/clip.h"

namespace coil {
namespace {

// Reference AdamW (PyTorch semantics) on plain doubles: one update with 1-based step t.
struct RefAdam {
  std::vector<double> p, m, v;
  void step(const std::vector<double>& g, double lr, double b1, double b2, double eps, double wd,
            int t) {
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1.0 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(b1, t));
      const double vhat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

Tensor param(const std::vector<double>& values, DType dt = DType::F64) {
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}, dt);
  t.set_requires_grad(true);
  return t;
}

void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.set_grad(Tensor::from_vector(g, p.shape(), p.dtype()));
}

void expect_near_vec(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

TEST(AdamW, TwoStepsMatchClosedForm) {
  const std::vector<double> p0 = {0.5, -1.0, 2.0}, g1 = {0.1, -0.2, 0.3}, g2 = {-0.4, 0.5, 0.05};
  const double lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1;
  Tensor p = param(p0);
  AdamW opt({p}, {lr, b1, b2, eps, wd});

  set_grad(p, g1);
  opt.step();
  // Step 1 in closed form: the bias-corrected m / sqrt(v) is g / |g|, so each entry moves by lr
  // against the sign of its gradient after the decoupled decay.
  std::vector<double> want1(3);
  for (int i = 0; i < 3; ++i)
    want1[i] = p0[i] * (1 - lr * wd) - lr * g1[i] / (std::abs(g1[i]) + eps);
  expect_near_vec(p.to_vector(), want1, 1e-12);
  expect_near_vec(opt.state(0, 0).m.to_vector(), {0.01, -0.02, 0.03}, 1e-15);
  expect_near_vec(opt.state(0, 0).v.to_vector(), {1e-4, 4e-4, 9e-4}, 1e-15);

  set_grad(p, g2);
  opt.step();
  RefAdam ref{p0, {0, 0, 0}, {0, 0, 0}};
  ref.step(g1, lr, b1, b2, eps, wd, 1);
  ref.step(g2, lr, b1, b2, eps, wd, 2);
  expect_near_vec(p.to_vector(), ref.p, 1e-12);
  expect_near_vec(opt.state(0, 0).m.to_vector(), ref.m, 1e-15);
  expect_near_vec(opt.state(0, 0).v.to_vector(), ref.v, 1e-15);
  EXPECT_EQ(opt.step_count(), 2);
  EXPECT_EQ(opt.state(0, 0).step, 2);
  // Hand-evaluated entry 0 after two steps: decay (0.99) twice, m = 0.9*0.01 - 0.04 = -0.031,
  // v = 0.99e-4 + 16e-4 = 1.699e-3, mhat = -0.031/0.19, vhat = 1.699e-3/0.0199.
  const double p1 = 0.5 * 0.99 - 0.1 * 0.1 / (0.1 + eps);
  const double want = p1 * 0.99 - 0.1 * (-0.031 / 0.19) / (std::sqrt(1.699e-3 / 0.0199) + eps);
  EXPECT_NEAR(p.to_vector()[0], want, 1e-12);
}

TEST(AdamW, F32MatchesReference) {
  const std::vector<double> p0 = {0.25, -0.75, 1.5, 3.0}, g = {0.3, -0.1, 0.0, 2.0};
  Tensor p = param(p0, DType::F32);
  AdamW opt({p}, {0.01, 0.9, 0.999, 1e-8, 0.01});
  RefAdam ref{p0, {0, 0, 0, 0}, {0, 0, 0, 0}};
  for (int t = 1; t <= 3; ++t) {
    set_grad(p, g);
    opt.step();
    ref.step(g, 0.01, 0.9, 0.999, 1e-8, 0.01, t);
  }
  expect_near_vec(p.to_vector(), ref.p, 1e-6);
  EXPECT_EQ(opt.state(0, 0).m.dtype(), DType::F32);
}

TEST(AdamW, ParamGroupsUseTheirOwnOptions) {
  Tensor a = param({1.0, 2.0}), b = param({-1.0, 0.5}), c = param({3.0});
  AdamW opt(AdamWOptions{0.2, 0.9, 0.999, 1e-8, 0.05});
  ParamGroupOptions own_lr;
  own_lr.lr = 0.5;
  own_lr.weight_decay = 0.0;
  ParamGroupOptions scaled;
  scaled.lr_scale = 0.1;
  scaled.beta1 = 0.5;
  scaled.eps = 1e-3;
  EXPECT_EQ(opt.add_param_group({a}, own_lr, "own"), 0u);
  EXPECT_EQ(opt.add_param_group({b}, scaled, "scaled"), 1u);
  EXPECT_EQ(opt.add_param_group({c}), 2u);
  opt.set_lr(0.3);  // a schedule moves the base lr: groups without their own lr follow it

  AdamWParams pa = opt.group_params(0), pb = opt.group_params(1), pc = opt.group_params(2);
  EXPECT_DOUBLE_EQ(pa.lr, 0.5);
  EXPECT_DOUBLE_EQ(pa.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(pb.lr, 0.03);
  EXPECT_DOUBLE_EQ(pb.beta1, 0.5);
  EXPECT_DOUBLE_EQ(pb.beta2, 0.999);
  EXPECT_DOUBLE_EQ(pb.eps, 1e-3);
  EXPECT_DOUBLE_EQ(pb.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(pc.lr, 0.3);
  EXPECT_EQ(opt.group(1).name, "scaled");
  EXPECT_EQ(opt.group(2).name, "group2");

  const std::vector<double> ga = {0.3, -0.6}, gb = {0.2, 0.1}, gc = {-1.0};
  set_grad(a, ga);
  set_grad(b, gb);
  set_grad(c, gc);
  opt.step();
  RefAdam ra{{1.0, 2.0}, {0, 0}, {0, 0}}, rb{{-1.0, 0.5}, {0, 0}, {0, 0}}, rc{{3.0}, {0}, {0}};
  ra.step(ga, 0.5, 0.9, 0.999, 1e-8, 0.0, 1);
  rb.step(gb, 0.03, 0.5, 0.999, 1e-3, 0.05, 1);
  rc.step(gc, 0.3, 0.9, 0.999, 1e-8, 0.05, 1);
  expect_near_vec(a.to_vector(), ra.p, 1e-12);
  expect_near_vec(b.to_vector(), rb.p, 1e-12);
  expect_near_vec(c.to_vector(), rc.p, 1e-12);
}

TEST(AdamW, ParamWithoutGradIsSkipped) {
  Tensor a = param({1.0, -2.0}), b = param({4.0, 5.0});
  AdamW opt({a, b}, {0.1, 0.9, 0.999, 1e-8, 0.1});
  set_grad(a, {0.5, 0.5});
  opt.step();
  // b had no gradient: no decay, no moment update, its own step count stays 0.
  expect_near_vec(b.to_vector(), {4.0, 5.0}, 0.0);
  expect_near_vec(opt.state(0, 1).m.to_vector(), {0.0, 0.0}, 0.0);
  expect_near_vec(opt.state(0, 1).v.to_vector(), {0.0, 0.0}, 0.0);
  EXPECT_EQ(opt.state(0, 1).step, 0);
  EXPECT_EQ(opt.state(0, 0).step, 1);

  // Its first real update is bias-corrected as a first step (per-parameter count, like PyTorch).
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  set_grad(b, {-1.0, 2.0});
  opt.step();
  RefAdam rb{{4.0, 5.0}, {0, 0}, {0, 0}};
  rb.step({-1.0, 2.0}, 0.1, 0.9, 0.999, 1e-8, 0.1, 1);
  expect_near_vec(b.to_vector(), rb.p, 1e-12);
  EXPECT_EQ(opt.step_count(), 2);
  EXPECT_EQ(opt.state(0, 0).step, 1);  // a had no gradient the second time
}

TEST(AdamW, RejectsDuplicateAndNonFloatParams) {
  Tensor a = param({1.0});
  AdamW opt;
  opt.add_param_group({a}, {}, "first");
  EXPECT_THROW(opt.add_param_group({a}, {}, "second"), Error);
  EXPECT_THROW(opt.add_param_group({param({1.0}, DType::BF16)}), Error);
  Tensor b = param({2.0});
  EXPECT_THROW(opt.add_param_group({b, b}), Error);
}

TEST(ClipGradNorm, ReturnsGlobalNormAndScales) {
  Tensor a = param({3.0, 4.0}), b = param({12.0}), none = param({100.0});
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});
  const std::vector<Tensor> params = {a, b, none};  // `none` has no gradient and is ignored
  EXPECT_NEAR(grad_norm(params), 13.0, 1e-12);

  // Below the threshold: untouched.
  EXPECT_NEAR(clip_grad_norm(params, 20.0), 13.0, 1e-12);
  expect_near_vec(a.grad().to_vector(), {3.0, 4.0}, 0.0);
  // max_norm <= 0: no clipping, still the norm.
  EXPECT_NEAR(clip_grad_norm(params, 0.0), 13.0, 1e-12);
  expect_near_vec(b.grad().to_vector(), {12.0}, 0.0);

  // Above: every gradient scaled by max_norm / (norm + 1e-6).
  EXPECT_NEAR(clip_grad_norm(params, 6.5), 13.0, 1e-12);
  const double c = 6.5 / (13.0 + 1e-6);
  expect_near_vec(a.grad().to_vector(), {3.0 * c, 4.0 * c}, 1e-12);
  expect_near_vec(b.grad().to_vector(), {12.0 * c}, 1e-12);
  EXPECT_NEAR(grad_norm(params), 6.5, 1e-6);
  EXPECT_FALSE(none.grad().defined());
}

TEST(ClipGradNorm, F32Gradients) {
  Tensor a = param({0.0, 0.0, 0.0}, DType::F32);
  set_grad(a, {1.0, 2.0, 2.0});
  EXPECT_NEAR(clip_grad_norm({a}, 1.0), 3.0, 1e-6);
  expect_near_vec(a.grad().to_vector(), {1.0 / 3, 2.0 / 3, 2.0 / 3}, 1e-6);
}

TEST(ClipGradNorm, NoGradientsGivesZero) {
  Tensor a = param({1.0});
  EXPECT_EQ(clip_grad_norm({a}, 1.0), 0.0);
}

}  // namespace
}  // namespace coil
