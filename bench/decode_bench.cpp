// coil_decode_bench: the softmax-attention decode step alone on the GPU, bf16, B = 8, H = 16, D = 64,
// one query per sequence over a K/V cache of P = 1K, 8K, 32K keys: the fused attention_decode op
// (split-K kernels) against the composed path SoftmaxAttention::step took before it,
// prefix_attention of one query (tensor ops in key blocks). Both under no-grad, as generation runs.
// Columns: ms per call, and the fused op's K + V read rate in GB/s (the bytes it cannot avoid).
// Usage: coil_decode_bench [iters]. Times: device-synchronised wall time over iters calls after 3
// warm-up calls.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "layers/prefix_attention.h"

using namespace coil;

int main(int argc, char** argv) {
  if (!device_type_available(DeviceType::CUDA)) {
    std::fprintf(stderr, "coil_decode_bench: no CUDA device\n");
    return 1;
  }
  const int iters = argc > 1 ? std::stoi(argv[1]) : 20;
  const Device dev = Device::cuda(0);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  NoGradGuard ng;
  auto time = [&](const std::function<void()>& fn) {
    for (int i = 0; i < 3; ++i) fn();
    hooks_for(DeviceType::CUDA).synchronize(0);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    hooks_for(DeviceType::CUDA).synchronize(0);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
  };
  const int64_t B = 8, H = 16, D = 64;
  const double sm = 1.0 / std::sqrt(double(D));
  std::printf("attention decode step, bf16, B=%lld H=%lld D=%lld\n", (long long)B, (long long)H, (long long)D);
  std::printf("%6s | %10s | %12s | %8s | %10s\n", "P", "fused ms", "composed ms", "ratio", "fused GB/s");
  Generator gen(7);
  for (int64_t P : {1024, 8192, 32768}) {
    auto draw = [&](int64_t T) { return Tensor::randn({B, T, H, D}, gen, DType::F32, dev).to(DType::BF16); };
    Tensor q = draw(1), k = draw(P), v = draw(P);
    const double fused = time([&] { attention_decode(q, k, v, sm); });
    const double composed = time([&] { prefix_attention(q, k, v, sm); });
    const double gbs = 2.0 * double(B * P * H * D) * 2.0 / (fused * 1e-3) / 1e9;
    std::printf("%6lld | %10.4f | %12.4f | %8.2f | %10.1f\n", (long long)P, fused, composed, composed / fused, gbs);
  }
  return 0;
}
