// coil_step_ops_bench: the small-config training step's fused row ops, each alone on the GPU at the
// step's shapes (bf16, B*T = 8 x 2048, C = 1024), against the path they replace, in one run:
//   conv1d_bwd  Conv1dBackward on (8, 2048, 3072), W = 2 (2Mamba-small's q/k/v conv) and W = 4: the
//               one-pass kernel vs the earlier two-pass form (COIL_CONV1D_BWD_TWO_PASS=1)
//   add_norm    AddRMSNorm forward + backward vs Add + RMSNorm forward, RMSNormBackward + the
//               gradient sum's Add
//   adamw       one optimizer step over 2Mamba-small's f32 parameter shapes (183 tensors):
//               adamw_step_multi vs one adamw_step per tensor
//   grad_norm   the global gradient norm over the same shapes: sum_squares_multi vs sum_squares per
//               tensor, concatenated and summed on the device (one host read each)
// Usage: coil_step_ops_bench [iters]. Times: device-synchronised wall time over iters calls after 3
// warm-up calls, ms per call.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/registry.h"

using namespace coil;

namespace {

KernelArgs args(Op op, std::vector<Tensor> in, std::vector<Tensor> out, double eps = 0.0) {
  KernelArgs a;
  a.op = op;
  a.in = std::move(in);
  a.out = std::move(out);
  a.attrs.eps = eps;
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  if (!device_type_available(DeviceType::CUDA)) {
    std::fprintf(stderr, "coil_step_ops_bench: no CUDA device\n");
    return 1;
  }
  const int iters = argc > 1 ? std::stoi(argv[1]) : 20;
  const Device dev = Device::cuda(0);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  NoGradGuard ng;
  // Values do not change these kernels' work; ones are cheap to make (random fills of ~1e9 elements
  // took longer than the timing).
  auto filled = [&](const Shape& s, DType t) { return Tensor::ones(s, t, dev); };
  auto time = [&](const std::function<void()>& fn) {
    for (int i = 0; i < 3; ++i) fn();
    hooks_for(DeviceType::CUDA).synchronize(0);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    hooks_for(DeviceType::CUDA).synchronize(0);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
  };
  std::printf("%-11s | %10s | %10s | %6s\n", "op", "new ms", "old ms", "old/new");
  auto row = [](const char* name, double fresh, double old) {
    std::printf("%-11s | %10.4f | %10.4f | %6.2f\n", name, fresh, old, old / fresh);
  };

  for (int64_t W : {2, 4}) {  // conv1d backward
    const DType t = DType::BF16;
    Tensor x = filled({8, 2048, 3072}, t), dy = filled({8, 2048, 3072}, t), w = filled({3072, W}, t);
    Tensor dx = Tensor::empty(x.shape(), t, dev), dw = Tensor::empty(w.shape(), t, dev);
    Tensor db = Tensor::empty({3072}, t, dev);
    KernelArgs a = args(Op::Conv1dBackward, {dy, x, w}, {dx, dw, db});
    auto fn = [&] { dispatch(a.op, t, a); };
    unsetenv("COIL_CONV1D_BWD_TWO_PASS");
    const double fresh = time(fn);
    setenv("COIL_CONV1D_BWD_TWO_PASS", "1", 1);
    const double old = time(fn);
    unsetenv("COIL_CONV1D_BWD_TWO_PASS");
    row(W == 2 ? "conv1d_w2" : "conv1d_w4", fresh, old);
  }
  {  // residual add + RMSNorm, forward and backward
    const DType t = DType::BF16;
    const int64_t M = 16384, C = 1024;
    Tensor x = filled({M, C}, t), r = filled({M, C}, t), w = filled({C}, t);
    Tensor dy = filled({M, C}, t), dh = filled({M, C}, t);
    Tensor h = Tensor::empty({M, C}, t, dev), y = Tensor::empty({M, C}, t, dev);
    Tensor rstd = Tensor::empty({M}, DType::F32, dev), dx = Tensor::empty({M, C}, t, dev);
    Tensor dw = Tensor::empty({C}, t, dev), sum = Tensor::empty({M, C}, t, dev);
    KernelArgs f = args(Op::AddRMSNorm, {x, r, w}, {h, y, rstd}, 1e-5);
    KernelArgs b = args(Op::AddRMSNormBackward, {dy, dh, h, w, rstd}, {dx, dw});
    const double fresh = time([&] {
      dispatch(f.op, t, f);
      dispatch(b.op, t, b);
    });
    KernelArgs add = args(Op::Add, {x, r}, {h});
    KernelArgs nf = args(Op::RMSNorm, {h, w}, {y, rstd}, 1e-5);
    KernelArgs nb = args(Op::RMSNormBackward, {dy, h, w, rstd}, {dx, dw});
    KernelArgs gsum = args(Op::Add, {dx, dh}, {sum});
    const double old = time([&] {
      for (KernelArgs* k : {&add, &nf, &nb, &gsum}) dispatch(k->op, t, *k);
    });
    row("add_norm", fresh, old);
  }
  {  // AdamW over 2Mamba-small's parameter shapes (embedding, head, final norm, 20 layers)
    std::vector<Shape> shapes = {{32000, 1024}, {32000, 1024}, {1024}};
    for (int l = 0; l < 20; ++l)
      for (Shape s : {Shape{1024}, Shape{3072, 1024}, Shape{3072, 2}, Shape{3072}, Shape{1024, 1024},
                      Shape{1024}, Shape{2048, 1024}, Shape{2048, 1024}, Shape{1024, 2048}})
        shapes.push_back(s);
    std::vector<Tensor> p, g, m, v;
    for (const Shape& s : shapes) {
      p.push_back(filled(s, DType::F32));
      g.push_back(filled(s, DType::F32));
      m.push_back(Tensor::zeros(s, DType::F32, dev));
      v.push_back(Tensor::zeros(s, DType::F32, dev));
    }
    AdamWParams hp;
    hp.lr = 1e-4;
    hp.weight_decay = 0.1;
    const double fresh = time([&] { adamw_step_multi(p, g, m, v, hp); });
    const double old = time([&] {
      for (size_t i = 0; i < p.size(); ++i) adamw_step(p[i], g[i], m[i], v[i], hp);
    });
    row("adamw", fresh, old);
    // The global gradient norm over the same tensors (as gradients), host read included: one
    // sum_squares_multi, its (n) sums added on the device, against trainer/clip.cpp's earlier form
    // (sum_squares per tensor, the partials concatenated and summed on the device, one read).
    const double norm_fresh = time([&] { (void)sum(sum_squares_multi(g).to(DType::F64)).item(); });
    const double norm_old = time([&] {
      std::vector<Tensor> parts;
      for (const Tensor& x : g) parts.push_back(sum_squares(x).reshape({1}));
      (void)sum(concat(parts, 0).to(DType::F64)).item();
    });
    row("grad_norm", norm_fresh, norm_old);
  }
  return 0;
}
