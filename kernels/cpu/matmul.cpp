// Matmul (batched, optional transposes, broadcast batch of 1, optional accumulate) and Linear
// (y = x w^T + b), both on top of one GEMM (matmul.h). The loop GEMM packs operands to A (M, K) and
// B (K, N), then per row of C accumulates a_ik * B[k, :] in double over column blocks; CBLAS, when
// present, replaces it batch by batch. Either way an f32 product accumulates in double and is rounded
// once, like every other CPU reduction: CBLAS gets f32 operands widened to double (dgemm: slower than
// sgemm; the CPU backend is the reference, speed is the GPU's job). With sgemm's f32 accumulation,
// gradients that sum over batch and sequence were ~1e-5 (of the tensor's largest entry) from fp64,
// and a sharded run (another summation order) as far again from the single-rank one (issue 5 asks
// < 1e-5 between them).
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <vector>

#ifdef COIL_HAVE_CBLAS
#include <cblas.h>
#endif

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

// Row-major (R, C) -> (C, R).
template <typename T>
std::vector<T> transposed(const T* src, int64_t rows, int64_t cols) {
  std::vector<T> dst(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  return dst;
}

template <typename T>
void gemm_loops_impl(const GemmArgs<T>& g) {
  const int64_t M = g.M, N = g.N, K = g.K;
  if (M == 0 || N == 0) return;
  std::vector<T> a_packed, b_packed;
  const T* A = g.a;  // (M, K)
  const T* B = g.b;  // (K, N)
  if (g.trans_a) {
    a_packed = transposed(g.a, K, M);
    A = a_packed.data();
  }
  if (g.trans_b) {
    b_packed = transposed(g.b, N, K);
    B = b_packed.data();
  }
  constexpr int64_t kBlockN = 256;  // columns of C per accumulator block (2 KiB of doubles, in L1)
#pragma omp parallel for schedule(static) if (M * N * K > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    double acc[kBlockN];
    for (int64_t j0 = 0; j0 < N; j0 += kBlockN) {
      const int64_t nj = std::min(kBlockN, N - j0);
      std::fill(acc, acc + nj, 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double aik = A[i * K + k];
        const T* brow = B + k * N + j0;
        for (int64_t j = 0; j < nj; ++j) acc[j] += aik * double(brow[j]);
      }
      T* crow = g.c + i * N + j0;
      for (int64_t j = 0; j < nj; ++j) crow[j] = g.accumulate ? T(crow[j] + acc[j]) : T(acc[j]);
    }
  }
}

#ifdef COIL_HAVE_CBLAS
// Leading dimensions must be >= 1 even for empty matrices.
inline int ld(int64_t n) { return int(std::max<int64_t>(n, 1)); }
// Rows [i0, i0 + m) of C. With trans_a, A is stored (K, M), so its rows start at column i0.
void cblas_rows(const GemmArgs<double>& g, int64_t i0, int64_t m) {
  cblas_dgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, int(m), int(g.N), int(g.K), 1.0,
              g.a + (g.trans_a ? i0 : i0 * g.K), ld(g.trans_a ? g.M : g.K), g.b,
              ld(g.trans_b ? g.K : g.N), g.accumulate ? 1.0 : 0.0, g.c + i0 * g.N, ld(g.N));
}
// One thread pool only: OpenBLAS's own pthreads next to OpenMP's team oversubscribe the cores (3x
// slower on a 2-core machine), so OpenBLAS runs single-threaded and the rows of C are split across
// the OpenMP team instead. Each row block is an independent GEMM, so results do not depend on the
// thread count.
void cblas_gemm(const GemmArgs<double>& g) {
#ifdef COIL_OPENBLAS
  static const bool single = (openblas_set_num_threads(1), true);
  (void)single;
#endif
  constexpr int64_t kRowBlock = 64;
  const int64_t blocks = (g.M + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) if (blocks > 1 && g.M * g.N * g.K > (int64_t(1) << 20))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i0 = blk * kRowBlock;
    cblas_rows(g, i0, std::min(kRowBlock, g.M - i0));
  }
}
// f32: B widened to double once; per block of rows of C, the rows of op(A) (and of C when
// accumulating) widened, one dgemm, C rounded once. Products of two f32 values are exact in double,
// so the store is the only rounding. The buffers are per block (rows x (K + N)) besides B.
void cblas_gemm(const GemmArgs<float>& g) {
#ifdef COIL_OPENBLAS
  static const bool single = (openblas_set_num_threads(1), true);
  (void)single;
#endif
  const int64_t M = g.M, N = g.N, K = g.K;
  const std::vector<double> b(g.b, g.b + K * N);  // stored layout: (K, N), or (N, K) if trans_b
  constexpr int64_t kRowBlock = 64;
  const int64_t blocks = (M + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) if (blocks > 1 && M * N * K > (int64_t(1) << 20))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i0 = blk * kRowBlock, m = std::min(kRowBlock, M - i0);
    std::vector<double> a(size_t(m * K)), c(size_t(m * N));
    if (g.trans_a) {  // stored (K, M): columns i0 .. i0 + m -> (K, m)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < m; ++i) a[size_t(k * m + i)] = g.a[k * M + i0 + i];
    } else {
      std::copy(g.a + i0 * K, g.a + (i0 + m) * K, a.begin());
    }
    float* crow = g.c + i0 * N;
    if (g.accumulate) std::copy(crow, crow + m * N, c.begin());
    cblas_dgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                g.trans_b ? CblasTrans : CblasNoTrans, int(m), int(N), int(K), 1.0, a.data(),
                ld(g.trans_a ? m : K), b.data(), ld(g.trans_b ? K : N), g.accumulate ? 1.0 : 0.0,
                c.data(), ld(N));
    std::transform(c.begin(), c.end(), crow, [](double x) { return float(x); });
  }
}
#endif

template <typename T>
void gemm_impl(const GemmArgs<T>& g) {
  if (g.M == 0 || g.N == 0) return;
  if (g.K == 0) {  // empty sum: C = 0, or C unchanged when accumulating
    if (!g.accumulate) std::fill(g.c, g.c + g.M * g.N, T(0));
    return;
  }
#ifdef COIL_HAVE_CBLAS
  COIL_CHECK(g.M < (int64_t(1) << 31) && g.N < (int64_t(1) << 31) && g.K < (int64_t(1) << 31),
             "matmul dims (M, N, K) = (", g.M, ", ", g.N, ", ", g.K, ") exceed CBLAS's int range");
  cblas_gemm(g);
#else
  gemm_loops_impl(g);
#endif
}

// Matmul: a (Ba, M, K) [stored (Ba, K, M) if trans_a], b (Bb, K, N) [stored (Bb, N, K) if trans_b],
// Ba, Bb in {1, Bt} -> out (Bt, M, N); attrs.beta == 1 accumulates into out.
template <typename T>
void matmul_kernel(const KernelArgs& args) {
  check_arity(args, 2, 1);
  const Tensor& a = args.in[0];
  const Tensor& b = args.in[1];
  const Tensor& out = args.out[0];
  check_dtype<T>(a);
  check_dtype<T>(b);
  COIL_INTERNAL_ASSERT(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, a.describe(), " @ ",
                       b.describe(), " -> ", out.describe());
  const bool ta = args.attrs.trans_a, tb = args.attrs.trans_b;
  const int64_t Bt = out.size(0), M = out.size(1), N = out.size(2);
  const int64_t Ba = a.size(0), Bb = b.size(0);
  const int64_t K = ta ? a.size(1) : a.size(2);
  COIL_INTERNAL_ASSERT((ta ? a.size(2) : a.size(1)) == M && (tb ? b.size(2) : b.size(1)) == K &&
                           (tb ? b.size(1) : b.size(2)) == N && (Ba == 1 || Ba == Bt) &&
                           (Bb == 1 || Bb == Bt),
                       a.describe(), " @ ", b.describe(), " -> ", out.describe(), " trans ", ta, tb);
  for (int64_t bt = 0; bt < Bt; ++bt) {
    GemmArgs<T> g;
    g.trans_a = ta;
    g.trans_b = tb;
    g.M = M, g.N = N, g.K = K;
    g.a = a.data<T>() + (Ba == 1 ? 0 : bt) * M * K;
    g.b = b.data<T>() + (Bb == 1 ? 0 : bt) * K * N;
    g.c = out.data<T>() + bt * M * N;
    g.accumulate = args.attrs.beta == 1.0;
    gemm(g);
  }
}

// Linear: x (M, K), w (N, K), [b (N)] -> y (M, N) = x w^T + b (bias written first, then accumulated).
template <typename T>
void linear_kernel(const KernelArgs& args) {
  COIL_INTERNAL_ASSERT((args.in.size() == 2 || args.in.size() == 3) && args.out.size() == 1,
                       "linear arity");
  const Tensor& x = args.in[0];
  const Tensor& w = args.in[1];
  const Tensor& y = args.out[0];
  check_dtype<T>(x);
  check_dtype<T>(w);
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  COIL_INTERNAL_ASSERT(x.dim() == 2 && w.dim() == 2 && w.size(1) == K && y.dim() == 2 &&
                           y.size(0) == M && y.size(1) == N,
                       x.describe(), ", ", w.describe(), " -> ", y.describe());
  const bool has_bias = args.in.size() == 3;
  T* py = y.data<T>();
  if (has_bias) {
    const T* pb = args.in[2].data<T>();
    COIL_INTERNAL_ASSERT(args.in[2].numel() == N, "bias ", args.in[2].describe());
    for (int64_t i = 0; i < M; ++i) std::copy(pb, pb + N, py + i * N);
  }
  GemmArgs<T> g;
  g.trans_b = true;
  g.M = M, g.N = N, g.K = K;
  g.a = x.data<T>();
  g.b = w.data<T>();
  g.c = py;
  g.accumulate = has_bias;
  gemm(g);
}

}  // namespace

void gemm(const GemmArgs<float>& g) { gemm_impl(g); }
void gemm(const GemmArgs<double>& g) { gemm_impl(g); }
void gemm_loops(const GemmArgs<float>& g) { gemm_loops_impl(g); }
void gemm_loops(const GemmArgs<double>& g) { gemm_loops_impl(g); }
bool gemm_uses_cblas() {
#ifdef COIL_HAVE_CBLAS
  return true;
#else
  return false;
#endif
}

COIL_CPU_FLOAT_KERNELS(Matmul, matmul_kernel);
COIL_CPU_FLOAT_KERNELS(Linear, linear_kernel);

}  // namespace coil::cpu
