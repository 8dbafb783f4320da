// The CUDA op kernels (GEMMs, reductions, model ops) against the CPU, forward and backward: each case
// runs op front-ends on CUDA tensors, backpropagates a fixed random upstream gradient, and compares
// every output and every input gradient with the same graph run by the CPU.
//   f64   GPU f64 against CPU f64: |err| <= 1e-11 max(1, max|ref|) + 1e-10 |ref|.
//   f32   GPU f32 against CPU f64 on the same f32 inputs: |err| <= 2e-5 max(1, max|ref|) + 1e-4 |ref|.
//   bf16  GPU bf16 against CPU f64 on the same bf16 inputs ("ref"), measured against the error of the
//         naive answer: the CPU graph in f32, its results rounded to the GPU output's dtype. Both the
//         largest error and the L2 error may be at most `bf16_factor` (2 unless a case documents why
//         not) times the naive one, plus a floor (1e-6 of the scale for bf16 results, 1e-5 for f32
//         results such as the loss, which the naive run rounds only to f32).
// Every test skips itself without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"
#include "tests/cuda/cuda_test_util.h"
#if COIL_HAVE_CUDA
#include "kernels/cuda/gemm.h"
#endif

namespace coil {
namespace {

using Tensors = std::vector<Tensor>;
using OpFn = std::function<Tensors(const Tensors&)>;

// --- inputs (CPU masters: f64 values, or i32 ids) --------------------------------------------------------
uint64_t g_seed = 1000;
Tensor randn(const Shape& s, double stddev = 1.0, double mean = 0.0) {
  Generator gen(++g_seed);
  return Tensor::randn(s, gen, DType::F64, Device::cpu(), mean, stddev);
}
Tensor ids(const Shape& s, int64_t n) {
  Generator gen(++g_seed);
  std::vector<int64_t> v(size_t(shape_numel(s)));
  for (auto& x : v) x = int64_t(gen.next_uniform() * double(n));
  return Tensor::from_ints(v, s, DType::I32);
}
Tensor ints(const Shape& s, const std::vector<int64_t>& v) { return Tensor::from_ints(v, s, DType::I32); }

struct OpTest {
  std::string name;
  Tensors inputs;  // CPU masters
  OpFn fn;
  bool backward = true;
  double bf16_factor = 2.0;
};

// Outputs and input gradients of one run, as f64 CPU tensors (undefined: no gradient reached it).
struct Run {
  Tensors outs, grads;
};

// Runs c.fn on the masters converted to dtype t (ids stay i32) on `dev`; when backward, every output
// gets the upstream gradient randn(seed) rounded to `r_dtype` (so all runs of a case see the same one).
Run execute(const OpTest& c, const Tensors& masters, DType t, Device dev, bool with_grad, DType r_dtype) {
  Tensors xs;
  for (const Tensor& m : masters) {
    // detach(): a fresh leaf even where to() hands back the master itself.
    Tensor x = (is_floating(m.dtype()) ? m.to(t).to(dev) : m.to(dev)).detach();
    if (with_grad && is_floating(m.dtype())) x.set_requires_grad(true);
    xs.push_back(x);
  }
  Tensors outs = c.fn(xs);
  Run r;
  if (with_grad) {
    Generator gen(77);
    Tensors roots, grads;
    for (const Tensor& o : outs) {
      Tensor R = Tensor::randn(o.shape(), gen, DType::F64).to(r_dtype).to(o.dtype()).to(dev);
      if (o.requires_grad()) roots.push_back(o), grads.push_back(R);
    }
    backward(roots, grads);
  }
  for (const Tensor& o : outs) r.outs.push_back(o.detach().to(Device::cpu()).to(DType::F64));
  if (with_grad)
    for (const Tensor& x : xs)
      r.grads.push_back(is_floating(x.dtype()) && x.grad().defined() ? x.grad().to(Device::cpu()).to(DType::F64)
                                                                      : Tensor());
  return r;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// One output or gradient. `naive` is used for bf16 only.
void compare(const std::string& what, DType t, DType out_dtype, const Tensor& got_t, const Tensor& ref_t,
             const Tensor& naive_t, double bf16_factor) {
  ASSERT_EQ(got_t.defined(), ref_t.defined()) << what << ": gradient defined on one side only";
  if (!got_t.defined()) return;
  ASSERT_EQ(got_t.shape(), ref_t.shape()) << what;
  const std::vector<double> got = got_t.to_vector(), ref = ref_t.to_vector();
  const double scale = std::max(1.0, max_abs(ref));
  if (t != DType::BF16) {
    const double atol = (t == DType::F64 ? 1e-11 : 2e-5) * scale, rtol = t == DType::F64 ? 1e-10 : 1e-4;
    int64_t bad = 0;
    std::ostringstream first;
    for (size_t i = 0; i < got.size(); ++i) {
      const double err = std::fabs(got[i] - ref[i]);
      if (!(err <= atol + rtol * std::fabs(ref[i])) && bad++ < 5)
        first << "\n  [" << i << "] got " << got[i] << ", want " << ref[i];
    }
    EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ" << first.str();
    return;
  }
  const std::vector<double> naive = naive_t.to(out_dtype).to(DType::F64).to_vector();
  double e_max = 0, n_max = 0, e_l2 = 0, n_l2 = 0, r_l2 = 0;
  size_t worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(got[i] - ref[i]), n = std::fabs(naive[i] - ref[i]);
    if (!(e <= e_max)) e_max = e, worst = i;  // NaN becomes the worst
    n_max = std::max(n_max, n);
    e_l2 += e * e, n_l2 += n * n, r_l2 += ref[i] * ref[i];
  }
  const double floor = out_dtype == DType::BF16 ? 1e-6 : 1e-5;
  EXPECT_LE(e_max, bf16_factor * n_max + floor * scale)
      << what << ": largest error " << e_max << " at [" << worst << "] (got " << got[worst] << ", ref "
      << ref[worst] << "); the naive bf16 answer's largest error is " << n_max;
  EXPECT_LE(std::sqrt(e_l2), bf16_factor * std::sqrt(n_l2) + floor * std::sqrt(r_l2) + 1e-300)
      << what << ": L2 error " << std::sqrt(e_l2) << ", naive " << std::sqrt(n_l2);
}

void check_op(const OpTest& c, std::vector<DType> dtypes = {DType::F32, DType::F64, DType::BF16}) {
  for (DType t : dtypes) {
    SCOPED_TRACE(c.name + " " + dtype_name(t));
    Tensors masters;  // rounded to t, held in f64
    for (const Tensor& m : c.inputs) masters.push_back(is_floating(m.dtype()) ? m.to(t).to(DType::F64) : m);
    const Run gpu = execute(c, masters, t, Device::cuda(), c.backward, t);
    const Run ref = execute(c, masters, DType::F64, Device::cpu(), c.backward, t);
    Run naive;
    std::vector<DType> out_dtypes;
    if (t == DType::BF16) naive = execute(c, masters, DType::F32, Device::cpu(), c.backward, t);
    {
      // Output dtypes of the GPU run (bf16, or f32 for statistics).
      NoGradGuard ng;
      Tensors xs;
      for (const Tensor& m : masters) xs.push_back(is_floating(m.dtype()) ? m.to(t).to(Device::cuda()) : m.to(Device::cuda()));
      for (const Tensor& o : c.fn(xs)) out_dtypes.push_back(o.dtype());
    }
    ASSERT_EQ(gpu.outs.size(), ref.outs.size());
    for (size_t k = 0; k < gpu.outs.size(); ++k)
      compare("output " + std::to_string(k), t, out_dtypes[k], gpu.outs[k], ref.outs[k],
              t == DType::BF16 ? naive.outs[k] : Tensor(), c.bf16_factor);
    for (size_t i = 0; i < gpu.grads.size(); ++i)
      compare("grad of input " + std::to_string(i), t, t, gpu.grads[i], ref.grads[i],
              t == DType::BF16 ? naive.grads[i] : Tensor(), c.bf16_factor);
  }
}

// Bitwise equality of two runs of the same computation (determinism).
void expect_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  const std::vector<double> va = a.to(Device::cpu()).to(DType::F64).to_vector();
  const std::vector<double> vb = b.to(Device::cpu()).to(DType::F64).to_vector();
  ASSERT_EQ(va.size(), vb.size()) << what;
  for (size_t i = 0; i < va.size(); ++i)
    if (!(va[i] == vb[i] || (std::isnan(va[i]) && std::isnan(vb[i])))) {
      ADD_FAILURE() << what << ": not deterministic at [" << i << "]: " << va[i] << " vs " << vb[i];
      return;
    }
}

// --- GEMMs -------------------------------------------------------------------------------------------------
TEST(CudaGemm, MatmulForwardAndBackwardMatchTheCpu) {
  REQUIRE_CUDA();
  auto mm = [](const Tensors& x) { return Tensors{matmul(x[0], x[1])}; };
  check_op({"matmul_2d", {randn({67, 130}), randn({130, 45})}, mm});
  check_op({"matmul_batched", {randn({3, 33, 70}), randn({3, 70, 21})}, mm});
  check_op({"matmul_shared_b", {randn({4, 30, 50}), randn({50, 17})}, mm});
  // a has batch 1 (stride 0 in the batched GEMM); its gradient sums bf16-rounded per-batch products
  // over the batch (a second rounding the naive f32 graph does not have): factor 3.
  check_op({"matmul_broadcast_a", {randn({1, 20, 30}), randn({5, 30, 12})}, mm, true, 3.0});
  check_op({"matmul_broadcast_4d", {randn({2, 3, 8, 16}), randn({1, 3, 16, 8})}, mm, true, 3.0});
  // Transposed views reach the kernel as trans_a / trans_b.
  check_op({"matmul_transposed", {randn({40, 25}), randn({31, 40})},
            [](const Tensors& x) { return Tensors{matmul(x[0].t(), x[1].t())}; }});
  check_op({"matmul_k1", {randn({9, 1}), randn({1, 11})}, mm});
}

TEST(CudaGemm, LinearForwardAndBackwardMatchTheCpu) {
  REQUIRE_CUDA();
  auto lin = [](const Tensors& x) { return Tensors{x.size() == 3 ? linear(x[0], x[1], x[2]) : linear(x[0], x[1])}; };
  check_op({"linear_bias", {randn({2, 50, 96}), randn({80, 96}, 0.1), randn({80})}, lin});
  check_op({"linear_odd", {randn({37, 65}), randn({33, 65}, 0.1)}, lin});
  check_op({"linear_odd_bias", {randn({5, 7}), randn({3, 7}), randn({3})}, lin});
  check_op({"linear_large", {randn({512, 768}), randn({1024, 768}, 0.03), randn({1024})}, lin});
}

// attrs.beta = 1 accumulates (no front-end uses it yet, so the kernel is called directly).
TEST(CudaGemm, MatmulAccumulatesIntoTheOutput) {
  REQUIRE_CUDA();
  for (DType t : {DType::F32, DType::F64}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t Bt = 3, M = 17, K = 29, N = 13;
        Tensor a = randn(ta ? Shape{1, K, M} : Shape{1, M, K}).to(t);  // batch 1: broadcast
        Tensor b = randn(tb ? Shape{Bt, N, K} : Shape{Bt, K, N}).to(t);
        Tensor c = randn({Bt, M, N}).to(t);
        auto run = [&](Device d) {
          Tensor out = c.to(d).clone();
          KernelArgs k;
          k.op = Op::Matmul;
          k.in = {a.to(d), b.to(d)};
          k.out = {out};
          k.attrs.trans_a = ta, k.attrs.trans_b = tb, k.attrs.beta = 1.0;
          dispatch(Op::Matmul, t, k);
          return out.to(Device::cpu()).to(DType::F64);
        };
        compare(std::string("accumulate ") + dtype_name(t) + (ta ? " ta" : "") + (tb ? " tb" : ""), t, t,
                run(Device::cuda()), run(Device::cpu()), Tensor(), 2.0);
      }
  }
}

#if COIL_HAVE_CUDA
TEST(CudaGemm, AlignedProblemsRunThroughCublasLt) {
  REQUIRE_CUDA();
  for (DType t : {DType::BF16, DType::F32, DType::F64}) {
    const cuda::GemmCounters before = cuda::gemm_counters();
    Tensor x = randn({256, 256}).to(t).to(Device::cuda()), w = randn({256, 256}).to(t).to(Device::cuda());
    Tensor b = randn({256}).to(t).to(Device::cuda());
    (void)matmul(x, w).to(Device::cpu());
    (void)linear(x, w, b).to(Device::cpu());
    const cuda::GemmCounters after = cuda::gemm_counters();
    std::cout << "[ gemm " << dtype_name(t) << " ] cublaslt +" << after.cublaslt - before.cublaslt
              << ", bias epilogue +" << after.bias_epilogue - before.bias_epilogue << ", bias kernel +"
              << after.bias_kernel - before.bias_kernel << ", reference kernel +"
              << after.reference - before.reference << "\n";
    EXPECT_EQ(after.reference, before.reference) << dtype_name(t) << ": an aligned GEMM fell back to the reference kernel";
    EXPECT_EQ(after.cublaslt - before.cublaslt, 2) << dtype_name(t);
  }
}
#endif

// --- reductions ------------------------------------------------------------------------------------------
TEST(CudaReduce, SumMeanMaxCumsumMatchTheCpu) {
  REQUIRE_CUDA();
  Tensor x3 = randn({7, 300, 5});
  for (int64_t d = 0; d < 3; ++d) {
    check_op({"sum_dim" + std::to_string(d), {x3}, [d](const Tensors& x) { return Tensors{sum(x[0], d)}; }});
    check_op({"mean_dim" + std::to_string(d), {x3}, [d](const Tensors& x) { return Tensors{mean(x[0], d, true)}; }});
    check_op({"max_dim" + std::to_string(d), {x3}, [d](const Tensors& x) { return Tensors{max(x[0], d)}; }});
    check_op({"cumsum_dim" + std::to_string(d), {x3}, [d](const Tensors& x) { return Tensors{cumsum(x[0], d)}; }});
    check_op({"cumsum_rev_dim" + std::to_string(d), {x3},
              [d](const Tensors& x) { return Tensors{cumsum(x[0], d, true)}; }});
  }
  // Long rows (split into chunks plus a second pass) and long columns.
  check_op({"sum_long_rows", {randn({3, 40000})}, [](const Tensors& x) { return Tensors{sum(x[0], 1)}; }});
  check_op({"max_long_rows", {randn({3, 40000})}, [](const Tensors& x) { return Tensors{max(x[0], 1)}; }});
  check_op({"mean_long_cols", {randn({50000, 3})}, [](const Tensors& x) { return Tensors{mean(x[0], 0)}; }});
  check_op({"sum_all", {randn({1000, 999})}, [](const Tensors& x) { return Tensors{sum(x[0])}; }});
  check_op({"cumsum_long", {randn({4, 3000})}, [](const Tensors& x) { return Tensors{cumsum(x[0], 1)}; }});
  check_op({"cumsum_long_rev_inner", {randn({2, 2000, 3})},
            [](const Tensors& x) { return Tensors{cumsum(x[0], 1, true)}; }});
}

TEST(CudaReduce, MaxBackwardRoutesTiesToTheFirstMaximum) {
  REQUIRE_CUDA();
  // Few distinct values: many ties along every reduced dim.
  std::vector<double> v = randn({6, 50, 4}).to_vector();
  for (double& x : v) x = std::floor(x);
  Tensor x = Tensor::from_vector(v, {6, 50, 4}, DType::F64);
  for (int64_t d = 0; d < 3; ++d)
    check_op({"max_ties_dim" + std::to_string(d), {x}, [d](const Tensors& t) { return Tensors{max(t[0], d)}; }});
}

TEST(CudaReduce, ReductionsAreDeterministic) {
  REQUIRE_CUDA();
  Tensor x = randn({3, 100000}).to(DType::F32).to(Device::cuda());
  expect_same_bits(sum(x, 1), sum(x, 1), "sum rows");
  expect_same_bits(sum(x.t().contiguous(), 0), sum(x.t().contiguous(), 0), "sum cols");
  expect_same_bits(cumsum(x, 1), cumsum(x, 1), "cumsum");
}

// --- model ops ---------------------------------------------------------------------------------------------
TEST(CudaModelOps, EmbeddingMatchesTheCpu) {
  REQUIRE_CUDA();
  std::vector<int64_t> v = ids({4, 300}, 1000).to_ints();
  for (size_t i = 0; i < v.size(); i += 3) v[i] = 7;  // a hot id: a third of the positions
  v[5] = 999, v[6] = 0;
  auto emb = [](const Tensors& x) { return Tensors{embedding(x[0], x[1])}; };
  check_op({"embedding", {randn({1000, 64}), ints({4, 300}, v)}, emb});
  check_op({"embedding_small", {randn({5, 4}), ints({2, 3}, {1, 3, 1, 0, 4, 1})}, emb});
  // Deterministic backward: the same dtable bits twice.
  Tensor table = randn({1000, 64}).to(DType::F32).to(Device::cuda()).set_requires_grad(true);
  Tensor idx = ints({4, 300}, v).to(Device::cuda());
  Tensor dy = randn({4, 300, 64}).to(DType::F32).to(Device::cuda());
  embedding(table, idx).backward(dy);
  Tensor g1 = table.grad();
  table.zero_grad();
  embedding(table, idx).backward(dy);
  expect_same_bits(g1, table.grad(), "embedding backward");
}

TEST(CudaModelOps, OutOfRangeIdsAndTargetsThrow) {
  REQUIRE_CUDA();
  Tensor table = randn({10, 4}).to(DType::F32).to(Device::cuda());
  for (int64_t bad : {10, -1}) {
    Tensor idx = ints({5}, {1, 2, bad, 3, bad}).to(Device::cuda());
    try {
      (void)embedding(table, idx);
      ADD_FAILURE() << "embedding with id " << bad << " did not throw";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
      EXPECT_NE(msg.find("id " + std::to_string(bad) + " at position 2"), std::string::npos) << msg;
    }
    // The backward kernel checks too.
    KernelArgs k;
    k.op = Op::EmbeddingBackward;
    k.in = {randn({5, 4}).to(DType::F32).to(Device::cuda()), idx};
    k.out = {Tensor::empty({10, 4}, DType::F32, Device::cuda())};
    EXPECT_THROW(dispatch(Op::EmbeddingBackward, DType::F32, k), Error);
  }
  Tensor logits = randn({4, 6}).to(DType::F32).to(Device::cuda());
  try {
    (void)cross_entropy(logits, ints({4}, {0, 5, 6, -100}).to(Device::cuda()));
    ADD_FAILURE() << "cross_entropy with target 6 of 6 classes did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 6 in row 2"), std::string::npos) << e.what();
  }
  // The CUDA context is still usable after the errors.
  EXPECT_NEAR(sum(Tensor::ones({100}, DType::F32, Device::cuda())).item(), 100.0, 0.0);
}

TEST(CudaModelOps, RmsNormSwigluSoftmaxMatchTheCpu) {
  REQUIRE_CUDA();
  auto rn = [](double eps) { return [eps](const Tensors& x) { return Tensors{rms_norm(x[0], x[1], eps)}; }; };
  check_op({"rms_norm", {randn({3, 100, 768}), randn({768}, 0.3, 1.0)}, rn(1e-5)});
  check_op({"rms_norm_narrow", {randn({50, 5}), randn({5}, 0.3, 1.0)}, rn(1e-6)});
  // C = 13000: the f32 dw partial row (52 KB) no longer fits 48 KB of shared memory.
  check_op({"rms_norm_wide", {randn({4, 13000}), randn({13000}, 0.3, 1.0)}, rn(1e-5)});
  check_op({"rms_norm_many_rows", {randn({3000, 64}), randn({64}, 0.3, 1.0)}, rn(1e-5)});
  // C = 256 n, n <= 4: bf16 takes the warp-per-row kernels (n = 4: the small models' width, n = 3:
  // another chunk count); f32 / f64 and wider rows (2048) the block-per-row ones.
  check_op({"rms_norm_warp_rows", {randn({2, 300, 1024}), randn({1024}, 0.3, 1.0)}, rn(1e-5)});
  check_op({"rms_norm_warp_rows_768", {randn({77, 768}), randn({768}, 0.3, 1.0)}, rn(1e-5)});
  check_op({"rms_norm_warp_rows_2048", {randn({5, 2048}), randn({2048}, 0.3, 1.0)}, rn(1e-5)});
  check_op({"swiglu", {randn({64, 1000}, 3.0), randn({64, 1000})},
            [](const Tensors& x) { return Tensors{swiglu(x[0], x[1])}; }});
  auto sm = [](const Tensors& x) { return Tensors{softmax(x[0])}; };
  // The backward recomputes y from x in f32 (a saved bf16 y would add its own rounding where
  // dy - sum dy y cancels: 4x the naive error on large logits), so the usual factor holds.
  check_op({"softmax", {randn({3, 7, 11}, 2.0)}, sm, true});
  check_op({"softmax_long_rows", {randn({16, 5000}, 2.0)}, sm, true});
  check_op({"softmax_large_values", {randn({5, 40}, 3.0, 100.0)}, sm, true});
  // Deterministic dw.
  Tensor x = randn({3000, 64}).to(DType::F32).to(Device::cuda());
  Tensor w = randn({64}).to(DType::F32).to(Device::cuda()).set_requires_grad(true);
  Tensor dy = randn({3000, 64}).to(DType::F32).to(Device::cuda());
  rms_norm(x, w, 1e-5).backward(dy);
  Tensor g1 = w.grad();
  w.zero_grad();
  rms_norm(x, w, 1e-5).backward(dy);
  expect_same_bits(g1, w.grad(), "rms_norm dw");
  // The same on the bf16 warp-per-row path.
  Tensor xb = randn({3000, 1024}).to(DType::BF16).to(Device::cuda());
  Tensor wb = randn({1024}).to(DType::BF16).to(Device::cuda()).set_requires_grad(true);
  Tensor dyb = randn({3000, 1024}).to(DType::BF16).to(Device::cuda());
  rms_norm(xb, wb, 1e-5).backward(dyb);
  Tensor gb = wb.grad();
  wb.zero_grad();
  rms_norm(xb, wb, 1e-5).backward(dyb);
  expect_same_bits(gb, wb.grad(), "rms_norm dw (bf16, warp rows)");
}

TEST(CudaModelOps, RopeMatchesTheCpu) {
  REQUIRE_CUDA();
  auto rp = [](int64_t off, double theta, bool bf16_pos) {
    return [=](const Tensors& x) { return Tensors{rope(x[0], off, theta, bf16_pos)}; };
  };
  check_op({"rope", {randn({2, 300, 3, 64})}, rp(0, 10000.0, false)});
  // Positions near 40K: angles of 4e4 rad, where an fp32 angle would be off by ~2e-3.
  check_op({"rope_far", {randn({1, 50, 2, 16})}, rp(40000, 10000.0, false)});
  check_op({"rope_bf16_positions", {randn({1, 600, 2, 8})}, rp(100, 500.0, true)});
}

TEST(CudaModelOps, CrossEntropyMatchesTheCpu) {
  REQUIRE_CUDA();
  auto ce = [](int64_t ignore) {
    return [ignore](const Tensors& x) { return Tensors{cross_entropy(x[0], x[1], ignore)}; };
  };
  std::vector<int64_t> tg = ids({300}, 1000).to_ints();
  for (size_t i = 0; i < tg.size(); i += 7) tg[i] = -100;
  check_op({"cross_entropy", {randn({300, 1000}, 3.0), ints({300}, tg)}, ce(-100)});
  check_op({"cross_entropy_3d_custom_ignore", {randn({2, 50, 257}), ids({2, 50}, 257)}, ce(3)});
  check_op({"cross_entropy_all_ignored", {randn({3, 4}), ints({3}, {-100, -100, -100})}, ce(-100)});
  check_op({"cross_entropy_vocab_32k", {randn({8, 32000}, 2.0), ids({8}, 32000)}, ce(-100)});
  // Deterministic loss.
  Tensor l = randn({300, 1000}).to(DType::BF16).to(Device::cuda());
  Tensor t = ints({300}, tg).to(Device::cuda());
  expect_same_bits(cross_entropy(l, t), cross_entropy(l, t), "cross_entropy loss");
}

TEST(CudaModelOps, Conv1dMatchesTheCpu) {
  REQUIRE_CUDA();
  auto conv = [](const Tensors& x) { return Tensors{conv1d_causal(x[0], x[1], x[2])}; };
  for (int64_t W : {1, 2, 4, 7})
    check_op({"conv1d_w" + std::to_string(W), {randn({2, 200, 48}), randn({48, W}, 0.5), randn({48})}, conv});
  check_op({"conv1d_long", {randn({4, 3000, 16}), randn({16, 4}, 0.5), randn({16})}, conv});
  Tensor x = randn({4, 3000, 16}).to(DType::F32).to(Device::cuda());
  Tensor w = randn({16, 4}).to(DType::F32).to(Device::cuda()).set_requires_grad(true);
  Tensor b = randn({16}).to(DType::F32).to(Device::cuda());
  Tensor dy = randn({4, 3000, 16}).to(DType::F32).to(Device::cuda());
  conv1d_causal(x, w, b).backward(dy);
  Tensor g1 = w.grad();
  w.zero_grad();
  conv1d_causal(x, w, b).backward(dy);
  expect_same_bits(g1, w.grad(), "conv1d dw");
}

TEST(CudaModelOps, ConcatOfStridedViewsMatchesTheCpu) {
  REQUIRE_CUDA();
  check_op({"concat_strided", {randn({7, 5}), randn({5, 6})},
            [](const Tensors& x) { return Tensors{concat({x[0].t(), x[1].narrow(1, 1, 3)}, 1)}; }});
  check_op({"concat_dim0", {randn({2, 3, 4}), randn({4, 3, 2})},
            [](const Tensors& x) { return Tensors{concat({x[0], x[1].permute({2, 1, 0})}, 0)}; }});
}

}  // namespace
}  // namespace coil
