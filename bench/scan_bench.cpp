// coil_scan_bench: the fused Mamba-1 selective scan (ops SelectiveScan / SelectiveScanBackward) on CUDA,
// forward and forward+backward, at Mamba-1 shapes: D channels (expand 2 x d_model 768 = 1536), d_state
// N = 16, a fixed number of tokens per call (T from 1K to 32K, B = tokens / T). Rows for bf16 (u, B, C,
// y in bf16; dt, A and the state fp32, what autocast runs) and f32, in the automatic form (split over
// chunks where the sequential grid is small for the GPU); "seq" columns force the sequential form (bf16).
// Both ops run through the registry (kernel time, no autograd): fwd = the forward op (y, the final
// state and the chunk-entry states); f+b = forward then backward op on a fixed dy. Timing: CUDA events
// on the current stream around each call, after warm-up calls, median of --iters. "GB/s" counts the
// forward's compulsory traffic (u, dt, B, C read, y written once) over its time. Last, one line times
// the fused op against the composed chunked form it replaced, at a small shape (see compare_composed).
//   coil_scan_bench [--iters 20] [--warmup 3] [--tokens 32768] [--channels 1536] [--d-state 16]
//                   [--lengths 1024,2048,4096,8192,16384,32768]
// (--heads / --dim of the shared options are not used here.)
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/kernel_bench.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "kernels/cuda/selective_scan.h"
#include "layers/ssm_scan.h"

namespace {

using namespace coil;

struct Options : bench::KernelBenchOptions {
  int64_t channels = 1536, d_state = 16;
};

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_kernel_bench_args(argc, argv, o, "bench/scan_bench.cpp",
                                 [&](const std::string& a, const std::function<std::string()>& next) {
                                   if (a == "--channels") o.channels = std::stoll(next());
                                   else if (a == "--d-state") o.d_state = std::stoll(next());
                                   else return false;
                                   return true;
                                 });
  COIL_CHECK(o.channels > 0 && o.d_state > 0, "--channels and --d-state must be positive");
  return o;
}

using bench::median_ms;

// fwd and f+b ms of one dtype at (B, T).
struct Times {
  double fwd, fb;
};

// Inputs for every length, drawn once for `tokens` tokens and viewed as (B, T, ...).
struct Data {
  Tensor u, Bm, Cm, dy;  // the storage dtype
  Tensor dt, A;          // fp32
};

Data make_data(const Options& opt, DType t, const Tensor& u32, const Tensor& bc32, const Tensor& dy32,
               const Tensor& dt, const Tensor& A) {
  Data d;
  d.u = u32.to(t);
  d.Bm = bc32.narrow(0, 0, opt.tokens * opt.d_state).to(t);
  d.Cm = bc32.narrow(0, opt.tokens * opt.d_state, opt.tokens * opt.d_state).to(t);
  d.dy = dy32.to(t);
  d.dt = dt;
  d.A = A;
  return d;
}

Times time_scan(const Options& opt, DType t, const Data& x, int64_t B, int64_t T) {
  const Device gpu = Device::cuda(0);
  const DType st = DType::F32;
  const int64_t D = opt.channels, N = opt.d_state, nc = (T + kSelectiveScanChunk - 1) / kSelectiveScanChunk;
  const Tensor u = x.u.view({B, T, D}), dt = x.dt.view({B, T, D}), dy = x.dy.view({B, T, D});
  const Tensor Bm = x.Bm.view({B, T, N}), Cm = x.Cm.view({B, T, N}), A = x.A;
  Tensor y = Tensor::empty({B, T, D}, t, gpu), hT = Tensor::empty({B, D, N}, st, gpu);
  Tensor hc = Tensor::empty({B, nc, D, N}, st, gpu);
  Tensor du = Tensor::empty({B, T, D}, t, gpu), ddt = Tensor::empty({B, T, D}, st, gpu);
  Tensor dA = Tensor::empty({D, N}, st, gpu), dB = Tensor::empty({B, T, N}, t, gpu);
  Tensor dC = Tensor::empty({B, T, N}, t, gpu), dh0 = Tensor::empty({B, D, N}, st, gpu);
  auto fwd = [&] {
    KernelArgs f{Op::SelectiveScan, {u, dt, A, Bm, Cm, Tensor()}, {y, hT, hc}, {}};
    dispatch(Op::SelectiveScan, t, f);
  };
  auto bwd = [&] {
    KernelArgs b{Op::SelectiveScanBackward, {dy, Tensor(), u, dt, A, Bm, Cm, hc}, {du, ddt, dA, dB, dC, dh0}, {}};
    dispatch(Op::SelectiveScanBackward, t, b);
  };
  Times r;
  r.fwd = median_ms(opt.warmup, opt.iters, fwd);
  r.fb = median_ms(opt.warmup, opt.iters, [&] {
    fwd();
    bwd();
  });
  return r;
}

// The fused op against the composed chunked form it replaced (layers/ssm_scan.h selective_scan_chunked,
// autograd ops) at one small shape, both through the front-ends with autograd: forward, then backward
// of sum(y r) + sum(hT r'). f32; the composed form's memory grows as B T chunk D N, so the shape stays
// small (2048 tokens, chunk 16).
void compare_composed(const Options& opt) {
  const Device gpu = Device::cuda(0);
  const int64_t B = 2, T = 1024, D = opt.channels, N = opt.d_state, chunk = 16;
  Generator gen(7);
  auto leaf = [&](Tensor x) { return x.to(gpu).detach().set_requires_grad(true); };
  Tensor u = leaf(Tensor::randn({B, T, D}, gen, DType::F32));
  Tensor dt = leaf(exp(Tensor::uniform({B, T, D}, gen, std::log(1e-3), std::log(1e-1), DType::F32)));
  std::vector<double> a(size_t(D * N));
  for (int64_t i = 0; i < D * N; ++i) a[size_t(i)] = -double(i % N + 1);
  Tensor A = leaf(Tensor::from_vector(a, {D, N}, DType::F32));
  Tensor Bm = leaf(Tensor::randn({B, T, N}, gen, DType::F32)), Cm = leaf(Tensor::randn({B, T, N}, gen, DType::F32));
  const Tensor ry = Tensor::randn({B, T, D}, gen, DType::F32).to(gpu);
  const Tensor rh = Tensor::randn({B, D, N}, gen, DType::F32).to(gpu);
  auto step = [&](bool fused, bool backward) {
    Tensor hT;
    Tensor y = fused ? selective_scan(u, dt, A, Bm, Cm, Tensor(), &hT)
                     : selective_scan_chunked(u, dt, A, Bm, Cm, chunk, Tensor(), &hT);
    if (backward) (sum(y * ry) + sum(hT * rh)).backward();
  };
  const int it = std::max(3, opt.iters / 4);
  const double cf = median_ms(1, it, [&] { step(false, false); }), cfb = median_ms(1, it, [&] { step(false, true); });
  const double ff = median_ms(1, it, [&] { step(true, false); }), ffb = median_ms(1, it, [&] { step(true, true); });
  std::printf("\nf32 with autograd, B=%lld T=%lld D=%lld N=%lld: composed (chunk %lld) fwd %.3f ms, f+b %.3f ms; "
              "fused fwd %.3f ms, f+b %.3f ms; composed / fused: fwd %.1fx, f+b %.1fx\n",
              (long long)B, (long long)T, (long long)D, (long long)N, (long long)chunk, cf, cfb, ff, ffb, cf / ff,
              cfb / ffb);
}

int run(const Options& opt) {
  if (!device_type_available(DeviceType::CUDA)) {
    std::fprintf(stderr, "coil_scan_bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  COIL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  std::printf("Mamba-1 selective scan, D=%lld N=%lld, %lld tokens per call, median of %d after %d warm-up\n",
              (long long)opt.channels, (long long)opt.d_state, (long long)opt.tokens, opt.iters, opt.warmup);
  Generator gen(2026);
  const Device gpu = Device::cuda(0);
  const int64_t D = opt.channels, N = opt.d_state;
  auto draw = [&](int64_t n) { return Tensor::randn({n}, gen, DType::F32).to(gpu); };
  const Tensor u32 = draw(opt.tokens * D), dy32 = draw(opt.tokens * D), bc32 = draw(2 * opt.tokens * N);
  // dt ~ exp U[log 1e-3, log 1e-1] (mamba_ssm's init), A = -(1..N) per channel (S4D-real).
  const Tensor dt = exp(Tensor::uniform({opt.tokens * D}, gen, std::log(1e-3), std::log(1e-1), DType::F32)).to(gpu);
  std::vector<double> a(size_t(D * N));
  for (int64_t i = 0; i < D * N; ++i) a[size_t(i)] = -double(i % N + 1);
  const Tensor A = Tensor::from_vector(a, {D, N}, DType::F32).to(gpu);
  const Data bf = make_data(opt, DType::BF16, u32, bc32, dy32, dt, A);
  const Data fp = make_data(opt, DType::F32, u32, bc32, dy32, dt, A);
  std::printf("%6s %3s | %9s %9s %7s | %9s %9s | %9s %9s %7s\n", "T", "B", "bf16 fwd", "bf16 f+b", "GB/s",
              "seq fwd", "seq f+b", "f32 fwd", "f32 f+b", "GB/s");
  for (int64_t T : opt.lengths) {
    COIL_CHECK(T > 0 && opt.tokens % T == 0, "--lengths: ", T, " does not divide ", opt.tokens);
    const int64_t B = opt.tokens / T;
    const Times h = time_scan(opt, DType::BF16, bf, B, T);
    const cuda::ScanMode prev = cuda::selective_scan_mode(cuda::ScanMode::kSequential);
    const Times hs = time_scan(opt, DType::BF16, bf, B, T);
    cuda::selective_scan_mode(prev);
    const Times f = time_scan(opt, DType::F32, fp, B, T);
    // u, y (storage type), dt (fp32), B, C (storage type) per token.
    auto gbs = [&](double elem, double ms) {
      const double bytes = double(B * T) * (double(opt.channels) * (2 * elem + 4) + 2.0 * double(opt.d_state) * elem);
      return bytes / (ms * 1e-3) / 1e9;
    };
    std::printf("%6lld %3lld | %9.3f %9.3f %7.0f | %9.3f %9.3f | %9.3f %9.3f %7.0f\n", (long long)T, (long long)B,
                h.fwd, h.fb, gbs(2, h.fwd), hs.fwd, hs.fb, f.fwd, f.fb, gbs(4, f.fwd));
    std::fflush(stdout);
  }
  compare_composed(opt);
  return 0;
}

int body(int argc, char** argv) { return run(parse(argc, argv)); }

}  // namespace

int main(int argc, char** argv) { return coil::bench::guarded_main("coil_scan_bench", argc, argv, body); }
