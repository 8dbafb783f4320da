// Matmul and Linear on CUDA (kernels/cpu/matmul.cpp's contracts) on top of cuda::gemm (gemm.h), plus
// the two plain kernels gemm's fallbacks use: bias rows (C[b][m, :] = bias) and a reference GEMM (one
// thread per output element, accumulation over K in order in fp32, fp64 for f64).
// Linear's bias goes through cuBLASLt's BIAS epilogue where cuBLASLt supports it for the problem
// (bias in the output dtype, added in fp32 before the one rounding of the result); otherwise the bias
// is written into y first and the GEMM accumulates onto it, as the CPU kernel does.
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/gemm.h"

namespace coil::cuda {

// --- fallback kernels ---------------------------------------------------------------------------------
namespace {

template <typename T>
__global__ void bias_rows_kernel(T* c, const T* bias, int64_t rows, int64_t N, int64_t batch, int64_t stride_c) {
  const int64_t total = batch * rows * N;
  for (int64_t i = grid_index(); i < total; i += grid_stride()) {
    const int64_t n = i % N, r = i / N;  // r = b * rows + m
    const int64_t b = r / rows, m = r % rows;
    c[b * stride_c + m * N + n] = bias[n];
  }
}

template <typename T>
__global__ void gemm_reference_kernel(GemmCall g) {
  using A = compute_t<T>;
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  const T* bias = static_cast<const T*>(g.bias);
  const int64_t total = g.batch * g.M * g.N;
  for (int64_t i = grid_index(); i < total; i += grid_stride()) {
    const int64_t n = i % g.N, m = (i / g.N) % g.M, bt = i / (g.M * g.N);
    const T* ab = a + bt * g.stride_a;
    const T* bb = b + bt * g.stride_b;
    A acc = A(0);
    for (int64_t k = 0; k < g.K; ++k) {
      const A x = to_compute(g.trans_a ? ab[k * g.M + m] : ab[m * g.K + k]);
      const A y = to_compute(g.trans_b ? bb[n * g.K + k] : bb[k * g.N + n]);
      acc += x * y;
    }
    T* out = c + bt * g.stride_c + m * g.N + n;
    if (g.accumulate) acc += to_compute(*out);
    if (bias) acc += to_compute(bias[n]);
    *out = from_compute<T>(acc);
  }
}

template <typename Fn>
void by_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(bf16_t{});
    default: COIL_INTERNAL_ASSERT(false, "gemm dtype ", dtype_name(t));
  }
}

}  // namespace

void launch_bias_rows(const GemmCall& g, cudaStream_t stream) {
  by_dtype(g.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.batch * g.M * g.N;
    bias_rows_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(
        static_cast<T*>(g.c), static_cast<const T*>(g.bias), g.M, g.N, g.batch, g.batch > 1 ? g.stride_c : 0);
    COIL_CUDA_CHECK_LAUNCH("bias_rows_kernel");
  });
}

void launch_gemm_reference(const GemmCall& g, cudaStream_t stream) {
  by_dtype(g.dtype, [&](auto tag) {
    using T = decltype(tag);
    GemmCall p = g;
    if (p.batch <= 1) p.stride_a = p.stride_b = p.stride_c = 0;
    gemm_reference_kernel<T><<<grid_for(p.batch * p.M * p.N), kThreads, 0, stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("gemm_reference_kernel");
  });
}

// --- Matmul / Linear ------------------------------------------------------------------------------------
namespace {

// Matmul: a (Ba, M, K) [stored (Ba, K, M) if trans_a], b (Bb, K, N) [stored (Bb, N, K) if trans_b],
// Ba, Bb in {1, Bt} -> out (Bt, M, N); attrs.beta == 1 accumulates into out.
template <typename T>
void matmul_launch(const KernelArgs& args) {
  check_arity(args, 2, 1);
  const Tensor& a = args.in[0];
  const Tensor& b = args.in[1];
  const Tensor& out = args.out[0];
  for (const Tensor* t : {&a, &b, &out}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->dim() == 3 && t->is_contiguous(), "matmul operand ", t->describe());
  }
  const bool ta = args.attrs.trans_a, tb = args.attrs.trans_b;
  const int64_t Bt = out.size(0), M = out.size(1), N = out.size(2);
  const int64_t Ba = a.size(0), Bb = b.size(0);
  const int64_t K = ta ? a.size(1) : a.size(2);
  COIL_INTERNAL_ASSERT((ta ? a.size(2) : a.size(1)) == M && (tb ? b.size(2) : b.size(1)) == K &&
                           (tb ? b.size(1) : b.size(2)) == N && (Ba == 1 || Ba == Bt) &&
                           (Bb == 1 || Bb == Bt),
                       a.describe(), " @ ", b.describe(), " -> ", out.describe(), " trans ", ta, tb);
  GemmCall g;
  g.dtype = dtype_of<T>();
  g.trans_a = ta;
  g.trans_b = tb;
  g.M = M, g.N = N, g.K = K, g.batch = Bt;
  g.a = a.data_ptr();
  g.stride_a = Ba == 1 ? 0 : M * K;
  g.b = b.data_ptr();
  g.stride_b = Bb == 1 ? 0 : K * N;
  g.c = out.data_ptr();
  g.stride_c = M * N;
  g.accumulate = args.attrs.beta == 1.0;
  LaunchContext ctx(out);
  gemm(g, out.device().index, ctx.stream);
}

// Linear: x (M, K), w (N, K), [b (N)] -> y (M, N) = x w^T + b.
template <typename T>
void linear_launch(const KernelArgs& args) {
  COIL_INTERNAL_ASSERT((args.in.size() == 2 || args.in.size() == 3) && args.out.size() == 1, "linear arity");
  const Tensor& x = args.in[0];
  const Tensor& w = args.in[1];
  const Tensor& y = args.out[0];
  for (const Tensor& t : args.in) check_tensor<T>(t);
  check_tensor<T>(y);
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  COIL_INTERNAL_ASSERT(x.dim() == 2 && w.dim() == 2 && w.size(1) == K && y.dim() == 2 && y.size(0) == M &&
                           y.size(1) == N && x.is_contiguous() && w.is_contiguous() && y.is_contiguous(),
                       x.describe(), ", ", w.describe(), " -> ", y.describe());
  GemmCall g;
  g.dtype = dtype_of<T>();
  g.trans_b = true;
  g.M = M, g.N = N, g.K = K;
  g.a = x.data_ptr();
  g.b = w.data_ptr();
  g.c = y.data_ptr();
  if (args.in.size() == 3) {
    const Tensor& bias = args.in[2];
    COIL_INTERNAL_ASSERT(bias.numel() == N && bias.is_contiguous(), "linear bias ", bias.describe());
    g.bias = bias.data_ptr();
  }
  LaunchContext ctx(y);
  gemm(g, y.device().index, ctx.stream);
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Matmul, matmul_launch);
COIL_CUDA_FLOAT_KERNELS(Linear, linear_launch);

}  // namespace coil::cuda
