// Causal depthwise conv1d and its backward on CUDA (kernels/cpu/conv.cpp's contracts), any width W:
// x, y (B, T, C), w (C, W), b (C); tap k of channel c reads time t - (W-1) + k, zero before t = 0.
// y: one thread per element, channels innermost (coalesced), sums over the W taps in the compute type.
// Backward for W <= 4 (the models' widths) is one pass (conv1d_backward_run_kernel): a thread owns one
// channel of a run of kRunRows times of one sequence and walks it in order, keeping the x and dy
// windows in registers, so dy and x are each read once from memory; it writes dx and its run's
// dw / db sums into a partial (G, W + 1, C) buffer, and a second kernel sums the G runs in order
// (deterministic: the runs depend only on the shape). The earlier form (a dx kernel plus a dw kernel
// that re-read x for every tap and divided per element) took ~0.6 ms per (8, 2048, 3072) call on an
// H100, several times its memory traffic; it stays for W > 4 (and, for timing, under
// COIL_CONV1D_BWD_TWO_PASS=1).
#include <cstdlib>
#include <string>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct ConvShape {
  int64_t B, T, C, W;
};

// --- Conv1d: y[b, t, c] = bias[c] + sum_k w[c, k] x[b, t - (W-1) + k, c] ----------------------------------
// I: the index type. 64-bit division costs tens of instructions on the GPU, so problems below 2^31
// elements (every training shape) index in 32 bits; the launchers pick.
template <typename T, typename I>
__global__ void conv1d_kernel(const T* x, const T* w, const T* bias, T* y, ConvShape s64) {
  using A = compute_t<T>;
  const I C = I(s64.C), Tn = I(s64.T), W = I(s64.W);
  const I total = I(s64.B) * Tn * C;
  for (I k = I(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += I(gridDim.x) * blockDim.x) {
    const I row = k / C, c = k - row * C, t = row % Tn;
    A acc = to_compute(bias[c]);
    for (I tap = 0; tap < W; ++tap) {
      const I back = W - 1 - tap;  // x[row - back] when t >= back
      if (t >= back) acc += to_compute(w[c * W + tap]) * to_compute(x[k - back * C]);
    }
    y[k] = from_compute<T>(acc);
  }
}

// --- Conv1dBackward dx: dx[b, u, c] = sum_k w[c, k] dy[b, u + (W-1) - k, c] (terms past T dropped) ------
template <typename T, typename I>
__global__ void conv1d_dx_kernel(const T* dy, const T* w, T* dx, ConvShape s64) {
  using A = compute_t<T>;
  const I C = I(s64.C), Tn = I(s64.T), W = I(s64.W);
  const I total = I(s64.B) * Tn * C;
  for (I k = I(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += I(gridDim.x) * blockDim.x) {
    const I row = k / C, c = k - row * C, u = row % Tn;
    A acc = A(0);
    for (I tap = 0; tap < W; ++tap) {
      const I ahead = W - 1 - tap;  // dy[row + ahead] when u + ahead < T
      if (u + ahead < Tn) acc += to_compute(w[c * W + tap]) * to_compute(dy[k + ahead * C]);
    }
    dx[k] = from_compute<T>(acc);
  }
}

// Whether a (B, T, C) problem indexes in 32 bits (with room for the grid-stride step).
bool fits_32(int64_t total) { return total < (int64_t(1) << 31) - (int64_t(1) << 26); }

// --- dw[c, k] = sum_{b,t} dy[b,t,c] x[b,t-(W-1)+k,c], db[c] = sum_{b,t} dy[b,t,c] ------------------------
constexpr int kLanes = 8;              // block lanes along the rows
constexpr int kTapTile = 4;            // taps accumulated in registers per sweep over a run
constexpr int64_t kMinRunRows = 64;    // fewest rows per run
constexpr int64_t kMaxRuns = 512;      // G at most

template <typename T>
struct ConvGradParams {
  const T* dy;
  const T* x;
  compute_t<T>* partial;  // (G, C, W + 1): dw taps then db
  ConvShape s;
  int64_t run_rows, G, tiles;
};

template <typename T>
__global__ void conv1d_dw_partial_kernel(ConvGradParams<T> p) {
  using A = compute_t<T>;
  __shared__ A lanes[kLanes][kWarpSize];
  const ConvShape s = p.s;
  const int tx = threadIdx.x % kWarpSize, ty = threadIdx.x / kWarpSize;
  const int64_t rows = s.B * s.T;
  for (int64_t blk = blockIdx.x; blk < p.G * p.tiles; blk += gridDim.x) {
    const int64_t g = blk / p.tiles, c = (blk % p.tiles) * kWarpSize + tx;
    const int64_t r0 = g * p.run_rows, r1 = min(rows, r0 + p.run_rows);
    // Sweep k0 covers taps [k0, k0 + kTapTile); slot W (db) rides along with the first sweep.
    for (int64_t k0 = 0; k0 < s.W; k0 += kTapTile) {
      A acc[kTapTile + 1] = {};
      if (c < s.C) {
        for (int64_t r = r0 + ty; r < r1; r += kLanes) {
          const int64_t t = r % s.T;
          const A g_dy = to_compute(p.dy[r * s.C + c]);
          if (k0 == 0) acc[kTapTile] += g_dy;
#pragma unroll
          for (int j = 0; j < kTapTile; ++j) {
            const int64_t tap = k0 + j, src = t - (s.W - 1) + tap;
            if (tap < s.W && src >= 0) acc[j] += g_dy * to_compute(p.x[(r - t + src) * s.C + c]);
          }
        }
      }
#pragma unroll
      for (int j = 0; j <= kTapTile; ++j) {
        // Uniform across the block (depends on k0 and j only), so the barriers below stay matched.
        if (j < kTapTile ? k0 + j >= s.W : k0 != 0) continue;
        const int64_t slot = j < kTapTile ? k0 + j : s.W;
        lanes[ty][tx] = acc[j];
        __syncthreads();
        if (ty == 0 && c < s.C) {
          A sum = lanes[0][tx];
          for (int l = 1; l < kLanes; ++l) sum += lanes[l][tx];
          p.partial[(g * s.C + c) * (s.W + 1) + slot] = sum;
        }
        __syncthreads();
      }
    }
  }
}

template <typename T>
__global__ void conv1d_dw_final_kernel(const compute_t<T>* partial, int64_t G, ConvShape s, T* dw, T* db) {
  const int64_t slots = s.W + 1;
  for (int64_t k = grid_index(); k < s.C * slots; k += grid_stride()) {
    const int64_t c = k / slots, slot = k % slots;
    compute_t<T> acc = compute_t<T>(0);
    for (int64_t g = 0; g < G; ++g) acc += partial[(g * s.C + c) * slots + slot];
    if (slot < s.W) dw[c * s.W + slot] = from_compute<T>(acc);
    else db[c] = from_compute<T>(acc);
  }
}

// --- One-pass backward for W = KW <= 4 --------------------------------------------------------------
constexpr int64_t kRunRows = 128;  // times per run
constexpr int kStep = 8;           // times loaded per step (memory-level parallelism)

template <typename T>
struct ConvRunParams {
  const T* __restrict__ dy;
  const T* __restrict__ x;
  const T* __restrict__ w;
  T* __restrict__ dx;
  compute_t<T>* __restrict__ partial;  // (G, W + 1, C): dw taps then db
  ConvShape s;
  int64_t runs_per_seq;  // G = B * runs_per_seq
};

// Grid (ceil(C / blockDim.x), G); run g = b * runs_per_seq + j covers times [j kRunRows, +kRunRows).
template <typename T, int KW>
__global__ void __launch_bounds__(kThreads) conv1d_backward_run_kernel(ConvRunParams<T> p) {
  using A = compute_t<T>;
  const ConvShape s = p.s;
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= s.C) return;
  const int64_t g = blockIdx.y, b = g / p.runs_per_seq, t0 = (g % p.runs_per_seq) * kRunRows;
  const int64_t t1 = min(s.T, t0 + kRunRows);
  const T* dyc = p.dy + b * s.T * s.C + c;  // channel c of sequence b; time t at t * C
  const T* xc = p.x + b * s.T * s.C + c;
  T* dxc = p.dx + b * s.T * s.C + c;
  A w[KW], dw[KW], db = A(0);
#pragma unroll
  for (int k = 0; k < KW; ++k) {
    w[k] = to_compute(p.w[c * KW + k]);
    dw[k] = A(0);
  }
  // xs[i] = x[u0 - (KW-1) + i], dys[i] = dy[u0 + i] for the step starting at u0 (zero outside [0, T)).
  A xs[kStep + KW - 1], dys[kStep + KW - 1];
#pragma unroll
  for (int i = 0; i < KW - 1; ++i) {
    const int64_t tx = t0 - (KW - 1) + i, ty = t0 + i;
    xs[i] = tx >= 0 ? to_compute(xc[tx * s.C]) : A(0);
    dys[i] = ty < s.T ? to_compute(dyc[ty * s.C]) : A(0);
  }
  for (int64_t u0 = t0; u0 < t1; u0 += kStep) {
#pragma unroll
    for (int i = 0; i < kStep; ++i) {
      const int64_t tx = u0 + i, ty = u0 + (KW - 1) + i;
      xs[KW - 1 + i] = tx < s.T ? to_compute(xc[tx * s.C]) : A(0);
      dys[KW - 1 + i] = ty < s.T ? to_compute(dyc[ty * s.C]) : A(0);
    }
#pragma unroll
    for (int i = 0; i < kStep; ++i) {
      const int64_t u = u0 + i;
      if (u < t1) {
        const A gy = dys[i];  // dy[u]
        db += gy;
        A acc = A(0);
#pragma unroll
        for (int k = 0; k < KW; ++k) {
          dw[k] += gy * xs[i + k];              // x[u - (KW-1) + k]
          acc += w[k] * dys[i + KW - 1 - k];  // dy[u + (KW-1) - k]
        }
        dxc[u * s.C] = from_compute<T>(acc);
      }
    }
#pragma unroll
    for (int i = 0; i < KW - 1; ++i) {  // carry the windows' last KW - 1 values
      xs[i] = xs[kStep + i];
      dys[i] = dys[kStep + i];
    }
  }
  A* part = p.partial + g * (KW + 1) * s.C + c;
#pragma unroll
  for (int k = 0; k < KW; ++k) part[k * s.C] = dw[k];
  part[KW * s.C] = db;
}

// dw[c, k] (slot k < W) and db[c] (slot W) = sum over runs g in order of partial[g, slot, c].
template <typename T>
__global__ void conv1d_run_final_kernel(const compute_t<T>* partial, int64_t G, ConvShape s, T* dw, T* db) {
  const int64_t slots = s.W + 1;
  for (int64_t k = grid_index(); k < s.C * slots; k += grid_stride()) {
    const int64_t slot = k / s.C, c = k % s.C;
    compute_t<T> acc = compute_t<T>(0);
    for (int64_t g = 0; g < G; ++g) acc += partial[(g * slots + slot) * s.C + c];
    if (slot < s.W) dw[c * s.W + slot] = from_compute<T>(acc);
    else db[c] = from_compute<T>(acc);
  }
}

template <typename T>
void conv1d_backward_runs(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                          const Tensor& db, const ConvShape& s, cudaStream_t stream) {
  using A = compute_t<T>;
  const int64_t runs_per_seq = ceil_div(s.T, kRunRows), G = s.B * runs_per_seq;
  Tensor partial = Tensor::empty({G * (s.W + 1) * s.C}, dtype_of<A>(), x.device());  // (G, W + 1, C)
  ConvRunParams<T> p{dy.data<T>(), x.data<T>(), w.data<T>(), dx.data<T>(), static_cast<A*>(partial.data_ptr()),
                     s, runs_per_seq};
  const dim3 grid(unsigned(ceil_div(s.C, kThreads)), unsigned(G));
  switch (s.W) {
    case 1: conv1d_backward_run_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p); break;
    case 2: conv1d_backward_run_kernel<T, 2><<<grid, kThreads, 0, stream>>>(p); break;
    case 3: conv1d_backward_run_kernel<T, 3><<<grid, kThreads, 0, stream>>>(p); break;
    default: conv1d_backward_run_kernel<T, 4><<<grid, kThreads, 0, stream>>>(p); break;
  }
  COIL_CUDA_CHECK_LAUNCH("conv1d_backward_run_kernel");
  conv1d_run_final_kernel<T><<<grid_for(s.C * (s.W + 1)), kThreads, 0, stream>>>(p.partial, G, s, dw.data<T>(),
                                                                                 db.data<T>());
  COIL_CUDA_CHECK_LAUNCH("conv1d_run_final_kernel");
}

ConvShape conv_shape(const Tensor& x, const Tensor& w) {
  COIL_INTERNAL_ASSERT(x.dim() == 3 && w.dim() == 2 && w.size(0) == x.size(2) && w.size(1) >= 1,
                       "conv1d x ", x.describe(), ", w ", w.describe());
  return {x.size(0), x.size(1), x.size(2), w.size(1)};
}

template <typename T>
void conv1d_launch(const KernelArgs& a) {
  check_arity(a, 3, 1);
  for (const Tensor* t : {&a.in[0], &a.in[1], &a.in[2], &a.out[0]}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous(), "conv1d ", t->describe());
  }
  const ConvShape s = conv_shape(a.in[0], a.in[1]);
  COIL_INTERNAL_ASSERT(a.in[2].numel() == s.C && a.out[0].shape() == a.in[0].shape(), "conv1d bias ",
                       a.in[2].describe(), " y ", a.out[0].describe());
  const int64_t total = s.B * s.T * s.C;
  if (total == 0) return;
  LaunchContext ctx(a.in[0]);
  auto kernel = fits_32(total) ? conv1d_kernel<T, uint32_t> : conv1d_kernel<T, int64_t>;
  kernel<<<grid_for(total), kThreads, 0, ctx.stream>>>(a.in[0].data<T>(), a.in[1].data<T>(),
                                                       a.in[2].data<T>(), a.out[0].data<T>(), s);
  COIL_CUDA_CHECK_LAUNCH("conv1d_kernel");
}

template <typename T>
void conv1d_backward_launch(const KernelArgs& a) {
  using A = compute_t<T>;
  check_arity(a, 3, 3);
  for (const Tensor* t : {&a.in[0], &a.in[1], &a.in[2], &a.out[0], &a.out[1], &a.out[2]}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous(), "conv1d_backward ", t->describe());
  }
  const Tensor& dy = a.in[0];
  const Tensor& x = a.in[1];
  const Tensor& w = a.in[2];
  const Tensor& dx = a.out[0];
  const Tensor& dw = a.out[1];
  const Tensor& db = a.out[2];
  const ConvShape s = conv_shape(x, w);
  COIL_INTERNAL_ASSERT(dy.shape() == x.shape() && dx.shape() == x.shape() && dw.shape() == w.shape() &&
                           db.numel() == s.C,
                       "conv1d_backward dy ", dy.describe(), ", dx ", dx.describe(), ", dw ", dw.describe());
  if (s.C == 0) return;
  LaunchContext ctx(x);
  const int64_t rows = s.B * s.T;
  if (rows == 0) {  // empty sums
    COIL_CUDA_CHECK(cudaMemsetAsync(dw.data_ptr(), 0, size_t(dw.numel()) * sizeof(T), ctx.stream));
    COIL_CUDA_CHECK(cudaMemsetAsync(db.data_ptr(), 0, size_t(db.numel()) * sizeof(T), ctx.stream));
    return;
  }
  // One pass for the models' widths; G = B * ceil(T / kRunRows) must fit the grid's y dimension.
  // COIL_CONV1D_BWD_TWO_PASS=1 keeps the earlier form (bench/step_ops_bench.cpp times both in one run).
  const char* two_pass = std::getenv("COIL_CONV1D_BWD_TWO_PASS");
  const bool one_pass = !(two_pass && *two_pass && std::string(two_pass) != "0");
  if (one_pass && s.W <= 4 && s.T > 0 && s.B * ceil_div(s.T, kRunRows) <= 65535) {
    conv1d_backward_runs<T>(dy, x, w, dx, dw, db, s, ctx.stream);
    return;
  }
  auto dx_kernel = fits_32(rows * s.C) ? conv1d_dx_kernel<T, uint32_t> : conv1d_dx_kernel<T, int64_t>;
  dx_kernel<<<grid_for(rows * s.C), kThreads, 0, ctx.stream>>>(dy.data<T>(), w.data<T>(), dx.data<T>(), s);
  COIL_CUDA_CHECK_LAUNCH("conv1d_dx_kernel");
  const int64_t run_rows = std::max(kMinRunRows, ceil_div(rows, kMaxRuns));
  const int64_t G = ceil_div(rows, run_rows), tiles = ceil_div(s.C, kWarpSize);
  Tensor partial = Tensor::empty({G * s.C * (s.W + 1)}, dtype_of<A>(), x.device());  // (G, C, W + 1)
  ConvGradParams<T> p{dy.data<T>(), x.data<T>(), static_cast<A*>(partial.data_ptr()), s, run_rows, G, tiles};
  conv1d_dw_partial_kernel<T><<<row_grid(G * tiles), kWarpSize * kLanes, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("conv1d_dw_partial_kernel");
  conv1d_dw_final_kernel<T><<<grid_for(s.C * (s.W + 1)), kThreads, 0, ctx.stream>>>(p.partial, G, s,
                                                                                    dw.data<T>(), db.data<T>());
  COIL_CUDA_CHECK_LAUNCH("conv1d_dw_final_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Conv1d, conv1d_launch);
COIL_CUDA_FLOAT_KERNELS(Conv1dBackward, conv1d_backward_launch);

}  // namespace coil::cuda
