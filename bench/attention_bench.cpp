// coil_attention_bench: causal softmax attention in bf16 through coil's CUDA op (cuDNN's fused
// attention where it takes the shape), forward and forward+backward, at H heads of dim D and a fixed
// number of tokens per call (T from 1K to 32K, B = tokens / T): the kernel benchmark.
// Timing: CUDA events around each call on the current stream, after warm-up calls (which also build
// and cache the cuDNN plans), median of --iters. fwd: causal_attention under NoGradGuard. fwd+bwd,
// two ways: "kernels" runs the Attention and AttentionBackward ops through the registry (the kernel
// time the targets are about); "autograd" is causal_attention + backward(dO) with the leaf
// grads dropped between calls, which adds what the engine does around the op (today: AccumulateGrad
// clones each incoming leaf gradient, three (B, T, H, D) copies).
// FLOPs (the FlashAttention convention): fwd = 4 B H T^2 D / 2 (two matmuls, causal half),
// fwd+bwd = 3.5 x fwd (the backward does five matmuls to the forward's two).
//   coil_attention_bench [--iters 20] [--warmup 3] [--tokens 32768] [--heads 16] [--dim 64]
//                        [--lengths 1024,2048,4096,8192,16384,32768] [--csv FILE]
// --csv writes "T,B,H,D,fwd_ms,fwdbwd_kernels_ms,impl_fwd,impl_bwd,fwdbwd_autograd_ms" lines for
// bench/attention_torch.py.
//   coil_attention_bench --prefix 4096:8192 [--heads 16] [--dim 64] [--iters 5] [--warmup 1]
// instead times prefix_attention (layers/prefix_attention.h) at B = 1, Tq queries over Tk keys, bf16,
// forward + backward through autograd, as sequence parallel runs it: causal (a later shard over its
// gathered prefix), causal with the lse output in the loss (the ring: the backward gets dlse), and
// non-causal with lse (a ring step over an earlier shard); each through the fused op (no decay) and
// through the block path it replaced (the same call with all-zero decay cumsums, which is that path).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bench/kernel_bench.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"
#include "layers/prefix_attention.h"

namespace {

using namespace coil;

inline constexpr int64_t kMaxNativeT = 2048;

struct Options : bench::KernelBenchOptions {
  std::string csv;
  int64_t prefix_q = 0, prefix_k = 0;  // --prefix Tq:Tk
};

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_kernel_bench_args(argc, argv, o, "bench/attention_bench.cpp",
                                 [&](const std::string& a, const std::function<std::string()>& next) {
                                   if (a == "--prefix") {
                                     const std::string v = next();
                                     const size_t colon = v.find(':');
                                     COIL_CHECK(colon != std::string::npos, "--prefix wants Tq:Tk, got ", v);
                                     o.prefix_q = std::stoll(v.substr(0, colon));
                                     o.prefix_k = std::stoll(v.substr(colon + 1));
                                     COIL_CHECK(o.prefix_q > 0 && o.prefix_k >= o.prefix_q,
                                                "--prefix wants 0 < Tq <= Tk, got ", v);
                                     return true;
                                   }
                                   if (a != "--csv") return false;
                                   o.csv = next();
                                   return true;
                                 });
  return o;
}

using bench::median_ms;

// --prefix: prefix_attention forward + backward, fused op against the block path, one row per form.
int run_prefix(const Options& opt) {
  const Device gpu = Device::cuda(0);
  const int64_t Tq = opt.prefix_q, Tk = opt.prefix_k, H = opt.heads, D = opt.dim;
  std::printf("prefix_attention bf16 fwd+bwd (autograd), B=1 Tq=%lld Tk=%lld H=%lld D=%lld, median of %d after "
              "%d warm-up\n",
              (long long)Tq, (long long)Tk, (long long)H, (long long)D, opt.iters, opt.warmup);
  Generator gen(2026);
  auto leaf = [&](int64_t T) {
    Tensor t = Tensor::randn({1, T, H, D}, gen, DType::F32).to(DType::BF16).to(gpu);
    t.set_requires_grad(true);
    return t;
  };
  Tensor q = leaf(Tq), k = leaf(Tk), v = leaf(Tk);
  const Tensor dO = Tensor::randn({1, Tq, H, D}, gen, DType::F32).to(DType::BF16).to(gpu);
  const Tensor dl = Tensor::randn({1, Tq, H}, gen, DType::F32).to(gpu);
  const Tensor zq = Tensor::zeros({1, Tq, H}, DType::F32, gpu), zk = Tensor::zeros({1, Tk, H}, DType::F32, gpu);
  const double sm = 1.0 / std::sqrt(double(D));
  std::printf("%-22s %-18s %12s %12s %9s\n", "form", "impl fwd / bwd", "fused ms", "block ms", "speed-up");
  for (const auto& [name, causal, with_lse] : {std::tuple{"causal (gather)", true, false},
                                              std::tuple{"causal + lse (ring)", true, true},
                                              std::tuple{"full + lse (ring)", false, true}}) {
    const cuda::AttentionShape as{1, Tq, Tk, H, D, causal, with_lse};
    const auto impl_f = cuda::bf16_attention_impl(0, as, false), impl_b = cuda::bf16_attention_impl(0, as, true);
    auto step = [&, causal = causal, with_lse = with_lse](bool block) {
      Tensor lse;
      Tensor y = prefix_attention(q, k, v, sm, block ? zq : Tensor(), block ? zk : Tensor(),
                                  with_lse ? &lse : nullptr, causal);
      Tensor loss = sum((y * dO).to(DType::F32));
      if (with_lse) loss = loss + sum(lse * dl);
      loss.backward();
    };
    auto clear = [&] {
      q.zero_grad();
      k.zero_grad();
      v.zero_grad();
    };
    const double fused = median_ms(opt.warmup, opt.iters, [&] { step(false); }, clear);
    const double block = median_ms(opt.warmup, opt.iters, [&] { step(true); }, clear);
    const std::string impl = std::string(cuda::attention_impl_name(impl_f)) + " / " + cuda::attention_impl_name(impl_b);
    std::printf("%-22s %-18s %12.3f %12.3f %8.1fx\n", name, impl.c_str(), fused, block, block / fused);
    std::fflush(stdout);
  }
  return 0;
}

int run(const Options& opt) {
  if (!device_type_available(DeviceType::CUDA)) {
    std::fprintf(stderr, "coil_attention_bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  COIL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs); %s\n", prop.name, prop.multiProcessorCount,
              cuda::cudnn_attention_info().c_str());
  if (opt.prefix_q) return run_prefix(opt);
  std::printf("causal bf16 attention, H=%lld D=%lld, %lld tokens per call, median of %d after %d warm-up\n",
              (long long)opt.heads, (long long)opt.dim, (long long)opt.tokens, opt.iters, opt.warmup);
  FILE* csv = opt.csv.empty() ? nullptr : std::fopen(opt.csv.c_str(), "w");
  COIL_CHECK(opt.csv.empty() || csv, "cannot write ", opt.csv);

  // One random draw serves every shape: B * T = tokens throughout.
  const Device gpu = Device::cuda(0);
  const int64_t H = opt.heads, D = opt.dim, n = opt.tokens * H * D;
  Generator gen(2026);
  auto draw = [&] { return Tensor::randn({n}, gen, DType::F32).to(DType::BF16).to(gpu); };
  const Tensor q_all = draw(), k_all = draw(), v_all = draw(), do_all = draw();

  std::printf("%7s %4s  %-7s %-7s %10s %10s %10s %12s %12s\n", "T", "B", "fwd", "bwd", "fwd ms",
              "f+b ms", "autograd", "fwd TFLOP/s", "f+b TFLOP/s");
  for (int64_t T : opt.lengths) {
    COIL_CHECK(T > 0 && opt.tokens % T == 0, "--lengths: ", T, " does not divide ", opt.tokens);
    const int64_t B = opt.tokens / T;
    const Shape s{B, T, H, D};  // (B, T, H, D)
    Tensor q = q_all.view(s).detach(), k = k_all.view(s).detach(), v = v_all.view(s).detach();
    const Tensor dO = do_all.view(s);
    const auto impl_f = cuda::bf16_attention_impl(0, B, T, H, D, false);
    const auto impl_b = cuda::bf16_attention_impl(0, B, T, H, D, true);
    // The native kernels are a correctness path (one warp per row): seconds per call at long T.
    if ((impl_f == cuda::AttentionImpl::Native || impl_b == cuda::AttentionImpl::Native) && T > kMaxNativeT) {
      std::printf("%7lld %4lld  %-7s %-7s   skipped: native kernels above T=%lld\n", (long long)T, (long long)B,
                  cuda::attention_impl_name(impl_f), cuda::attention_impl_name(impl_b), (long long)kMaxNativeT);
      continue;
    }

    const double fwd = median_ms(opt.warmup, opt.iters, [&] {
      NoGradGuard no_grad;
      Tensor o = causal_attention(q, k, v);
    }, [] {});
    const double scale = 1.0 / std::sqrt(double(D));
    const double fb = median_ms(opt.warmup, opt.iters, [&] {
      Tensor o = Tensor::empty(s, DType::BF16, gpu), lse = Tensor::empty({B, H, T}, DType::F32, gpu);
      KernelArgs f{Op::Attention, {q, k, v}, {o, lse}, {}};
      f.attrs.scale = scale;
      dispatch(Op::Attention, DType::BF16, f);
      Tensor dq = Tensor::empty(s, DType::BF16, gpu), dk = Tensor::empty(s, DType::BF16, gpu),
             dv = Tensor::empty(s, DType::BF16, gpu);
      KernelArgs b{Op::AttentionBackward, {dO, q, k, v, o, lse}, {dq, dk, dv}, {}};
      b.attrs.scale = scale;
      dispatch(Op::AttentionBackward, DType::BF16, b);
    }, [] {});
    q.set_requires_grad(true);
    k.set_requires_grad(true);
    v.set_requires_grad(true);
    const double fb_autograd = median_ms(opt.warmup, opt.iters, [&] {
      Tensor o = causal_attention(q, k, v);
      o.backward(dO);
    }, [&] {
      q.zero_grad();
      k.zero_grad();
      v.zero_grad();
    });

    const double flops = 4.0 * double(B) * double(H) * double(T) * double(T) * double(D) / 2.0;
    std::printf("%7lld %4lld  %-7s %-7s %10.3f %10.3f %10.3f %12.1f %12.1f\n", (long long)T, (long long)B,
                cuda::attention_impl_name(impl_f), cuda::attention_impl_name(impl_b), fwd, fb, fb_autograd,
                flops / (fwd * 1e-3) / 1e12, 3.5 * flops / (fb * 1e-3) / 1e12);
    std::fflush(stdout);
    if (csv)
      std::fprintf(csv, "%lld,%lld,%lld,%lld,%.5f,%.5f,%s,%s,%.5f\n", (long long)T, (long long)B, (long long)H,
                   (long long)D, fwd, fb, cuda::attention_impl_name(impl_f), cuda::attention_impl_name(impl_b),
                   fb_autograd);
  }
  if (csv) std::fclose(csv);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return coil::bench::guarded_main("coil_attention_bench", argc, argv, [](int c, char** v) { return run(parse(c, v)); });
}
