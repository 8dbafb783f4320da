// coil_linattn_chunked_bench: the chunked 2Mamba op (LinAttnChunked: power 2, sm_norm, decay) in bf16
// on CUDA, forward and forward+backward, at chunk lengths 64 / 128 / 256, beside the quadratic fused
// op (LinAttn) on the same inputs in the same run, at H heads of dim D and a fixed number of tokens per
// call (T from 1K to 32K, B = tokens / T): where the chunked form overtakes the quadratic one (issue 4:
// "automatic choice between them by length, with the crossover measured").
// Both ops run through the registry (kernel time, no autograd): fwd = the forward op; f+b = forward
// then backward op on a fixed dy (and, for the chunked op, zero final-state gradients are passed as
// undefined, as from a sequence end). The chunked op starts from a zero state. Timing: CUDA events on
// the current stream around each call, after warm-up calls, median of --iters.
//   coil_linattn_chunked_bench [--iters 10] [--warmup 2] [--tokens 32768] [--heads 16] [--dim 64]
//                              [--chunks 64,128,256] [--lengths 1024,2048,4096,8192,16384,32768]
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "bench/kernel_bench.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

namespace {

using namespace coil;

struct Options : bench::KernelBenchOptions {
  std::vector<int64_t> chunks = {64, 128, 256};
};

Options parse(int argc, char** argv) {
  Options o;
  o.iters = 10;
  o.warmup = 2;
  bench::parse_kernel_bench_args(argc, argv, o, "bench/linattn_chunked_bench.cpp",
                                 [&](const std::string& a, const std::function<std::string()>& next) {
                                   if (a != "--chunks") return false;
                                   o.chunks.clear();
                                   std::stringstream ss(next());
                                   for (std::string t; std::getline(ss, t, ',');) o.chunks.push_back(std::stoll(t));
                                   return true;
                                 });
  for (int64_t c : o.chunks) COIL_CHECK(c > 0, "--chunks: chunk lengths must be positive, got ", c);
  return o;
}

using bench::median_ms;

struct Row {
  int64_t T;
  double quad_f, quad_fb;
  std::vector<double> ch_f, ch_fb;  // per chunk length
};

int run(const Options& opt) {
  if (!device_type_available(DeviceType::CUDA)) {
    std::fprintf(stderr, "coil_linattn_chunked_bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  COIL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  std::printf("bf16 2Mamba (power 2, sm_norm, decay): chunked op vs quadratic op, H=%lld D=%lld, %lld tokens per "
              "call, median of %d after %d warm-up\n",
              (long long)opt.heads, (long long)opt.dim, (long long)opt.tokens, opt.iters, opt.warmup);
  const Device gpu = Device::cuda(0);
  const int64_t H = opt.heads, D = opt.dim, n = opt.tokens * H * D;
  const int64_t F = linattn_chunked_features(2, D);
  Generator gen(2026);
  auto draw = [&] { return Tensor::randn({n}, gen, DType::F32).to(DType::BF16).to(gpu); };
  const Tensor q_all = draw(), k_all = draw(), v_all = draw(), dy_all = draw();
  std::vector<Row> rows;
  for (int64_t T : opt.lengths) {
    COIL_CHECK(T > 0 && opt.tokens % T == 0, "--lengths: ", T, " does not divide ", opt.tokens);
    const int64_t B = opt.tokens / T;
    const Shape s{B, T, H, D};
    const Tensor q = q_all.view(s), k = k_all.view(s), v = v_all.view(s), dy = dy_all.view(s);
    // The 2Mamba layer's decay: a_t = -softplus(x), x ~ N(-4, 1); the quadratic op takes its cumsum.
    std::vector<double> a_host(size_t(B * T * H)), acs_host(a_host.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        double run = 0.0;
        for (int64_t t = 0; t < T; ++t) {
          const double at = -std::log1p(std::exp(gen.next_normal() - 4.0));
          run += at;
          a_host[size_t((b * T + t) * H + h)] = at;
          acs_host[size_t((b * T + t) * H + h)] = run;
        }
      }
    const Tensor a = Tensor::from_vector(a_host, {B, T, H}, DType::F32).to(gpu);
    const Tensor acs = Tensor::from_vector(acs_host, {B, T, H}, DType::F32).to(gpu);
    Row row{T, 0, 0, {}, {}};

    OpAttrs la;
    la.scale = 1.0 / double(D);
    la.power = 2;
    la.sm_norm = true;
    Tensor y = Tensor::empty(s, DType::BF16, gpu), den = Tensor::empty({B, H, T}, DType::F32, gpu);
    Tensor dq = Tensor::empty(s, DType::BF16, gpu), dk = Tensor::empty(s, DType::BF16, gpu),
           dv = Tensor::empty(s, DType::BF16, gpu), dacs = Tensor::empty({B, T, H}, DType::F32, gpu);
    auto quad_fwd = [&] {
      KernelArgs f{Op::LinAttn, {q, k, v, acs}, {y, den}, la};
      dispatch(Op::LinAttn, DType::BF16, f);
    };
    row.quad_f = median_ms(opt.warmup, opt.iters, quad_fwd);
    row.quad_fb = median_ms(opt.warmup, opt.iters, [&] {
      quad_fwd();
      KernelArgs b{Op::LinAttnBackward, {dy, q, k, v, acs, y, den}, {dq, dk, dv, dacs}, la};
      dispatch(Op::LinAttnBackward, DType::BF16, b);
    });
    den = Tensor();
    for (int64_t C : opt.chunks) {
      const int64_t nc = (T + C - 1) / C;
      OpAttrs ca = la;
      ca.dim = C;
      Tensor S = Tensor::empty({B, H, F, D}, DType::F32, gpu), z = Tensor::empty({B, H, F}, DType::F32, gpu);
      Tensor Sc = Tensor::empty({nc, B, H, F, D}, DType::F32, gpu), zc = Tensor::empty({nc, B, H, F}, DType::F32, gpu);
      Tensor cden = Tensor::empty({B, H, T}, DType::F32, gpu);
      Tensor dS0 = Tensor::empty({B, H, F, D}, DType::F32, gpu), dz0 = Tensor::empty({B, H, F}, DType::F32, gpu);
      Tensor da = Tensor::empty({B, T, H}, DType::F32, gpu);
      auto ch_fwd = [&] {
        KernelArgs f{Op::LinAttnChunked, {q, k, v, a, Tensor(), Tensor()}, {y, S, z, Sc, zc, cden}, ca};
        dispatch(Op::LinAttnChunked, DType::BF16, f);
      };
      row.ch_f.push_back(median_ms(opt.warmup, opt.iters, ch_fwd));
      row.ch_fb.push_back(median_ms(opt.warmup, opt.iters, [&] {
        ch_fwd();
        KernelArgs b{Op::LinAttnChunkedBackward,
                     {dy, Tensor(), Tensor(), q, k, v, a, y, Sc, zc, cden},
                     {dq, dk, dv, da, dS0, dz0},
                     ca};
        dispatch(Op::LinAttnChunkedBackward, DType::BF16, b);
      }));
      std::printf("T=%6lld B=%3lld C=%4lld  chunked fwd %9.3f ms  f+b %9.3f ms   (quadratic fwd %9.3f  f+b %9.3f)\n",
                  (long long)T, (long long)B, (long long)C, row.ch_f.back(), row.ch_fb.back(), row.quad_f,
                  row.quad_fb);
      std::fflush(stdout);
    }
    rows.push_back(row);
  }
  // The compact table last: ms per call; "best" = the fastest chunk length's f+b over the quadratic f+b.
  std::printf("\n%6s | %9s %9s |", "T", "quad fwd", "quad f+b");
  for (int64_t C : opt.chunks) std::printf("  C=%-4lld fwd %9s |", (long long)C, "f+b");
  std::printf(" %10s\n", "best/quad");
  for (const Row& r : rows) {
    std::printf("%6lld | %9.3f %9.3f |", (long long)r.T, r.quad_f, r.quad_fb);
    double best = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < r.ch_f.size(); ++i) {
      std::printf("  %12.3f %9.3f |", r.ch_f[i], r.ch_fb[i]);
      best = std::min(best, r.ch_fb[i]);
    }
    std::printf(" %10.2f\n", best / r.quad_fb);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return coil::bench::guarded_main("coil_linattn_chunked_bench", argc, argv,
                                   [](int c, char** v) { return run(parse(c, v)); });
}
