// Row-wise model ops on CUDA (kernels/cpu/nn_norm.cpp's contracts): RMSNorm, Softmax over the last dim
// and SwiGLU, each with its fused backward. Rows get one block each (row_block_threads); every sum
// in a row is a fixed block tree in fp32 (f32 / bf16) or fp64 (f64), and bf16 rounds once on store.
// RMSNorm's rstd is f32 for f32 / bf16 and f64 for f64 (its own dtype, like the CPU's).
// RMSNormBackward's dw is deterministic: each of G blocks owns a fixed run of rows and accumulates
// dy * x * rstd for its rows into its own partial row (shared memory when C fits, else global); a
// second kernel sums the G partial rows in a fixed order. G and the runs depend only on M.
// bf16 rows of C = 256 n (n <= 4; the models' widths) take a warp per row instead (rms_norm_warp_*):
// a block per row of 1024 spent most of its time in barriers (2026-11-24, H100: ~200 us for a
// (16384, 1024) backward, 41 of them per 2Mamba-small step).
// AddRMSNorm is RMSNorm with the residual add folded in (the same kernels, given res / h, and dh in
// the backward): h = x + res rounds to T before the norm reads it, and the backward's dx is the
// rounded norm gradient plus dh rounded again, so the values are bit for bit those of Add then
// RMSNorm (and of their gradients' sum) while the residual stream is read and written once.
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/device_math.cuh"

namespace coil::cuda {
namespace {

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// a + b rounded on its own: never contracted with the product that made a into an FMA (which
// would skip a's rounding and break the bit equality with the unfused sum).
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// --- RMSNorm: x (M, C), w (C) -> y (M, C) = x * rstd * w, rstd (M) = 1 / sqrt(mean(x^2) + eps) --------
template <typename T>
struct RmsNormParams {
  const T* x;        // (M, C)
  const T* w;        // (C)
  T* y;              // (M, C)
  stat_t<T>* rstd;   // (M)
  int64_t M, C;
  compute_t<T> eps;
  const T* res = nullptr;  // AddRMSNorm: (M, C); the norm reads h = x + res
  T* h = nullptr;          // AddRMSNorm: (M, C) out
};

// The value the norm reads at k: x, or h = x + res rounded to T (stored to h).
template <typename T>
__device__ __forceinline__ compute_t<T> norm_input(const RmsNormParams<T>& p, int64_t k) {
  if (!p.res) return to_compute(p.x[k]);
  const T h = from_compute<T>(add_rn(to_compute(p.x[k]), to_compute(p.res[k])));
  p.h[k] = h;
  return to_compute(h);
}

template <typename T>
__global__ void rms_norm_kernel(RmsNormParams<T> p) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < p.M; row += gridDim.x) {
    // With res, h is written in the first sweep and re-read (by the same thread) in the second.
    const T* xr = (p.res ? p.h : p.x) + row * p.C;
    A ss = A(0);
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) {
      const A v = norm_input(p, row * p.C + c);
      ss += v * v;
    }
    ss = block_allreduce(ss, SumOp(), A(0));
    const A r = A(1) / m_sqrt(ss / A(p.C) + p.eps);
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x)
      p.y[row * p.C + c] = from_compute<T>(to_compute(xr[c]) * r * to_compute(p.w[c]));
    if (threadIdx.x == 0) p.rstd[row] = stat_t<T>(r);
  }
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
  const T* dh = nullptr;  // AddRMSNormBackward: (M, C), added to dx (x is then h)
};

// dx at k from the norm's gradient g: rounded to T, plus dh rounded again (the unfused sum).
template <typename T>
__device__ __forceinline__ T norm_dx(const RmsNormBwdParams<T>& p, int64_t k, compute_t<T> g) {
  if (!p.dh) return from_compute<T>(g);
  return from_compute<T>(add_rn(to_compute(from_compute<T>(g)), to_compute(p.dh[k])));
}

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
      p.dx[row * p.C + c] = norm_dx(p, row * p.C + c, r * (to_compute(p.w[c]) * g - xv * k));
      acc[c] += g * xv * r;  // only this thread touches column c
    }
  }
  if (p.smem)
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) p.partial[blockIdx.x * p.C + c] = acc[c];
}

// dw[c] = sum over g of partial[g, c]: a block per 32 columns; lane ty of column c sums the rows
// g = ty (mod 32) in order, then lane 0 adds the 32 lane sums in order (one thread per column would
// walk all G rows alone).
constexpr int kSumLanes = 32;

template <typename T>
__global__ void sum_partial_rows_kernel(const compute_t<T>* partial, int64_t G, int64_t C, T* out) {
  using A = compute_t<T>;
  __shared__ A lanes[kSumLanes][kWarpSize + 1];
  const int tx = threadIdx.x % kWarpSize, ty = threadIdx.x / kWarpSize;
  for (int64_t c0 = int64_t(blockIdx.x) * kWarpSize; c0 < C; c0 += int64_t(gridDim.x) * kWarpSize) {
    const int64_t c = c0 + tx;
    A acc = A(0);
    if (c < C)
      for (int64_t g = ty; g < G; g += kSumLanes) acc += partial[g * C + c];
    lanes[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && c < C) {
      A sum = lanes[0][tx];
      for (int l = 1; l < kSumLanes; ++l) sum += lanes[l][tx];
      out[c] = from_compute<T>(sum);
    }
    __syncthreads();
  }
}

template <typename T>
void sum_partial_rows(const compute_t<T>* partial, int64_t G, int64_t C, T* out, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>(ceil_div(C, kWarpSize), 65535);
  sum_partial_rows_kernel<T><<<unsigned(blocks), kSumLanes * kWarpSize, 0, stream>>>(partial, G, C, out);
  COIL_CUDA_CHECK_LAUNCH("sum_partial_rows_kernel");
}

// --- bf16 rows of C = 256 NC: one warp per row -----------------------------------------------------
// Lane l holds the 16-byte chunks j = 0 .. NC-1 at columns (32 j + l) 8 .. +7 (each warp access is
// 512 contiguous bytes); row sums are warp shuffles, no barriers.
constexpr int kRowWarps = 8;  // warps per block

template <int NC>
struct Row8 {
  float v[NC][8];
};

template <int NC>
__device__ __forceinline__ void load_row8(const bf16_t* row, int lane, Row8<NC>& r) {
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const uint4 u = *reinterpret_cast<const uint4*>(row + (j * kWarpSize + lane) * 8);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      r.v[j][2 * i] = f.x;
      r.v[j][2 * i + 1] = f.y;
    }
  }
}

template <int NC>
__device__ __forceinline__ void store_row8(bf16_t* row, int lane, const Row8<NC>& r) {
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(r.v[j][2 * i], r.v[j][2 * i + 1]);
    *reinterpret_cast<uint4*>(row + (j * kWarpSize + lane) * 8) = u;
  }
}

template <int NC>
__global__ void __launch_bounds__(kRowWarps * kWarpSize) rms_norm_warp_kernel(RmsNormParams<bf16_t> p) {
  const int lane = threadIdx.x % kWarpSize;
  Row8<NC> w;
  load_row8<NC>(p.w, lane, w);
  for (int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarpSize; row < p.M;
       row += int64_t(gridDim.x) * kRowWarps) {
    Row8<NC> x;
    load_row8<NC>(p.x + row * p.C, lane, x);
    if (p.res) {  // h = x + res, rounded to bf16 (the values the norm reads), stored
      Row8<NC> r;
      load_row8<NC>(p.res + row * p.C, lane, r);
#pragma unroll
      for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int i = 0; i < 8; ++i) x.v[j][i] = __bfloat162float(float_to_bf16_rne(add_rn(x.v[j][i], r.v[j][i])));
      store_row8<NC>(p.h + row * p.C, lane, x);
    }
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
      for (int i = 0; i < 8; ++i) ss += x.v[j][i] * x.v[j][i];
    ss = warp_allreduce(ss, SumOp());
    const float r = 1.0f / sqrtf(ss / float(p.C) + p.eps);
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
      for (int i = 0; i < 8; ++i) x.v[j][i] = x.v[j][i] * r * w.v[j][i];
    store_row8<NC>(p.y + row * p.C, lane, x);
    if (lane == 0) p.rstd[row] = r;
  }
}

// Rows [r0, r1) of block b (rows_per_block each); warp k takes rows r0 + k, r0 + k + 8, ... and keeps
// its dw sums in registers; the block adds its warps' sums in warp order into its partial row.
template <int NC>
__global__ void __launch_bounds__(kRowWarps * kWarpSize) rms_norm_backward_warp_kernel(RmsNormBwdParams<bf16_t> p) {
  __shared__ float block_dw[NC * 256];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  Row8<NC> w, acc;
  load_row8<NC>(p.w, lane, w);
#pragma unroll
  for (int j = 0; j < NC; ++j)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc.v[j][i] = 0.0f;
  const int64_t r0 = int64_t(blockIdx.x) * p.rows_per_block, r1 = min(p.M, r0 + p.rows_per_block);
  for (int64_t row = r0 + warp; row < r1; row += kRowWarps) {
    Row8<NC> g, x;
    load_row8<NC>(p.dy + row * p.C, lane, g);
    load_row8<NC>(p.x + row * p.C, lane, x);
    const float r = p.rstd[row];
    float dot = 0.0f;
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
      for (int i = 0; i < 8; ++i) dot += g.v[j][i] * w.v[j][i] * x.v[j][i];
    dot = warp_allreduce(dot, SumOp());
    const float k = r * r * dot / float(p.C);
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        acc.v[j][i] += g.v[j][i] * x.v[j][i] * r;
        g.v[j][i] = r * (w.v[j][i] * g.v[j][i] - x.v[j][i] * k);  // dx
      }
    if (p.dh) {  // dx = bf16(norm's dx) + dh, rounded again
      Row8<NC> d;
      load_row8<NC>(p.dh + row * p.C, lane, d);
#pragma unroll
      for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int i = 0; i < 8; ++i) g.v[j][i] = add_rn(__bfloat162float(float_to_bf16_rne(g.v[j][i])), d.v[j][i]);
    }
    store_row8<NC>(p.dx + row * p.C, lane, g);
  }
  for (int k = 0; k < kRowWarps; ++k) {
    if (warp == k)
#pragma unroll
      for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const int c = (j * kWarpSize + lane) * 8 + i;
          block_dw[c] = k == 0 ? acc.v[j][i] : block_dw[c] + acc.v[j][i];
        }
    __syncthreads();
  }
  for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) p.partial[blockIdx.x * p.C + c] = block_dw[c];
}

// The warp-per-row path applies: bf16, C = 256 NC with NC <= 4 (wider rows spill the registers that
// hold them: 2048 needed a 344-byte stack frame), 16-byte aligned rows.
template <typename T>
int warp_row_chunks(int64_t C, std::initializer_list<const Tensor*> ts) {
  if constexpr (!std::is_same_v<T, bf16_t>) {
    return 0;
  } else {
    if (C % 256 != 0 || C / 256 > 4) return 0;
    for (const Tensor* t : ts)
      if (reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 != 0) return 0;
    return int(C / 256);
  }
}

template <template <int> class K, typename... Args>
void launch_chunks(int nc, dim3 grid, cudaStream_t stream, Args... args) {
  const unsigned threads = kRowWarps * kWarpSize;
  switch (nc) {
    case 1: K<1>::launch(grid, threads, stream, args...); break;
    case 2: K<2>::launch(grid, threads, stream, args...); break;
    case 3: K<3>::launch(grid, threads, stream, args...); break;
    default: K<4>::launch(grid, threads, stream, args...); break;
  }
}
template <int NC>
struct FwdWarp {
  static void launch(dim3 g, unsigned t, cudaStream_t s, RmsNormParams<bf16_t> p) {
    rms_norm_warp_kernel<NC><<<g, t, 0, s>>>(p);
  }
};
template <int NC>
struct BwdWarp {
  static void launch(dim3 g, unsigned t, cudaStream_t s, RmsNormBwdParams<bf16_t> p) {
    rms_norm_backward_warp_kernel<NC><<<g, t, 0, s>>>(p);
  }
};

// RMSNorm (res, h null) and AddRMSNorm.
template <typename T>
void rms_norm_run(const Tensor& x, const Tensor* res, const Tensor& w, const Tensor* h, const Tensor& y,
                  const Tensor& rstd, double eps) {
  for (const Tensor* t : {&x, &w, &y}) check_tensor<T>(*t);
  check_tensor<stat_t<T>>(rstd);
  const int64_t C = x.dim() == 0 ? 1 : x.size(-1), M = C ? x.numel() / C : 0;
  COIL_INTERNAL_ASSERT(w.numel() == C && rstd.numel() == M && y.numel() == x.numel() && x.is_contiguous() &&
                           y.is_contiguous() && w.is_contiguous(),
                       "rms_norm x ", x.describe(), ", w ", w.describe(), ", rstd ", rstd.describe());
  for (const Tensor* t : {res, h}) {
    if (!t) continue;
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->numel() == x.numel() && t->is_contiguous(), "add_rms_norm ", t->describe());
  }
  if (M == 0) return;
  LaunchContext ctx(x);
  RmsNormParams<T> p{x.data<T>(), w.data<T>(), y.data<T>(), rstd.data<stat_t<T>>(), M, C,
                     compute_t<T>(eps), res ? res->data<T>() : nullptr, h ? h->data<T>() : nullptr};
  if constexpr (std::is_same_v<T, bf16_t>) {
    const int nc = res ? warp_row_chunks<T>(C, {&x, &w, &y, res, h}) : warp_row_chunks<T>(C, {&x, &w, &y});
    if (nc) {
      const int64_t blocks = std::min<int64_t>(ceil_div(M, kRowWarps), int64_t(1) << 20);
      launch_chunks<FwdWarp>(nc, dim3(unsigned(blocks)), ctx.stream, p);
      COIL_CUDA_CHECK_LAUNCH("rms_norm_warp_kernel");
      return;
    }
  }
  rms_norm_kernel<T><<<row_grid(M), row_block_threads(C), 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("rms_norm_kernel");
}

template <typename T>
void rms_norm_launch(const KernelArgs& a) {
  check_arity(a, 2, 2);
  rms_norm_run<T>(a.in[0], nullptr, a.in[1], nullptr, a.out[0], a.out[1], a.attrs.eps);
}

template <typename T>
void add_rms_norm_launch(const KernelArgs& a) {
  check_arity(a, 3, 3);
  rms_norm_run<T>(a.in[0], &a.in[1], a.in[2], &a.out[0], a.out[1], a.out[2], a.attrs.eps);
}

// RMSNormBackward (dh null) and AddRMSNormBackward (x is h).
template <typename T>
void rms_norm_backward_run(const Tensor& dy, const Tensor* dh, const Tensor& x, const Tensor& w,
                           const Tensor& rstd, const Tensor& dx, const Tensor& dw) {
  using A = compute_t<T>;
  if (dh) {
    check_tensor<T>(*dh);
    COIL_INTERNAL_ASSERT(dh->is_contiguous() && dh->numel() == x.numel(), "add_rms_norm_backward dh ",
                         dh->describe());
  }
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
                        static_cast<A*>(partial.data_ptr()), M, C, rows_per_block, smem,
                        dh ? dh->data<T>() : nullptr};
  const int nc = dh ? warp_row_chunks<T>(C, {&dy, &x, &w, &dx, dh}) : warp_row_chunks<T>(C, {&dy, &x, &w, &dx});
  if constexpr (std::is_same_v<T, bf16_t>) {
    if (nc) launch_chunks<BwdWarp>(nc, dim3(unsigned(G)), ctx.stream, p);
  }
  if (!nc)
    rms_norm_backward_kernel<T><<<unsigned(G), row_block_threads(C), smem ? row_bytes : 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("rms_norm_backward_kernel");
  sum_partial_rows<T>(p.partial, G, C, dw.data<T>(), ctx.stream);
}

template <typename T>
void rms_norm_backward_launch(const KernelArgs& a) {
  check_arity(a, 4, 2);
  rms_norm_backward_run<T>(a.in[0], nullptr, a.in[1], a.in[2], a.in[3], a.out[0], a.out[1]);
}

template <typename T>
void add_rms_norm_backward_launch(const KernelArgs& a) {
  check_arity(a, 5, 2);
  rms_norm_backward_run<T>(a.in[0], &a.in[1], a.in[2], a.in[3], a.in[4], a.out[0], a.out[1]);
}

// --- Softmax over the last dim: x (M, n) -> y (M, n) ---------------------------------------------------
// A row's max and sum of exp(x - max), reduced over the block (every thread gets both).
template <typename T>
__device__ void softmax_row_stats(const T* xr, int64_t n, compute_t<T>& mx, compute_t<T>& total) {
  using A = compute_t<T>;
  mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = NanMaxOp()(mx, to_compute(xr[j]));
  mx = block_allreduce(mx, NanMaxOp(), A(-INFINITY));
  total = A(0);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) total += m_exp(to_compute(xr[j]) - mx);
  total = block_allreduce(total, SumOp(), A(0));
}

template <typename T>
__global__ void softmax_kernel(const T* x, T* y, int64_t M, int64_t n) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < M; row += gridDim.x) {
    const T* xr = x + row * n;
    A mx, total;
    softmax_row_stats(xr, n, mx, total);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      y[row * n + j] = from_compute<T>(m_exp(to_compute(xr[j]) - mx) / total);
  }
}

// SoftmaxBackward: dy (M, n), x (M, n) -> dx = y * (dy - sum_j dy_j y_j), y = softmax(x) recomputed in
// the compute precision (a bf16 y read back would leave dx only y's rounding error where dy - sum
// dy y cancels).
template <typename T>
__global__ void softmax_backward_kernel(const T* dy, const T* x, T* dx, int64_t M, int64_t n) {
  using A = compute_t<T>;
  for (int64_t row = blockIdx.x; row < M; row += gridDim.x) {
    const T* xr = x + row * n;
    A mx, total;
    softmax_row_stats(xr, n, mx, total);
    A dot = A(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      dot += to_compute(dy[row * n + j]) * (m_exp(to_compute(xr[j]) - mx) / total);
    dot = block_allreduce(dot, SumOp(), A(0));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t k = row * n + j;
      dx[k] = from_compute<T>(m_exp(to_compute(xr[j]) - mx) / total * (to_compute(dy[k]) - dot));
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
  const Tensor& x = a.in[1];
  const Tensor& dx = a.out[0];
  for (const Tensor* t : {&dy, &x, &dx}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous() && t->numel() == x.numel(), "softmax_backward ", t->describe());
  }
  const int64_t n = x.dim() == 0 ? 1 : x.size(-1), M = n ? x.numel() / n : 0;
  if (M == 0) return;
  LaunchContext ctx(x);
  softmax_backward_kernel<T><<<row_grid(M), row_block_threads(n), 0, ctx.stream>>>(dy.data<T>(), x.data<T>(),
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
COIL_CUDA_FLOAT_KERNELS(AddRMSNorm, add_rms_norm_launch);
COIL_CUDA_FLOAT_KERNELS(AddRMSNormBackward, add_rms_norm_backward_launch);
COIL_CUDA_FLOAT_KERNELS(Softmax, softmax_launch);
COIL_CUDA_FLOAT_KERNELS(SoftmaxBackward, softmax_backward_launch);
COIL_CUDA_FLOAT_KERNELS(SwiGLU, swiglu_launch);
COIL_CUDA_FLOAT_KERNELS(SwiGLUBackward, swiglu_backward_launch);

}  // namespace coil::cuda
