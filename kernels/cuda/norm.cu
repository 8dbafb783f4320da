// Row-wise model ops on CUDA (kernels/cpu/nn_norm.cpp's contracts): RMSNorm, Softmax over the last dim
// and SwiGLU, each with its fused backward. Rows get one block each (row_block_threads); every sum
// in a row is a fixed block tree in fp32 (f32 / bf16) or fp64 (f64), and bf16 rounds once on store.
// RMSNorm's rstd is f32 for f32 / bf16 and f64 for f64 (its own dtype, like the CPU's).
// RMSNormBackward's dw is deterministic: each of G blocks owns a fixed run of rows and accumulates
// dy * x * rstd for its rows into its own partial row (shared memory when C fits, else global); a
// second kernel sums the G partial rows in block order. G and the runs depend only on M.
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/device_math.cuh"

namespace coil::cuda {
namespace {

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// --- RMSNorm: x (M, C), w (C) -> y (M, C) = x * rstd * w, rstd (M) = 1 / sqrt(mean(x^2) + eps) --------
template <typename T>
struct RmsNormParams {
  const T* x;        // (M, C)
  const T* w;        // (C)
  T* y;              // (M, C)
  stat_t<T>* rstd;   // (M)
  int64_t M, C;
  compute_t<T> eps;
};

template <typename T>
__global__ void rms_norm_kernel(RmsNormParams<T> p) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < p.M; row += gridDim.x) {
    const T* xr = p.x + row * p.C;
    A ss = A(0);
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) {
      const A v = to_compute(xr[c]);
      ss += v * v;
    }
    ss = block_allreduce(ss, SumOp(), A(0));
    const A r = A(1) / m_sqrt(ss / A(p.C) + p.eps);
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x)
      p.y[row * p.C + c] = from_compute<T>(to_compute(xr[c]) * r * to_compute(p.w[c]));
    if (threadIdx.x == 0) p.rstd[row] = stat_t<T>(r);
  }
}

template <typename T>
void rms_norm_launch(const KernelArgs& a) {
  check_arity(a, 2, 2);
  const Tensor& x = a.in[0];
  const Tensor& w = a.in[1];
  const Tensor& y = a.out[0];
  const Tensor& rstd = a.out[1];
  for (const Tensor* t : {&x, &w, &y}) check_tensor<T>(*t);
  check_tensor<stat_t<T>>(rstd);
  const int64_t C = x.dim() == 0 ? 1 : x.size(-1), M = C ? x.numel() / C : 0;
  COIL_INTERNAL_ASSERT(w.numel() == C && rstd.numel() == M && y.numel() == x.numel() && x.is_contiguous() &&
                           y.is_contiguous() && w.is_contiguous(),
                       "rms_norm x ", x.describe(), ", w ", w.describe(), ", rstd ", rstd.describe());
  if (M == 0) return;
  LaunchContext ctx(x);
  RmsNormParams<T> p{x.data<T>(), w.data<T>(), y.data<T>(), rstd.data<stat_t<T>>(), M, C,
                     compute_t<T>(a.attrs.eps)};
  rms_norm_kernel<T><<<row_grid(M), row_block_threads(C), 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("rms_norm_kernel");
}

// --- RMSNormBackward: dy, x (M, C), w (C), rstd (M) -> dx (M, C), dw (C) --------------------------------
//   dx = rstd * (w * dy - x * rstd^2 * mean(dy * w * x)),   dw = sum over rows of dy * x * rstd
constexpr int64_t kNormBwdBlocks = 512;           // G: partial dw rows (at most)
constexpr size_t kSmemPartialBytes = 48 * 1024;   // without opting in to more dynamic shared memory

template <typename T>
struct RmsNormBwdParams {
  const T* dy;
  const T* x;
  const T* w;
  const stat_t<T>* rstd;
  T* dx;
  compute_t<T>* partial;  // (G, C)
  int64_t M, C, rows_per_block;
  bool smem;              // accumulate the block's partial row in shared memory
};

template <typename T>
__global__ void rms_norm_backward_kernel(RmsNormBwdParams<T> p) {
  using A = compute_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* acc = p.smem ? reinterpret_cast<A*>(smem_raw) : p.partial + blockIdx.x * p.C;
  for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) acc[c] = A(0);
  const int64_t r0 = blockIdx.x * p.rows_per_block, r1 = min(p.M, r0 + p.rows_per_block);
  for (int64_t row = r0; row < r1; ++row) {
    const T* dyr = p.dy + row * p.C;
    const T* xr = p.x + row * p.C;
    const A r = A(p.rstd[row]);
    A dot = A(0);
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x)
      dot += to_compute(dyr[c]) * to_compute(p.w[c]) * to_compute(xr[c]);
    dot = block_allreduce(dot, SumOp(), A(0));
    const A k = r * r * dot / A(p.C);
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) {
      const A g = to_compute(dyr[c]), xv = to_compute(xr[c]);
      p.dx[row * p.C + c] = from_compute<T>(r * (to_compute(p.w[c]) * g - xv * k));
      acc[c] += g * xv * r;  // only this thread touches column c
    }
  }
  if (p.smem)
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) p.partial[blockIdx.x * p.C + c] = acc[c];
}

// dw[c] = sum over g of partial[g, c], in block order.
template <typename T>
__global__ void sum_partial_rows_kernel(const compute_t<T>* partial, int64_t G, int64_t C, T* out) {
  for (int64_t c = grid_index(); c < C; c += grid_stride()) {
    compute_t<T> acc = compute_t<T>(0);
    for (int64_t g = 0; g < G; ++g) acc += partial[g * C + c];
    out[c] = from_compute<T>(acc);
  }
}

template <typename T>
void rms_norm_backward_launch(const KernelArgs& a) {
  using A = compute_t<T>;
  check_arity(a, 4, 2);
  const Tensor& dy = a.in[0];
  const Tensor& x = a.in[1];
  const Tensor& w = a.in[2];
  const Tensor& rstd = a.in[3];
  const Tensor& dx = a.out[0];
  const Tensor& dw = a.out[1];
  for (const Tensor* t : {&dy, &x, &w, &dx, &dw}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous(), "rms_norm_backward ", t->describe());
  }
  check_tensor<stat_t<T>>(rstd);
  const int64_t C = x.dim() == 0 ? 1 : x.size(-1), M = C ? x.numel() / C : 0;
  COIL_INTERNAL_ASSERT(dy.numel() == M * C && dx.numel() == M * C && w.numel() == C && dw.numel() == C &&
                           rstd.numel() == M,
                       "rms_norm_backward x ", x.describe(), ", dy ", dy.describe(), ", rstd ", rstd.describe());
  if (C == 0) return;
  LaunchContext ctx(x);
  if (M == 0) {  // no rows: dw is an empty sum
    COIL_CUDA_CHECK(cudaMemsetAsync(dw.data_ptr(), 0, size_t(C) * sizeof(T), ctx.stream));
    return;
  }
  const int64_t rows_per_block = ceil_div(M, kNormBwdBlocks);
  const int64_t G = ceil_div(M, rows_per_block);
  Tensor partial = Tensor::empty({G, C}, dtype_of<A>(), x.device());  // (G, C)
  const size_t row_bytes = size_t(C) * sizeof(A);
  const bool smem = row_bytes <= kSmemPartialBytes;
  RmsNormBwdParams<T> p{dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<stat_t<T>>(), dx.data<T>(),
                        static_cast<A*>(partial.data_ptr()), M, C, rows_per_block, smem};
  rms_norm_backward_kernel<T><<<unsigned(G), row_block_threads(C), smem ? row_bytes : 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("rms_norm_backward_kernel");
  sum_partial_rows_kernel<T><<<grid_for(C), kThreads, 0, ctx.stream>>>(p.partial, G, C, dw.data<T>());
  COIL_CUDA_CHECK_LAUNCH("sum_partial_rows_kernel");
}

// --- Softmax over the last dim: x (M, n) -> y (M, n) ---------------------------------------------------
template <typename T>
__global__ void softmax_kernel(const T* x, T* y, int64_t M, int64_t n) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < M; row += gridDim.x) {
    const T* xr = x + row * n;
    A mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = NanMaxOp()(mx, to_compute(xr[j]));
    mx = block_allreduce(mx, NanMaxOp(), A(-INFINITY));
    A total = A(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) total += m_exp(to_compute(xr[j]) - mx);
    total = block_allreduce(total, SumOp(), A(0));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      y[row * n + j] = from_compute<T>(m_exp(to_compute(xr[j]) - mx) / total);
  }
}

// SoftmaxBackward: dy (M, n), y (M, n) -> dx = y * (dy - sum_j dy_j y_j).
template <typename T>
__global__ void softmax_backward_kernel(const T* dy, const T* y, T* dx, int64_t M, int64_t n) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < M; row += gridDim.x) {
    A dot = A(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dot += to_compute(dy[row * n + j]) * to_compute(y[row * n + j]);
    dot = block_allreduce(dot, SumOp(), A(0));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t k = row * n + j;
      dx[k] = from_compute<T>(to_compute(y[k]) * (to_compute(dy[k]) - dot));
    }
  }
}

template <typename T>
void softmax_launch(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  const Tensor& y = a.out[0];
  check_tensor<T>(x);
  check_tensor<T>(y);
  COIL_INTERNAL_ASSERT(x.is_contiguous() && y.is_contiguous() && x.numel() == y.numel(), "softmax ",
                       x.describe(), " -> ", y.describe());
  const int64_t n = x.dim() == 0 ? 1 : x.size(-1), M = n ? x.numel() / n : 0;
  if (M == 0) return;
  LaunchContext ctx(x);
  softmax_kernel<T><<<row_grid(M), row_block_threads(n), 0, ctx.stream>>>(x.data<T>(), y.data<T>(), M, n);
  COIL_CUDA_CHECK_LAUNCH("softmax_kernel");
}

template <typename T>
void softmax_backward_launch(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& dy = a.in[0];
  const Tensor& y = a.in[1];
  const Tensor& dx = a.out[0];
  for (const Tensor* t : {&dy, &y, &dx}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous() && t->numel() == y.numel(), "softmax_backward ", t->describe());
  }
  const int64_t n = y.dim() == 0 ? 1 : y.size(-1), M = n ? y.numel() / n : 0;
  if (M == 0) return;
  LaunchContext ctx(y);
  softmax_backward_kernel<T><<<row_grid(M), row_block_threads(n), 0, ctx.stream>>>(dy.data<T>(), y.data<T>(),
                                                                                  dx.data<T>(), M, n);
  COIL_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
}

// --- SwiGLU: gate, up -> y = silu(gate) * up; backward with s = sigmoid(g):
//   dgate = dy * up * s * (1 + g * (1 - s)),   dup = dy * g * s
template <typename T>
__global__ void swiglu_kernel(const T* gate, const T* up, T* y, int64_t n) {
  using A = compute_t<T>;
  for (int64_t i = grid_index(); i < n; i += grid_stride()) {
    const A g = to_compute(gate[i]);
    y[i] = from_compute<T>(g * m_sigmoid(g) * to_compute(up[i]));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n) {
  using A = compute_t<T>;
  for (int64_t i = grid_index(); i < n; i += grid_stride()) {
    const A g = to_compute(gate[i]), d = to_compute(dy[i]), s = m_sigmoid(g);
    dgate[i] = from_compute<T>(d * to_compute(up[i]) * s * (A(1) + g * (A(1) - s)));
    dup[i] = from_compute<T>(d * g * s);
  }
}

template <typename T>
void swiglu_launch(const KernelArgs& a) {
  check_arity(a, 2, 1);
  for (const Tensor* t : {&a.in[0], &a.in[1], &a.out[0]}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous() && t->numel() == a.in[0].numel(), "swiglu ", t->describe());
  }
  const int64_t n = a.in[0].numel();
  if (n == 0) return;
  LaunchContext ctx(a.in[0]);
  swiglu_kernel<T><<<grid_for(n), kThreads, 0, ctx.stream>>>(a.in[0].data<T>(), a.in[1].data<T>(),
                                                             a.out[0].data<T>(), n);
  COIL_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

template <typename T>
void swiglu_backward_launch(const KernelArgs& a) {
  check_arity(a, 3, 2);
  for (const Tensor* t : {&a.in[0], &a.in[1], &a.in[2], &a.out[0], &a.out[1]}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous() && t->numel() == a.in[1].numel(), "swiglu_backward ", t->describe());
  }
  const int64_t n = a.in[1].numel();
  if (n == 0) return;
  LaunchContext ctx(a.in[1]);
  swiglu_backward_kernel<T><<<grid_for(n), kThreads, 0, ctx.stream>>>(
      a.in[0].data<T>(), a.in[1].data<T>(), a.in[2].data<T>(), a.out[0].data<T>(), a.out[1].data<T>(), n);
  COIL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(RMSNorm, rms_norm_launch);
COIL_CUDA_FLOAT_KERNELS(RMSNormBackward, rms_norm_backward_launch);
COIL_CUDA_FLOAT_KERNELS(Softmax, softmax_launch);
COIL_CUDA_FLOAT_KERNELS(SoftmaxBackward, softmax_backward_launch);
COIL_CUDA_FLOAT_KERNELS(SwiGLU, swiglu_launch);
COIL_CUDA_FLOAT_KERNELS(SwiGLUBackward, swiglu_backward_launch);

}  // namespace coil::cuda
