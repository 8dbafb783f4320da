// Reductions over one dim on CUDA (kernels/cpu/reduce.cpp's contracts): Sum, Mean, Max, MaxBackward
// and Cumsum (forward and reverse). The contiguous input is seen as (outer, n, inner) around
// attrs.dim. Everything is deterministic: the split of n into chunks and every tree depend only on the
// shape, never on the GPU or on timing, and no float is ever added atomically. Sums accumulate in fp32
// for f32 / bf16 (one rounding to bf16 at the end) and in fp64 for f64.
//  - inner == 1 (reducing rows): one block per (row, chunk of n), block tree; a second pass combines
//    the chunks of a row in order when a row is split.
//  - inner > 1: 32 x 8 thread blocks, 32 consecutive inner columns (coalesced) by 8 lanes along n;
//    the 8 lanes combine in order, then chunks in order in a second pass.
//  - Cumsum: a chunked scan; chunk totals (pass 1), an exclusive scan over chunks per column (pass
//    2), then each chunk scans sequentially from its offset (pass 3).
#include <cmath>
#include <limits>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

struct DimView {
  int64_t outer = 1, n = 1, inner = 1;
};
DimView dim_view(const Shape& shape, int64_t dim) {
  DimView v;
  if (shape.empty()) return v;
  COIL_INTERNAL_ASSERT(dim >= 0 && dim < int64_t(shape.size()), "dim ", dim, " for ", shape_str(shape));
  for (int64_t d = 0; d < dim; ++d) v.outer *= shape[d];
  v.n = shape[dim];
  for (int64_t d = dim + 1; d < int64_t(shape.size()); ++d) v.inner *= shape[d];
  return v;
}

// Blocks the split heuristics aim for: several waves on a 132-SM H100 (a constant, so the split,
// and with it the result's bits, never depends on the GPU).
constexpr int64_t kTargetBlocks = 1024;
// Column path: lanes along n per block, and the fewest rows of n a chunk gets.
constexpr int kColLanes = 8;
constexpr int64_t kColMinChunk = 256;
// Row path: rows are split only when longer than this, into chunks of at least kRowMinChunk.
constexpr int64_t kRowSplitAbove = 16384;
constexpr int64_t kRowMinChunk = 4096;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// --- reduction ops: Acc identity(), Acc load(flat index, j along n, out index), combine, store -------
template <typename T, bool kMean>
struct SumRed {
  using Acc = compute_t<T>;
  const T* x;
  T* y;
  int64_t n;
  __device__ Acc identity() const { return Acc(0); }
  __device__ Acc load(int64_t idx, int64_t, int64_t) const { return to_compute(x[idx]); }
  __device__ Acc combine(Acc a, Acc b) const { return a + b; }
  __device__ void store(int64_t out, Acc acc) const { y[out] = from_compute<T>(kMean ? acc / Acc(n) : acc); }
};

template <typename T>
struct MaxRed {
  using Acc = compute_t<T>;
  const T* x;
  T* y;
  __device__ Acc identity() const { return -std::numeric_limits<Acc>::infinity(); }
  __device__ Acc load(int64_t idx, int64_t, int64_t) const { return to_compute(x[idx]); }
  __device__ Acc combine(Acc a, Acc b) const { return NanMaxOp()(a, b); }
  __device__ void store(int64_t out, Acc acc) const { y[out] = from_compute<T>(acc); }
};

// The first j along n where x equals the max y (NaN matches NaN): min over hits, n when none.
template <typename T>
struct FirstHitRed {
  using Acc = int64_t;
  const T* x;
  const T* y;
  int64_t* first;
  int64_t n;
  __device__ Acc identity() const { return n; }
  __device__ Acc load(int64_t idx, int64_t j, int64_t out) const {
    const auto v = to_compute(x[idx]), m = to_compute(y[out]);
    return (v == m || (v != v && m != m)) ? j : n;
  }
  __device__ Acc combine(Acc a, Acc b) const { return b < a ? b : a; }
  __device__ void store(int64_t out, Acc acc) const { first[out] = acc; }
};

template <typename Red>
struct CombineOp {
  Red red;
  __device__ typename Red::Acc operator()(typename Red::Acc a, typename Red::Acc b) const {
    return red.combine(a, b);
  }
};

// Rows: block b of (rows * splits) reduces chunk b % splits of row b / splits.
template <typename Red>
__global__ void row_reduce_kernel(Red red, int64_t rows, int64_t n, int64_t splits, int64_t chunk,
                                  typename Red::Acc* partial) {
  using Acc = typename Red::Acc;
  for (int64_t blk = blockIdx.x; blk < rows * splits; blk += gridDim.x) {
    const int64_t r = blk / splits, s = blk % splits;
    const int64_t j0 = s * chunk, j1 = min(n, j0 + chunk);
    Acc acc = red.identity();
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) acc = red.combine(acc, red.load(r * n + j, j, r));
    acc = block_allreduce(acc, CombineOp<Red>{red}, red.identity());
    if (threadIdx.x == 0) {
      if (splits == 1) red.store(r, acc);
      else partial[blk] = acc;
    }
  }
}

// Columns: block b of (outer * tiles * splits) covers 32 columns of one (outer, chunk of n).
template <typename Red>
__global__ void col_reduce_kernel(Red red, int64_t outer, int64_t n, int64_t inner, int64_t tiles,
                                  int64_t splits, int64_t chunk, typename Red::Acc* partial) {
  using Acc = typename Red::Acc;
  __shared__ Acc lanes[kColLanes][kWarpSize];
  const int tx = threadIdx.x % kWarpSize, ty = threadIdx.x / kWarpSize;
  for (int64_t blk = blockIdx.x; blk < outer * tiles * splits; blk += gridDim.x) {
    const int64_t s = blk % splits, tile = (blk / splits) % tiles, o = blk / (splits * tiles);
    const int64_t i = tile * kWarpSize + tx;
    const int64_t j0 = s * chunk, j1 = min(n, j0 + chunk);
    Acc acc = red.identity();
    if (i < inner)
      for (int64_t j = j0 + ty; j < j1; j += kColLanes)
        acc = red.combine(acc, red.load((o * n + j) * inner + i, j, o * inner + i));
    lanes[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && i < inner) {
      for (int l = 1; l < kColLanes; ++l) acc = red.combine(acc, lanes[l][tx]);
      if (splits == 1) red.store(o * inner + i, acc);
      else partial[(o * splits + s) * inner + i] = acc;
    }
    __syncthreads();
  }
}

// Second pass: out (o, i) combines partial[(o, s, i)] over s in order.
template <typename Red>
__global__ void combine_splits_kernel(Red red, const typename Red::Acc* partial, int64_t outer, int64_t splits,
                                      int64_t inner) {
  for (int64_t k = grid_index(); k < outer * inner; k += grid_stride()) {
    const int64_t o = k / inner, i = k % inner;
    typename Red::Acc acc = partial[o * splits * inner + i];
    for (int64_t s = 1; s < splits; ++s) acc = red.combine(acc, partial[(o * splits + s) * inner + i]);
    red.store(k, acc);
  }
}

// Runs `red` over the (outer, n, inner) view; red.store(o * inner + i, value) receives each result.
template <typename Red>
void reduce_dim(const Red& red, const DimView& v, const Tensor& like, cudaStream_t stream) {
  using Acc = typename Red::Acc;
  if (v.outer * v.inner == 0) return;
  const DType acc_dtype = std::is_same_v<Acc, int64_t> ? DType::I64 : dtype_of<Acc>();
  if (v.inner == 1) {
    int64_t splits = 1;
    if (v.n > kRowSplitAbove)
      splits = std::min(ceil_div(v.n, kRowMinChunk), std::max<int64_t>(1, kTargetBlocks / v.outer));
    const int64_t chunk = std::max<int64_t>(1, ceil_div(v.n, splits));
    Tensor partial = splits > 1 ? Tensor::empty({v.outer * splits}, acc_dtype, like.device()) : Tensor();
    Acc* pp = splits > 1 ? static_cast<Acc*>(partial.data_ptr()) : nullptr;
    row_reduce_kernel<Red><<<row_grid(v.outer * splits), row_block_threads(chunk), 0, stream>>>(
        red, v.outer, v.n, splits, chunk, pp);
    COIL_CUDA_CHECK_LAUNCH("row_reduce_kernel");
    if (splits > 1) {
      combine_splits_kernel<Red><<<grid_for(v.outer), kThreads, 0, stream>>>(red, pp, v.outer, splits, 1);
      COIL_CUDA_CHECK_LAUNCH("combine_splits_kernel");
    }
    return;
  }
  const int64_t tiles = ceil_div(v.inner, kWarpSize);
  int64_t splits = 1;
  if (v.n > kColMinChunk)
    splits = std::min(ceil_div(v.n, kColMinChunk), std::max<int64_t>(1, kTargetBlocks / (v.outer * tiles)));
  const int64_t chunk = std::max<int64_t>(1, ceil_div(v.n, splits));
  Tensor partial = splits > 1 ? Tensor::empty({v.outer * splits * v.inner}, acc_dtype, like.device()) : Tensor();
  Acc* pp = splits > 1 ? static_cast<Acc*>(partial.data_ptr()) : nullptr;
  col_reduce_kernel<Red><<<row_grid(v.outer * tiles * splits), kWarpSize * kColLanes, 0, stream>>>(
      red, v.outer, v.n, v.inner, tiles, splits, chunk, pp);
  COIL_CUDA_CHECK_LAUNCH("col_reduce_kernel");
  if (splits > 1) {
    combine_splits_kernel<Red><<<grid_for(v.outer * v.inner), kThreads, 0, stream>>>(red, pp, v.outer, splits,
                                                                                    v.inner);
    COIL_CUDA_CHECK_LAUNCH("combine_splits_kernel");
  }
}

// --- Sum / Mean / Max: x (outer, n, inner) -> y (outer, 1, inner) --------------------------------------
template <typename T, template <typename> class RedOf>
void reduce_launch(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  const Tensor& y = a.out[0];
  check_tensor<T>(x);
  check_tensor<T>(y);
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  COIL_INTERNAL_ASSERT(x.is_contiguous() && y.is_contiguous() && y.numel() == v.outer * v.inner,
                       op_name(a.op), " ", x.describe(), " -> ", y.describe());
  LaunchContext ctx(x);
  reduce_dim(RedOf<T>::make(x, y, v), v, x, ctx.stream);
}

template <typename T>
struct SumOf {
  static SumRed<T, false> make(const Tensor& x, const Tensor& y, const DimView& v) {
    return {x.data<T>(), y.data<T>(), v.n};
  }
};
template <typename T>
struct MeanOf {
  static SumRed<T, true> make(const Tensor& x, const Tensor& y, const DimView& v) {
    return {x.data<T>(), y.data<T>(), v.n};
  }
};
template <typename T>
struct MaxOf {
  static MaxRed<T> make(const Tensor& x, const Tensor& y, const DimView& v) {
    COIL_INTERNAL_ASSERT(v.n > 0, "max over an empty dim of ", x.describe());
    return {x.data<T>(), y.data<T>()};
  }
};

template <typename T>
void sum_launch(const KernelArgs& a) { reduce_launch<T, SumOf>(a); }
template <typename T>
void mean_launch(const KernelArgs& a) { reduce_launch<T, MeanOf>(a); }
template <typename T>
void max_launch(const KernelArgs& a) { reduce_launch<T, MaxOf>(a); }

// --- MaxBackward: dy (outer, 1, inner), x (outer, n, inner), y (outer, 1, inner) -> dx ------------------
// Pass 1 finds, per (o, i), the first j where x == y (a deterministic min-reduction of indices);
// pass 2 writes dy there and 0 elsewhere.
template <typename T>
__global__ void max_scatter_kernel(const T* dy, const int64_t* first, T* dx, int64_t n, int64_t inner,
                                   int64_t total) {
  for (int64_t k = grid_index(); k < total; k += grid_stride()) {
    const int64_t i = k % inner, j = (k / inner) % n, o = k / (inner * n);
    const int64_t out = o * inner + i;
    dx[k] = first[out] == j ? dy[out] : from_compute<T>(compute_t<T>(0));
  }
}

template <typename T>
void max_backward_launch(const KernelArgs& a) {
  check_arity(a, 3, 1);
  const Tensor& dy = a.in[0];
  const Tensor& x = a.in[1];
  const Tensor& y = a.in[2];
  const Tensor& dx = a.out[0];
  for (const Tensor* t : {&dy, &x, &y, &dx}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous(), "max_backward ", t->describe());
  }
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  COIL_INTERNAL_ASSERT(dy.numel() == v.outer * v.inner && y.numel() == v.outer * v.inner &&
                           dx.numel() == x.numel(),
                       "max_backward dy ", dy.describe(), " x ", x.describe(), " y ", y.describe());
  if (x.numel() == 0) return;
  LaunchContext ctx(x);
  Tensor first = Tensor::empty({v.outer * v.inner}, DType::I64, x.device());  // (outer, inner)
  reduce_dim(FirstHitRed<T>{x.data<T>(), y.data<T>(), first.data<int64_t>(), v.n}, v, x, ctx.stream);
  max_scatter_kernel<T><<<grid_for(x.numel()), kThreads, 0, ctx.stream>>>(
      dy.data<T>(), first.data<int64_t>(), dx.data<T>(), v.n, v.inner, x.numel());
  COIL_CUDA_CHECK_LAUNCH("max_scatter_kernel");
}

// --- Cumsum: x (outer, n, inner) -> y (outer, n, inner), prefix sums (suffix sums when reverse) --------
constexpr int64_t kScanChunk = 256;  // elements along n that one thread scans sequentially

template <typename T>
struct ScanParams {
  const T* x;
  T* y;
  compute_t<T>* sums;  // (outer, chunks, inner): chunk totals, then exclusive offsets; null: 1 chunk
  int64_t outer, n, inner, chunks;
  bool reverse;
};

// Pass 1: total of chunk c for each (o, c, i).
template <typename T>
__global__ void scan_totals_kernel(ScanParams<T> p) {
  using A = compute_t<T>;
  const int64_t total = p.outer * p.chunks * p.inner;
  for (int64_t k = grid_index(); k < total; k += grid_stride()) {
    const int64_t i = k % p.inner, c = (k / p.inner) % p.chunks, o = k / (p.inner * p.chunks);
    const int64_t j0 = c * kScanChunk, j1 = min(p.n, j0 + kScanChunk);
    A acc = A(0);
    for (int64_t j = j0; j < j1; ++j) acc += to_compute(p.x[(o * p.n + j) * p.inner + i]);
    p.sums[k] = acc;
  }
}

// Pass 2: per (o, i), chunk totals -> exclusive offsets in scan order.
template <typename T>
__global__ void scan_offsets_kernel(ScanParams<T> p) {
  using A = compute_t<T>;
  for (int64_t k = grid_index(); k < p.outer * p.inner; k += grid_stride()) {
    const int64_t o = k / p.inner, i = k % p.inner;
    A run = A(0);
    for (int64_t step = 0; step < p.chunks; ++step) {
      const int64_t c = p.reverse ? p.chunks - 1 - step : step;
      A& slot = p.sums[(o * p.chunks + c) * p.inner + i];
      const A t = slot;
      slot = run;
      run += t;
    }
  }
}

// Pass 3: each (o, c, i) scans its chunk from its offset.
template <typename T>
__global__ void scan_chunks_kernel(ScanParams<T> p) {
  using A = compute_t<T>;
  const int64_t total = p.outer * p.chunks * p.inner;
  for (int64_t k = grid_index(); k < total; k += grid_stride()) {
    const int64_t i = k % p.inner, c = (k / p.inner) % p.chunks, o = k / (p.inner * p.chunks);
    const int64_t j0 = c * kScanChunk, len = min(p.n, j0 + kScanChunk) - j0;
    A acc = p.sums ? p.sums[k] : A(0);
    for (int64_t step = 0; step < len; ++step) {
      const int64_t j = j0 + (p.reverse ? len - 1 - step : step);
      const int64_t idx = (o * p.n + j) * p.inner + i;
      acc += to_compute(p.x[idx]);
      p.y[idx] = from_compute<T>(acc);
    }
  }
}

template <typename T>
void cumsum_launch(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  const Tensor& y = a.out[0];
  check_tensor<T>(x);
  check_tensor<T>(y);
  COIL_INTERNAL_ASSERT(x.is_contiguous() && y.is_contiguous() && x.shape() == y.shape(), "cumsum ",
                       x.describe(), " -> ", y.describe());
  const DimView v = dim_view(x.shape(), a.attrs.dim);
  if (x.numel() == 0) return;
  LaunchContext ctx(x);
  ScanParams<T> p{x.data<T>(), y.data<T>(), nullptr, v.outer, v.n, v.inner, ceil_div(v.n, kScanChunk),
                  a.attrs.reverse};
  Tensor sums;
  const int64_t threads = p.outer * p.chunks * p.inner;
  if (p.chunks > 1) {
    sums = Tensor::empty({threads}, dtype_of<compute_t<T>>(), x.device());  // (outer, chunks, inner)
    p.sums = static_cast<compute_t<T>*>(sums.data_ptr());
    scan_totals_kernel<T><<<grid_for(threads), kThreads, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("scan_totals_kernel");
    scan_offsets_kernel<T><<<grid_for(p.outer * p.inner), kThreads, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("scan_offsets_kernel");
  }
  scan_chunks_kernel<T><<<grid_for(threads), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("scan_chunks_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Sum, sum_launch);
COIL_CUDA_FLOAT_KERNELS(Mean, mean_launch);
COIL_CUDA_FLOAT_KERNELS(Max, max_launch);
COIL_CUDA_FLOAT_KERNELS(MaxBackward, max_backward_launch);
COIL_CUDA_FLOAT_KERNELS(Cumsum, cumsum_launch);

}  // namespace coil::cuda
