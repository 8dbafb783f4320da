// coil_gemm_bench: bf16 linear (y = x w^T through cuBLASLt) at the small config's training shapes,
// forward and the two backward products (dx = g w, dw = g^T x), timed with device synchronisation
// over --iters calls after warm-up; prints ms and TFLOP/s per shape. bench/gemm_torch.py times
// torch.matmul on the same shapes for a same-run ratio.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"

using namespace coil;

int main(int argc, char** argv) {
  if (!device_type_available(DeviceType::CUDA)) {
    std::fprintf(stderr, "coil_gemm_bench: no CUDA device\n");
    return 1;
  }
  const int iters = argc > 1 ? std::stoi(argv[1]) : 20;
  const Device dev = Device::cuda(0);
  struct Shape { const char* name; int64_t M, K, N; };
  const std::vector<Shape> shapes = {{"qkv", 16384, 1024, 3072}, {"o", 16384, 1024, 1024},
                                     {"gate/up", 16384, 1024, 2048}, {"down", 16384, 2048, 1024},
                                     {"head", 16384, 1024, 32000}};
  NoGradGuard ng;
  Generator gen(0);
  std::printf("%-8s %6s %6s %6s | %9s %8s | %9s %8s | %9s %8s\n", "gemm", "M", "K", "N", "fwd ms",
              "TFLOP/s", "dx ms", "TFLOP/s", "dw ms", "TFLOP/s");
  for (const Shape& s : shapes) {
    Tensor x = Tensor::randn({s.M, s.K}, gen, DType::F32, dev).to(DType::BF16);
    Tensor w = Tensor::randn({s.N, s.K}, gen, DType::F32, dev).to(DType::BF16);
    Tensor g = Tensor::randn({s.M, s.N}, gen, DType::F32, dev).to(DType::BF16);
    auto time = [&](auto fn) {
      for (int i = 0; i < 3; ++i) fn();
      hooks_for(DeviceType::CUDA).synchronize(0);
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) fn();
      hooks_for(DeviceType::CUDA).synchronize(0);
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
    };
    const double flop = 2.0 * double(s.M) * double(s.K) * double(s.N);
    const double f = time([&] { linear(x, w); });
    const double dx = time([&] { matmul(g, w); });
    const double dw = time([&] { matmul(g.t(), x); });
    std::printf("%-8s %6lld %6lld %6lld | %9.3f %8.1f | %9.3f %8.1f | %9.3f %8.1f\n", s.name,
                (long long)s.M, (long long)s.K, (long long)s.N, f, flop / f * 1e-9, dx, flop / dx * 1e-9,
                dw, flop / dw * 1e-9);
  }
  return 0;
}
