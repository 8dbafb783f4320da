// The CUDA backend: the caching allocator (statistics, reuse without cudaMalloc, peak, the
// out-of-memory retry), host <-> device copies of every dtype, and every CUDA kernel against the CPU
// op on random inputs (bf16 against the CPU's f32 op on the same bf16 values, rounded to bf16).
// Every test that needs a GPU skips itself when coil::device_type_available(CUDA) is false.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "tests/cuda/cuda_test_util.h"
#if COIL_HAVE_CUDA
#include "kernels/cuda/caching_allocator.h"
#endif

namespace coil {
namespace {

#if !COIL_HAVE_CUDA
// Built without the CUDA backend (COIL_CUDA=OFF): CUDA is not available, and the one test says so.
TEST(CudaBackend, NotBuilt) {
  REQUIRE_CUDA();
  FAIL() << "CUDA reported available in a build without the CUDA backend";
}
#else

constexpr DType kFloatTypes[] = {DType::F32, DType::F64, DType::BF16};
constexpr DType kAllTypes[] = {DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64};

Tensor on_gpu(const Tensor& t) { return t.to(Device::cuda()); }
Tensor on_cpu(const Tensor& t) { return t.to(Device::cpu()); }

cuda::CachingAllocator& cache() { return cuda::caching_allocator(); }
MemoryStats gpu_stats() { return allocator_for(DeviceType::CUDA).stats(0); }

// |got - want| <= atol + rtol |want| elementwise (NaN matches NaN); reports the first few failures.
void expect_close(const Tensor& got_t, const Tensor& want_t, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got_t.shape(), want_t.shape()) << what;
  const std::vector<double> got = got_t.to_vector(), want = want_t.to_vector();
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = (std::isnan(got[i]) && std::isnan(want[i])) ||
                    std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]);
    if (!ok && bad++ < 5) first << "\n  [" << i << "] got " << got[i] << ", want " << want[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ" << first.str();
}

void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  expect_close(got, want, 0.0, 0.0, what);
}

// Tolerances of a CUDA result against the CPU op: f64 and f32 differ only by the CPU's fp64
// intermediate (libm vs CUDA math, a few ulp); bf16 by at most one bf16 ulp (2^-8 relative) from
// rounding an fp32 result instead of an fp64 one.
struct Tol {
  double atol, rtol;
};
Tol tol_for(DType t) {
  switch (t) {
    case DType::F64: return {1e-13, 1e-12};
    case DType::F32: return {1e-6, 1e-5};
    default: return {1e-6, 8e-3};
  }
}

// The CPU answer for a CUDA op run in dtype t: the same op on CPU, in f32 for bf16 (the CPU has
// no bf16 arithmetic kernels), rounded to bf16.
Tensor cpu_reference(const std::function<Tensor(const std::vector<Tensor>&)>& op,
                     const std::vector<Tensor>& cpu_inputs, DType t) {
  if (t != DType::BF16) return op(cpu_inputs);
  std::vector<Tensor> widened;
  for (const Tensor& x : cpu_inputs) widened.push_back(x.to(DType::F32));
  return op(widened).to(DType::BF16);
}

// --- backend installation (runs everywhere, GPU or not) --------------------------------------------

TEST(CudaBackend, IsInstalledAndCountsDevicesWithoutThrowing) {
  // device_count() must answer 0, not throw, on a machine without a driver or GPU.
  int n = -1;
  EXPECT_NO_THROW(n = hooks_for(DeviceType::CUDA).device_count());
  EXPECT_GE(n, 0);
  EXPECT_EQ(device_type_available(DeviceType::CUDA), n > 0);
  EXPECT_NO_THROW(allocator_for(DeviceType::CUDA));
  for (Op op : {Op::Fill, Op::Copy, Op::Exp, Op::Add, Op::SumSquares, Op::ReluBackward})
    for (DType t : kFloatTypes) EXPECT_TRUE(supports(Backend::CUDA, op, t)) << op_name(op) << " " << t;
  EXPECT_TRUE(supports(Backend::CUDA, Op::AdamW, DType::F32));
  EXPECT_TRUE(supports(Backend::CUDA, Op::Copy, DType::I64));
  EXPECT_EQ(cuda::CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(cuda::CachingAllocator::round_size(3 << 20), size_t(4) << 20);
}

// --- caching allocator ------------------------------------------------------------------------------

TEST(CudaAllocator, StatsRiseAndFall) {
  REQUIRE_CUDA();
  allocator_for(DeviceType::CUDA).empty_cache();  // no cached block may serve the request below
  const MemoryStats before = gpu_stats();
  {
    Tensor a = Tensor::empty({1000}, DType::F32, Device::cuda());  // 4000 B -> one 4096 B block
    MemoryStats s = gpu_stats();
    EXPECT_EQ(s.current_bytes, before.current_bytes + 4096);
    EXPECT_GE(s.peak_bytes, s.current_bytes);
    EXPECT_GE(s.reserved_bytes, s.current_bytes);
    EXPECT_EQ(s.num_allocs, before.num_allocs + 1);
  }
  const MemoryStats after = gpu_stats();
  EXPECT_EQ(after.current_bytes, before.current_bytes);
  EXPECT_GE(after.reserved_bytes, after.current_bytes + 4096);  // the block stays cached
}

TEST(CudaAllocator, FreedBlocksAreReusedWithoutCudaMalloc) {
  REQUIRE_CUDA();
  allocator_for(DeviceType::CUDA).empty_cache();
  const Shape shape = {3 << 18};  // 3 MiB of f32: a large (2 MiB-rounded) block
  void* first = nullptr;
  {
    Tensor a = Tensor::empty(shape, DType::F32, Device::cuda());
    first = a.data_ptr();
  }
  const cuda::CacheCounters c0 = cache().counters(0);
  {
    Tensor b = Tensor::empty(shape, DType::F32, Device::cuda());
    EXPECT_EQ(b.data_ptr(), first) << "the cached block should be handed out again";
    const cuda::CacheCounters c1 = cache().counters(0);
    EXPECT_EQ(c1.device_mallocs, c0.device_mallocs) << "a cache hit must not call cudaMalloc";
    EXPECT_EQ(c1.cache_hits, c0.cache_hits + 1);
    // A block far larger than the request is not used for it (at most a quarter may be wasted).
    Tensor small = Tensor::empty({1 << 10}, DType::F32, Device::cuda());
    EXPECT_NE(small.data_ptr(), first);
  }
  // empty_cache() gives cached blocks back to the driver.
  allocator_for(DeviceType::CUDA).empty_cache();
  const cuda::CacheCounters c2 = cache().counters(0);
  EXPECT_EQ(c2.cached_bytes, 0);
  EXPECT_GT(c2.device_frees, c0.device_frees);
  EXPECT_EQ(gpu_stats().reserved_bytes, gpu_stats().current_bytes);
  Tensor again = Tensor::empty(shape, DType::F32, Device::cuda());
  EXPECT_EQ(cache().counters(0).device_mallocs, c2.device_mallocs + 1);
}

TEST(CudaAllocator, TracksPeak) {
  REQUIRE_CUDA();
  Allocator& alloc = allocator_for(DeviceType::CUDA);
  alloc.empty_cache();  // every block below is a fresh cudaMalloc of exactly its rounded size
  alloc.reset_peak(0);
  const int64_t base = gpu_stats().current_bytes;
  EXPECT_EQ(gpu_stats().peak_bytes, base);
  {
    Tensor a = Tensor::empty({2 << 20}, DType::F32, Device::cuda());  // 8 MiB
    Tensor b = Tensor::empty({2 << 20}, DType::F32, Device::cuda());  // 8 MiB
  }
  { Tensor c = Tensor::empty({1 << 20}, DType::F32, Device::cuda()); }  // 4 MiB, after both are gone
  MemoryStats s = gpu_stats();
  EXPECT_EQ(s.current_bytes, base);
  EXPECT_EQ(s.peak_bytes, base + (int64_t(16) << 20));
  alloc.reset_peak(0);
  EXPECT_EQ(gpu_stats().peak_bytes, base);
}

TEST(CudaAllocator, OutOfMemoryFlushesTheCacheRetriesAndReports) {
  REQUIRE_CUDA();
  { Tensor warm = Tensor::empty({1 << 20}, DType::F32, Device::cuda()); }  // leaves a cached block
  ASSERT_GT(cache().counters(0).cached_bytes, 0);
  const cuda::CacheCounters c0 = cache().counters(0);
  const size_t absurd = size_t(1) << 50;  // 1 PiB
  Allocator& alloc = allocator_for(DeviceType::CUDA);
  try {
    alloc.allocate(absurd, 0);
    FAIL() << "allocating 1 PiB should fail";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(absurd)), std::string::npos) << msg;
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("reserved"), std::string::npos) << msg;
    EXPECT_NE(msg.find("peak"), std::string::npos) << msg;
  }
  const cuda::CacheCounters c1 = cache().counters(0);
  EXPECT_EQ(c1.oom_retries, c0.oom_retries + 1);
  EXPECT_EQ(c1.cached_bytes, 0) << "the cache is flushed before the retry";
  // The failure left no error behind: allocation and kernels still work.
  Tensor t = Tensor::full({1000}, 2.5, DType::F32, Device::cuda());
  EXPECT_EQ(sum_squares(t).item(), 1000 * 6.25);
  EXPECT_THROW(Tensor::empty({int64_t(1) << 48}, DType::F32, Device::cuda()), Error);
}

TEST(CudaAllocator, ZeroBytesAndAlignment) {
  REQUIRE_CUDA();
  Allocator& alloc = allocator_for(DeviceType::CUDA);
  EXPECT_EQ(alloc.allocate(0, 0), nullptr);
  for (size_t n : {size_t(1), size_t(100), size_t(513), size_t(5) << 20}) {
    void* p = alloc.allocate(n, 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
    alloc.deallocate(p, n, 0);
  }
  Tensor e = Tensor::empty({0, 3}, DType::F32, Device::cuda());
  EXPECT_EQ(on_cpu(e).numel(), 0);
  EXPECT_THROW(alloc.allocate(16, 63), Error);  // no such device
}

// --- copies -----------------------------------------------------------------------------------------

// Values every dtype holds exactly: integers and halves in [-100, 100].
Tensor exact_values(const Shape& shape, DType t, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& x : v) x = std::floor(gen.next_uniform() * 400.0 - 200.0) / (is_floating(t) ? 2.0 : 1.0);
  return Tensor::from_vector(v, shape, t);
}

TEST(CudaCopy, HostDeviceRoundTripOfEveryDtype) {
  REQUIRE_CUDA();
  for (DType t : kAllTypes) {
    Tensor x = exact_values({3, 257}, t, 1);
    Tensor g = on_gpu(x);
    EXPECT_TRUE(g.device().is_cuda());
    EXPECT_EQ(g.dtype(), t);
    expect_equal(on_cpu(g), x, std::string("round trip ") + dtype_name(t));
    expect_equal(on_cpu(g.clone()), x, std::string("device clone ") + dtype_name(t));
    // a non-contiguous host view goes through contiguous() first
    expect_equal(on_cpu(on_gpu(x.t())), x.t().contiguous(), std::string("transposed ") + dtype_name(t));
  }
  // random normals survive bit for bit
  Generator gen(2);
  for (DType t : kFloatTypes) {
    Tensor x = Tensor::randn({1001}, gen, t);
    expect_equal(on_cpu(on_gpu(x)), x, std::string("randn round trip ") + dtype_name(t));
  }
}

TEST(CudaCopy, CastsMatchTheCpuBitForBit) {
  REQUIRE_CUDA();
  Generator gen(3);
  for (DType from : kAllTypes) {
    // Fractional values in [-300, 300) exercise truncation toward zero and bf16 rounding.
    Tensor src = is_floating(from) ? Tensor::uniform({4099}, gen, -300.0, 300.0, from)
                                   : exact_values({4099}, from, 4);
    for (DType to : kAllTypes) {
      const std::string what = std::string("cast ") + dtype_name(from) + " -> " + dtype_name(to);
      expect_equal(on_cpu(on_gpu(src).to(to)), src.to(to), what);
    }
  }
}

TEST(CudaCopy, StridedSourcesAndDestinationsMatchTheCpu) {
  REQUIRE_CUDA();
  Generator gen(5);
  for (DType t : kAllTypes) {
    const std::string dt = dtype_name(t);
    Tensor x = exact_values({4, 5, 6, 7}, t, 6);
    Tensor gx = on_gpu(x);
    expect_equal(on_cpu(gx.permute({3, 1, 0, 2}).contiguous()), x.permute({3, 1, 0, 2}).contiguous(),
                 "permute " + dt);
    expect_equal(on_cpu(gx.narrow(2, 1, 4).contiguous()), x.narrow(2, 1, 4).contiguous(), "narrow " + dt);
    expect_equal(on_cpu(gx.narrow(3, 0, 1).expand({4, 5, 6, 9}).contiguous()),
                 x.narrow(3, 0, 1).expand({4, 5, 6, 9}).contiguous(), "expand " + dt);
    // Strided destinations, with a cast from f32.
    Tensor src = Tensor::uniform({6, 4}, gen, -50.0, 50.0, DType::F32);
    Tensor cpu_dst = Tensor::zeros({4, 10}, t), gpu_dst = Tensor::zeros({4, 10}, t, Device::cuda());
    cpu_dst.narrow(1, 2, 6).t().copy_(src);
    gpu_dst.narrow(1, 2, 6).t().copy_(on_gpu(src));
    expect_equal(on_cpu(gpu_dst), cpu_dst, "strided destination " + dt);
  }
  // Eight dims that cannot be merged (reversed order) still work; nine do not.
  Tensor x8 = exact_values({2, 3, 2, 3, 2, 3, 2, 3}, DType::F32, 7);
  const std::vector<int64_t> rev8 = {7, 6, 5, 4, 3, 2, 1, 0};
  expect_equal(on_cpu(on_gpu(x8).permute(rev8).contiguous()), x8.permute(rev8).contiguous(), "8-d permute");
  Tensor x9 = Tensor::zeros({2, 3, 2, 3, 2, 3, 2, 3, 2}, DType::F32, Device::cuda());
  EXPECT_THROW(x9.permute({8, 7, 6, 5, 4, 3, 2, 1, 0}).contiguous(), Error);
}

TEST(CudaFill, EveryDtypeContiguousAndStrided) {
  REQUIRE_CUDA();
  for (DType t : kAllTypes) {
    for (double value : {0.0, 2.75, -3.5, 1.00390625 /* a bf16 rounding tie */}) {
      const std::string what = std::string("fill ") + dtype_name(t) + " " + std::to_string(value);
      expect_equal(on_cpu(Tensor::full({3, 333}, value, t, Device::cuda())), Tensor::full({3, 333}, value, t),
                   what);
      Tensor cpu_x = exact_values({8, 9}, t, 8);
      Tensor gpu_x = on_gpu(cpu_x);
      cpu_x.narrow(1, 3, 4).t().fill_(value);
      gpu_x.narrow(1, 3, 4).t().fill_(value);
      expect_equal(on_cpu(gpu_x), cpu_x, what + " strided");
    }
  }
}

// --- elementwise ------------------------------------------------------------------------------------

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<Tensor(Generator&, DType)> input;
};

// 4099 elements: not a multiple of the block size.
constexpr int64_t kN = 4099;

Tensor normal_with_extremes(Generator& gen, DType t, double stddev) {
  std::vector<double> v = Tensor::randn({kN - 12}, gen, DType::F64, Device::cpu(), 0.0, stddev).to_vector();
  for (double e : {-100.0, -30.0, -20.5, -1e-3, 0.0, 1e-3, 19.9, 20.0, 20.1, 30.0, 87.0, 100.0}) v.push_back(e);
  return Tensor::from_vector(v, {kN}, t);
}

std::vector<UnaryCase> unary_cases() {
  auto normal = [](double s) {
    return [s](Generator& g, DType t) { return Tensor::randn({kN}, g, t, Device::cpu(), 0.0, s); };
  };
  auto extremes = [](double s) { return [s](Generator& g, DType t) { return normal_with_extremes(g, t, s); }; };
  return {
      {"exp", [](const Tensor& x) { return exp(x); }, normal(4.0)},
      {"log", [](const Tensor& x) { return log(x); },
       [](Generator& g, DType t) { return Tensor::uniform({kN}, g, 1e-3, 100.0, t); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }, extremes(10.0)},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, extremes(10.0)},
      {"silu", [](const Tensor& x) { return silu(x); }, extremes(10.0)},
      {"relu", [](const Tensor& x) { return relu(x); }, extremes(1.0)},
      {"square", [](const Tensor& x) { return square(x); }, normal(10.0)},
      {"scale", [](const Tensor& x) { return scale(x, -1.7, 0.3); }, normal(10.0)},
  };
}

TEST(CudaOps, UnaryOpsMatchTheCpu) {
  REQUIRE_CUDA();
  Generator gen(10);
  for (const UnaryCase& c : unary_cases()) {
    for (DType t : kFloatTypes) {
      Tensor x = c.input(gen, t);
      Tensor got = on_cpu(c.op(on_gpu(x)));
      Tensor want = cpu_reference([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x}, t);
      const Tol tol = tol_for(t);
      expect_close(got, want, tol.atol, tol.rtol, std::string(c.name) + " " + dtype_name(t));
    }
  }
  // a non-contiguous input is made contiguous on the GPU first
  Tensor x = Tensor::randn({33, 65}, gen, DType::F32);
  expect_close(on_cpu(exp(on_gpu(x).t())), exp(x.t()), 1e-6, 1e-5, "exp of a transposed view");
}

TEST(CudaOps, ReluBackwardPassesGradientWhereXIsPositive) {
  REQUIRE_CUDA();
  Generator gen(11);
  for (DType t : kFloatTypes) {
    // Exact zeros in x get no gradient (x > 0 is false).
    std::vector<double> xv = Tensor::randn({kN}, gen, t).to_vector();
    for (size_t i = 0; i < xv.size(); i += 7) xv[i] = 0.0;
    Tensor x = on_gpu(Tensor::from_vector(xv, {kN}, t)).set_requires_grad(true);
    Tensor dy = Tensor::randn({kN}, gen, t);
    relu(x).backward(on_gpu(dy));
    ASSERT_TRUE(x.grad().defined());
    const std::vector<double> dyv = dy.to_vector();
    std::vector<double> want(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) want[i] = xv[i] > 0.0 ? dyv[i] : 0.0;
    expect_equal(on_cpu(x.grad()), Tensor::from_vector(want, {kN}, t),
                 std::string("relu_backward ") + dtype_name(t));
  }
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
};

TEST(CudaOps, BinaryOpsMatchTheCpuWithBroadcastAndStrides) {
  REQUIRE_CUDA();
  const std::vector<BinaryCase> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
  };
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{37, 53}, {37, 53}}, {{37, 53}, {53}}, {{37, 1}, {1, 53}}, {{4, 1, 5}, {3, 1}},
      {{}, {7, 9}},         {{kN}, {kN}},     {{2, 3, 4, 5, 6}, {3, 1, 5, 1}},
  };
  Generator gen(12);
  // Denominators keep |b| in [0.5, 2) so div stays well conditioned.
  auto draw_b = [&](const Shape& s, DType t) {
    std::vector<double> v = Tensor::uniform(s, gen, 0.5, 2.0, DType::F64).to_vector();
    for (size_t i = 0; i < v.size(); i += 2) v[i] = -v[i];
    return Tensor::from_vector(v, s, t);
  };
  for (const BinaryCase& c : ops) {
    for (DType t : kFloatTypes) {
      const Tol tol = tol_for(t);
      for (const auto& [sa, sb] : shapes) {
        Tensor a = Tensor::randn(sa, gen, t, Device::cpu(), 0.0, 3.0);
        Tensor b = draw_b(sb, t);
        Tensor got = on_cpu(c.op(on_gpu(a), on_gpu(b)));
        Tensor want = cpu_reference([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); }, {a, b}, t);
        expect_close(got, want, tol.atol, tol.rtol,
                     std::string(c.name) + " " + dtype_name(t) + " " + shape_str(sa) + " " + shape_str(sb));
      }
      // Non-contiguous operands: a transposed, b every other element of its rows (stride 2).
      auto strided = [](const Tensor& a, const Tensor& b) {
        return std::pair{a.t(), b.narrow(2, 0, 1).squeeze(2)};  // (31, 29) strides (1, 31), (58, 2)
      };
      Tensor a = Tensor::randn({29, 31}, gen, t);
      Tensor b = draw_b({31, 29, 2}, t);
      auto [ga, gb] = strided(on_gpu(a), on_gpu(b));
      Tensor got = on_cpu(c.op(ga, gb));
      Tensor want = cpu_reference(
          [&](const std::vector<Tensor>& in) {
            auto [va, vb] = strided(in[0], in[1]);
            return c.op(va, vb);
          },
          {a, b}, t);
      expect_close(got, want, tol.atol, tol.rtol, std::string(c.name) + " " + dtype_name(t) + " strided");
    }
  }
}

// --- reductions and the optimizer ----------------------------------------------------------------

TEST(CudaOps, SumSquaresMatchesTheCpuAndIsDeterministic) {
  REQUIRE_CUDA();
  Generator gen(13);
  // 17M elements: more than kMaxPartials * block elements (4096 * 4096), so threads loop.
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(1000), kN, int64_t(1) << 20, int64_t(17) << 20}) {
    for (DType t : kFloatTypes) {
      if (n > (int64_t(1) << 20) && t != DType::F32) continue;  // one large case is enough
      Tensor x = Tensor::uniform({n}, gen, -2.0, 2.0, t);
      Tensor gx = on_gpu(x);
      Tensor got = sum_squares(gx);
      EXPECT_EQ(got.dtype(), t == DType::F64 ? DType::F64 : DType::F32);
      EXPECT_EQ(got.dim(), 0);
      // Reference: f64 on the CPU over the same (rounded) values.
      const double want = sum_squares(x.to(DType::F64)).item();
      const double rtol = t == DType::F64 ? 1e-12 : 1e-5;
      EXPECT_NEAR(got.item(), want, rtol * want + 1e-30)
          << "sum_squares " << dtype_name(t) << " n=" << n;
      EXPECT_EQ(sum_squares(gx).item(), got.item()) << "not deterministic: " << dtype_name(t) << " n=" << n;
    }
  }
}

TEST(CudaOps, AdamWMatchesTheCpu) {
  REQUIRE_CUDA();
  Generator gen(14);
  for (DType t : {DType::F32, DType::F64}) {
    const Shape s = {kN};
    Tensor p = Tensor::randn(s, gen, t), m = Tensor::randn(s, gen, t, Device::cpu(), 0.0, 0.1);
    Tensor v = Tensor::uniform(s, gen, 0.0, 0.01, t);
    Tensor gp = on_gpu(p), gm = on_gpu(m), gv = on_gpu(v);
    AdamWParams hp;
    hp.lr = 3e-3;
    hp.weight_decay = 0.1;
    hp.eps = 1e-8;
    for (int64_t step = 1; step <= 3; ++step) {
      hp.step = step;
      Tensor g = Tensor::randn(s, gen, t);
      adamw_step(p, g, m, v, hp);
      adamw_step(gp, on_gpu(g), gm, gv, hp);
    }
    const Tol tol = t == DType::F64 ? Tol{1e-13, 1e-12} : Tol{1e-6, 1e-5};
    const std::string dt = dtype_name(t);
    expect_close(on_cpu(gp), p, tol.atol, tol.rtol, "adamw param " + dt);
    expect_close(on_cpu(gm), m, tol.atol, tol.rtol, "adamw m " + dt);
    expect_close(on_cpu(gv), v, tol.atol, tol.rtol, "adamw v " + dt);
  }
}

#endif  // COIL_HAVE_CUDA

}  // namespace
}  // namespace coil
