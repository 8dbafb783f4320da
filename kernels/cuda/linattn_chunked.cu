// Chunked linear attention with state in / out on CUDA (ops LinAttnChunked / LinAttnChunkedBackward;
// contract in core/op_list.h, the CPU oracle and the full gradient derivation in
// kernels/cpu/linattn_chunked.cpp). Every product with a reduction over a chunk (C tokens), the head
// width D / Dv or the feature width F is a strided-batched GEMM through cuBLASLt (kernels/cuda/gemm.h);
// small kernels do the masks, the feature map, the scans and the layout changes.
//
// Layouts: the token tensors are copied into zero-padded chunk-major buffers (n = c * BH + bh, C rows
// each), so that chunks c0 .. c1 of every (b, h) are one strided batch; the states Sc (nc, B, H, F, Dv)
// are chunk-major too. Padded tokens (zero q, k, v and a = 0) leave every state and gradient unchanged.
// Per chunk, b_i the chunk-local cumsum of a and B = b_{C-1}:
//   scores  W = f(Q K^T) e^{b_i - b_j} (j <= i; masked before exp)   num = W V, den = row sums of W
//   state   P = phi(K) e^{B - b_j} (a workspace of a group of chunks)  dS_c = P^T V,  dz_c = col sums
//   scan    S_{c+1} = e^B S_c + dS_c  (parallel over (bh, f, e), sequential over chunks, from S0)
//   readout Q^ = phi(Q) e^{b_i}:  num += Q^ S_c,  den += Q^ z_c;  y = num / max(den, eps) (sm_norm)
// The backward runs the same pieces in reverse (G_c = dL/dS after chunk c, G_{c-1} = e^B G_c + Q^T dnum):
//   dphi(K) = e^{B-b_j} (V G^T + gz),  dV += P G + W^T dnum,  dphi(Q) = e^{b_i} (dnum S^T + dden z),
//   dW = dnum V^T + dden: du = f'(u) e^{b_i-b_j} dW,  dQ += du K,  dK += du^T Q,  phi's chain rule adds
//   the feature gradients; db from the tile (row minus column sums of W dW), the readout (q^.dq^), the
//   state inputs (-k^.dk^, their sum at B) and the decay (e^B <G, S>); da is the reverse cumsum of db.
// Precision: the compute type is fp32 for f32 and bf16 inputs (bf16 is widened when staged) and fp64
// for f64; the states, the cumsums and the statistics are in the statistics precision. The GEMMs of
// bf16 inputs run on TF32 tensor cores (gemm_tf32), those of f32 and f64 exactly (gemm.h).
// Cost (H100, bench/linattn_chunked_bench.cpp): the feature kernels (features_kernel, dfeat_scale_kernel,
// dfeat_chain_kernel: one thread per element with 64-bit index arithmetic) take about 60% of the
// time, the GEMMs about 15%; a row-per-block feature map (or the map fused into the GEMM's operand
// load) is the next step.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "core/ops.h"
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/gemm.h"

namespace coil::cuda {
namespace {

struct Geo {
  int64_t B, T, H, D, Dv, F, C, nc, BH, N;  // N = nc * BH chunk tiles
  int power;
  bool sm, decay;
  double scale;
};

Geo geo_of(const KernelArgs& a, const Tensor& q, const Tensor& v) {
  Geo g;
  g.B = q.size(0);
  g.T = q.size(1);
  g.H = q.size(2);
  g.D = q.size(3);
  g.Dv = v.size(3);
  g.power = int(a.attrs.power);
  g.F = linattn_chunked_features(g.power, g.D);
  g.C = a.attrs.dim;
  g.nc = (g.T + g.C - 1) / g.C;
  g.BH = g.B * g.H;
  g.N = g.nc * g.BH;
  g.sm = a.attrs.sm_norm;
  g.scale = a.attrs.scale;
  g.decay = false;
  return g;
}

// exp in the type of its argument (coil::exp on tensors would shadow the math function).
__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return ::exp(x); }

// Pair (p, r), p <= r, of feature f of the symmetric map (a-major: feature p * D - p (p - 1) / 2 + (r - p)).
// p from the closed form of the row starts, corrected by at most a step for the float square root.
__device__ __forceinline__ void feature_pair(int64_t f, int64_t D, int& p, int& r) {
  const double w = double(2 * D + 1);
  int pp = int((w - sqrt(w * w - 8.0 * double(f))) * 0.5);
  auto start = [D](int x) { return int64_t(x) * D - int64_t(x) * (x - 1) / 2; };
  pp = pp < 0 ? 0 : (pp >= D ? int(D - 1) : pp);
  while (pp > 0 && start(pp) > f) --pp;
  while (pp + 1 < D && start(pp + 1) <= f) ++pp;
  p = pp;
  r = int(pp + (f - start(pp)));
}
__device__ __forceinline__ int64_t pair_index(int p, int r, int64_t D) {
  return int64_t(p) * D - int64_t(p) * (p - 1) / 2 + (r - p);
}

// Token (b, t, h) of chunk tile n, row i; t >= T is padding.
__device__ __forceinline__ void tile_token(const Geo& g, int64_t n, int64_t i, int64_t& b, int64_t& h, int64_t& t) {
  const int64_t c = n / g.BH, bh = n % g.BH;
  b = bh / g.H;
  h = bh % g.H;
  t = c * g.C + i;
}

// x (B, T, H, W) in T_in -> X (N, C, W) in TC times mul, zero past T.
template <typename Tin, typename TC>
__global__ void stage_kernel(Geo g, const Tin* x, int64_t W, TC mul, TC* X) {
  const int64_t total = g.N * g.C * W;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t w = e % W, row = e / W, i = row % g.C, n = row / g.C;
    int64_t b, h, t;
    tile_token(g, n, i, b, h, t);
    X[e] = t < g.T ? TC(to_compute(x[((b * g.T + t) * g.H + h) * W + w])) * mul : TC(0);
  }
}

// Local cumsum of a (B, T, H) per tile: bl (N, C); zeros without a.
template <typename TS>
__global__ void cumsum_kernel(Geo g, const TS* a, TS* bl) {
  for (int64_t n = grid_index(); n < g.N; n += grid_stride()) {
    TS acc = 0;
    for (int64_t i = 0; i < g.C; ++i) {
      int64_t b, h, t;
      tile_token(g, n, i, b, h, t);
      if (a && t < g.T) acc += a[(b * g.T + t) * g.H + h];
      bl[n * g.C + i] = acc;
    }
  }
}

// In place on the scores S (N, C, C): W_ij = f(u_ij) e^{b_i - b_j} for j <= i, else 0.
template <typename TC, typename TS>
__global__ void mask_kernel(Geo g, const TS* bl, TC* S) {
  const int64_t total = g.N * g.C * g.C;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t j = e % g.C, i = (e / g.C) % g.C, n = e / (g.C * g.C);
    if (j > i) {
      S[e] = TC(0);
      continue;
    }
    const TC u = S[e];
    const TC w = g.power == 2 ? u * u : u;
    S[e] = w * TC(dexp(bl[n * g.C + i] - bl[n * g.C + j]));
  }
}

// rows (R, L) -> out[r] (+)= sum of row r.
template <typename TC>
__global__ void row_sum_kernel(int64_t R, int64_t L, const TC* x, TC* out, bool accumulate) {
  for (int64_t r = grid_index(); r < R; r += grid_stride()) {
    TC acc = 0;
    for (int64_t l = 0; l < L; ++l) acc += x[r * L + l];
    out[r] = accumulate ? out[r] + acc : acc;
  }
}

// Features of X (n0 .. n0 + cnt tiles, C rows, D) into P (cnt, C, F), row i scaled by e^{b_i}
// (mode 0) or e^{B - b_i} (mode 1) or 1 (mode 2).
template <typename TC, typename TS>
__global__ void features_kernel(Geo g, int64_t n0, int64_t cnt, const TC* X, const TS* bl, int mode, TC* P) {
  const int64_t total = cnt * g.C * g.F;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t f = e % g.F, row = e / g.F, i = row % g.C, n = n0 + row / g.C;
    const TC* x = X + (n * g.C + i) * g.D;
    TC v;
    if (g.power == 1) {
      v = x[f];
    } else {
      int p, r;
      feature_pair(f, g.D, p, r);
      v = x[p] * x[r] * (p == r ? TC(1) : TC(1.4142135623730950488));
    }
    TS s = 1;
    if (mode == 0) s = dexp(bl[n * g.C + i]);
    else if (mode == 1) s = dexp(bl[n * g.C + g.C - 1] - bl[n * g.C + i]);
    P[e] = v * TC(s);
  }
}

// Column sums of P (cnt tiles, C, F) into z contributions: tile k's sum to dst(k) (F values).
template <typename TC, typename TS>
__global__ void col_sum_kernel(Geo g, int64_t n0, int64_t cnt, const TC* P, TS* zc, TS* zlast) {
  const int64_t total = cnt * g.F;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t f = e % g.F, k = e / g.F, n = n0 + k, c = n / g.BH, bh = n % g.BH;
    TC acc = 0;
    for (int64_t i = 0; i < g.C; ++i) acc += P[(k * g.C + i) * g.F + f];
    TS* dst = c + 1 < g.nc ? zc + ((c + 1) * g.BH + bh) * g.F : zlast + bh * g.F;
    dst[f] = TS(acc);
  }
}

// Forward scan over chunks per (bh, e), E values per state: slot c + 1 (or last) holds chunk c's
// contribution on entry and the state after chunk c on exit; slot 0 gets s0 (or 0).
template <typename TS>
__global__ void scan_fwd_kernel(Geo g, int64_t E, const TS* bl, const TS* s0, TS* sc, TS* last) {
  const int64_t total = g.BH * E;
  for (int64_t x = grid_index(); x < total; x += grid_stride()) {
    const int64_t bh = x / E, e = x % E;
    TS s = s0 ? s0[x] : TS(0);
    sc[bh * E + e] = s;
    for (int64_t c = 0; c < g.nc; ++c) {
      TS* dst = c + 1 < g.nc ? &sc[((c + 1) * g.BH + bh) * E + e] : &last[x];
      s = dexp(bl[(c * g.BH + bh) * g.C + g.C - 1]) * s + *dst;
      *dst = s;
    }
  }
}

// Reverse scan per (bh, e): on entry gs slot c - 1 holds R_c (c >= 1) and first holds R_0; G starts at
// dlast (or 0). On exit gs slot c = dL/dS after chunk c and first = dL/dS0.
template <typename TS>
__global__ void scan_bwd_kernel(Geo g, int64_t E, const TS* bl, const TS* dlast, TS* gs, TS* first) {
  const int64_t total = g.BH * E;
  for (int64_t x = grid_index(); x < total; x += grid_stride()) {
    const int64_t bh = x / E, e = x % E;
    TS s = dlast ? dlast[x] : TS(0);
    for (int64_t c = g.nc - 1; c >= 0; --c) {
      TS* slot = c >= 1 ? &gs[((c - 1) * g.BH + bh) * E + e] : &first[x];
      if (c == g.nc - 1) gs[(c * g.BH + bh) * E + e] = s;
      s = dexp(bl[(c * g.BH + bh) * g.C + g.C - 1]) * s + *slot;
      *slot = s;
    }
  }
}

// y (B, T, H, Dv) = num / max(den, eps) (sm_norm) or num; den_out (B, H, T).
template <typename T, typename TC, typename TS>
__global__ void output_kernel(Geo g, const TC* num, const TC* den, T* y, TS* den_out) {
  const int64_t total = g.N * g.C * g.Dv;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t d = e % g.Dv, row = e / g.Dv, i = row % g.C, n = row / g.C;
    int64_t b, h, t;
    tile_token(g, n, i, b, h, t);
    if (t >= g.T) continue;
    TC v = num[e];
    if (g.sm) {
      const TC dn = den[row];
      v /= dn > TC(kLinAttnDenominatorEps) ? dn : TC(kLinAttnDenominatorEps);
      if (d == 0) den_out[(b * g.H + h) * g.T + t] = TS(dn);
    }
    y[((b * g.T + t) * g.H + h) * g.Dv + d] = from_compute<T>(v);
  }
}

// fp32 operands on TF32 tensor cores with fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_TF32), for bf16
// inputs only: their q, k, v are exact in TF32 and the features and states keep 10 mantissa bits, 4x the
// precision of the bf16 the op's inputs come in (the f32 and f64 paths stay exact, gemm.h). Returns false,
// having launched nothing, when cuBLASLt offers no algorithm (the caller then runs the exact GEMM).
bool gemm_tf32(const GemmCall& g, int device, cudaStream_t stream) {
  static std::mutex mu;
  static cublasLtHandle_t handles[64] = {};
  cublasLtHandle_t h;
  {
    std::lock_guard<std::mutex> lock(mu);
    COIL_INTERNAL_ASSERT(device >= 0 && device < 64, "device ", device);
    if (!handles[device]) COIL_CUBLAS_CHECK(cublasLtCreate(&handles[device]));
    h = handles[device];
  }
  if (g.batch > INT32_MAX) return false;
  const int64_t sa = g.batch > 1 ? g.stride_a : 0, sb = g.batch > 1 ? g.stride_b : 0;
  const int64_t sc = g.batch > 1 ? g.stride_c : 0;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  auto layout = [&](cublasLtMatrixLayout_t& l, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
    COIL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, uint64_t(rows), uint64_t(cols), ld));
    const int32_t count = int32_t(g.batch);
    COIL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    COIL_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  };
  COIL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F));
  // Row-major C = A B is column-major C^T = B^T A^T: cuBLASLt's A is our B and its B our A.
  const int32_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  COIL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  COIL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (g.trans_b) layout(la, g.K, g.N, g.K, sb);
  else layout(la, g.N, g.K, g.N, sb);
  if (g.trans_a) layout(lb, g.M, g.K, g.M, sa);
  else layout(lb, g.K, g.M, g.K, sa);
  layout(lc, g.N, g.M, g.N, sc);
  const uint64_t ws_bytes = uint64_t(32) << 20;
  COIL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  COIL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                         sizeof(ws_bytes)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, 1, &res, &found);
  bool ok = hs == CUBLAS_STATUS_SUCCESS && found > 0;
  if (ok) {
    Tensor ws = Tensor::empty({int64_t(ws_bytes / 4)}, DType::F32, Device::cuda(device));
    const float alpha = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
    COIL_CUBLAS_CHECK(cublasLtMatmul(h, desc, &alpha, g.b, la, g.a, lb, &beta, g.c, lc, g.c, lc, &res.algo,
                                     ws.data<float>(), ws_bytes, stream));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(desc);
  return ok;
}

// One strided-batched GEMM in the compute type (gemm.h's row-major convention); `fast`: TF32 (above).
template <typename TC>
void bgemm(bool fast, cudaStream_t stream, int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
           int64_t batch, const TC* a, int64_t sa, const TC* b, int64_t sb, TC* c, int64_t sc,
           bool accumulate = false) {
  if (batch <= 0) return;
  GemmCall call;
  call.dtype = dtype_of<TC>();
  call.trans_a = ta;
  call.trans_b = tb;
  call.M = M;
  call.N = N;
  call.K = K;
  call.batch = batch;
  call.a = a;
  call.stride_a = sa;
  call.b = b;
  call.stride_b = sb;
  call.c = c;
  call.stride_c = sc;
  call.accumulate = accumulate;
  if constexpr (std::is_same_v<TC, float>)
    if (fast && gemm_tf32(call, device, stream)) return;
  gemm(call, device, stream);
}

template <typename TC>
TC* scratch(Tensor& holder, int64_t n, Device dev) {
  holder = Tensor::empty({std::max<int64_t>(n, 1)}, dtype_of<TC>(), dev);
  return holder.data<TC>();
}

// Chunks per group of the feature workspaces: about 256 MiB per (cnt, C, F) buffer.
int64_t group_chunks(const Geo& g, size_t elem) {
  const int64_t per_chunk = g.BH * g.C * g.F * int64_t(elem);
  return std::max<int64_t>(1, std::min<int64_t>(g.nc, (int64_t(256) << 20) / std::max<int64_t>(per_chunk, 1)));
}

// LAUNCH(kernel, n): a grid-stride launch over n items on `stream`; COMMA separates template arguments.
#define COMMA ,
#define LAUNCH(kernel, n) kernel<<<grid_for(n), kThreads, 0, stream>>>

template <typename T>
void chunked_forward(const KernelArgs& a) {
  using TC = compute_t<T>;
  using TS = TC;  // statistics precision: fp32 for f32 / bf16, fp64 for f64
  const Tensor& q = a.in[0];
  Geo g = geo_of(a, q, a.in[2]);
  const TS* av = a.in[3].defined() ? a.in[3].data<TS>() : nullptr;
  const TS* S0 = a.in[4].defined() ? a.in[4].data<TS>() : nullptr;
  const TS* z0 = g.sm && a.in[5].defined() ? a.in[5].data<TS>() : nullptr;
  T* y = a.out[0].data<T>();
  TS *S = a.out[1].data<TS>(), *Sc = a.out[3].data<TS>();
  TS* z = g.sm ? a.out[2].data<TS>() : nullptr;
  TS* zc = g.sm ? a.out[4].data<TS>() : nullptr;
  TS* den_out = g.sm ? a.out[5].data<TS>() : nullptr;
  LaunchContext ctx(q);
  const cudaStream_t stream = ctx.stream;
  const bool fast = std::is_same_v<T, bf16_t>;  // TF32 GEMMs for bf16 inputs
  const int dev = q.device().index;
  const Device dv = q.device();
  const int64_t C = g.C, D = g.D, Dv = g.Dv, F = g.F, N = g.N, BH = g.BH;
  Tensor hQ, hK, hV, hB, hW, hNum, hDen, hP;
  TC* Q = scratch<TC>(hQ, N * C * D, dv);
  TC* K = scratch<TC>(hK, N * C * D, dv);
  TC* V = scratch<TC>(hV, N * C * Dv, dv);
  TS* bl = scratch<TS>(hB, N * C, dv);
  LAUNCH(stage_kernel<T COMMA TC>, N * C * D)(g, q.data<T>(), D, TC(1), Q);
  LAUNCH(stage_kernel<T COMMA TC>, N * C * D)(g, a.in[1].data<T>(), D, TC(g.scale), K);
  LAUNCH(stage_kernel<T COMMA TC>, N * C * Dv)(g, a.in[2].data<T>(), Dv, TC(1), V);
  LAUNCH(cumsum_kernel<TS>, N)(g, av, bl);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked staging");
  // Intra-chunk tiles.
  TC* Wt = scratch<TC>(hW, N * C * C, dv);
  TC* num = scratch<TC>(hNum, N * C * Dv, dv);
  TC* den = scratch<TC>(hDen, N * C, dv);
  bgemm<TC>(fast, stream, dev, false, true, C, C, D, N, Q, C * D, K, C * D, Wt, C * C);
  LAUNCH(mask_kernel<TC COMMA TS>, N * C * C)(g, bl, Wt);
  if (g.sm) LAUNCH(row_sum_kernel<TC>, N * C)(N * C, C, Wt, den, false);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked mask");
  bgemm<TC>(fast, stream, dev, false, false, C, Dv, C, N, Wt, C * C, V, C * Dv, num, C * Dv);
  hW = Tensor();
  // State contributions by groups of chunks, then the scan.
  const int64_t gc = group_chunks(g, sizeof(TC));
  TC* P = scratch<TC>(hP, gc * BH * C * F, dv);
  static_assert(std::is_same_v<TC, TS>, "the state GEMMs write the statistics dtype");
  for (int64_t c0 = 0; c0 < g.nc; c0 += gc) {
    const int64_t c1 = std::min(g.nc, c0 + gc), cnt = (c1 - c0) * BH, n0 = c0 * BH;
    LAUNCH(features_kernel<TC COMMA TS>, cnt * C * F)(g, n0, cnt, K, bl, 1, P);
    COIL_CUDA_CHECK_LAUNCH("linattn_chunked features");
    // Chunks c0 .. min(c1, nc - 1) - 1 into Sc slots c + 1; the last chunk into S.
    const int64_t inner = std::min(c1, g.nc - 1) - c0;
    bgemm<TC>(fast, stream, dev, true, false, F, Dv, C, inner * BH, P, C * F, V + n0 * C * Dv, C * Dv,
              Sc + (c0 + 1) * BH * F * Dv, F * Dv);
    if (c1 == g.nc)
      bgemm<TC>(fast, stream, dev, true, false, F, Dv, C, BH, P + inner * BH * C * F, C * F,
                V + (g.nc - 1) * BH * C * Dv, C * Dv, S, F * Dv);
    if (g.sm) LAUNCH(col_sum_kernel<TC COMMA TS>, cnt * F)(g, n0, cnt, P, zc, z);
  }
  LAUNCH(scan_fwd_kernel<TS>, BH * F * Dv)(g, F * Dv, bl, S0, Sc, S);
  if (g.sm) LAUNCH(scan_fwd_kernel<TS>, BH * F)(g, F, bl, z0, zc, z);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked scan");
  // Readout of the state entering each chunk.
  for (int64_t c0 = 0; c0 < g.nc; c0 += gc) {
    const int64_t c1 = std::min(g.nc, c0 + gc), cnt = (c1 - c0) * BH, n0 = c0 * BH;
    LAUNCH(features_kernel<TC COMMA TS>, cnt * C * F)(g, n0, cnt, Q, bl, 0, P);
    bgemm<TC>(fast, stream, dev, false, false, C, Dv, F, cnt, P, C * F, Sc + n0 * F * Dv, F * Dv, num + n0 * C * Dv,
              C * Dv, true);
    if (g.sm) bgemm<TC>(fast, stream, dev, false, false, C, 1, F, cnt, P, C * F, zc + n0 * F, F, den + n0 * C, C, true);
  }
  LAUNCH(output_kernel<T COMMA TC COMMA TS>, N * C * Dv)(g, num, den, y, den_out);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked output");
}

// dnum = dy / c, dden = -[den > eps] dy.y / c (sm_norm); dnum = dy, dden = 0 otherwise. Tile layout.
template <typename T, typename TC, typename TS>
__global__ void dout_kernel(Geo g, const T* dy, const T* y, const TS* den, TC* dnum, TC* dden) {
  const int64_t rows = g.N * g.C;
  for (int64_t row = grid_index(); row < rows; row += grid_stride()) {
    const int64_t i = row % g.C, n = row / g.C;
    int64_t b, h, t;
    tile_token(g, n, i, b, h, t);
    if (t >= g.T) {
      for (int64_t d = 0; d < g.Dv; ++d) dnum[row * g.Dv + d] = TC(0);
      dden[row] = TC(0);
      continue;
    }
    const int64_t o = ((b * g.T + t) * g.H + h) * g.Dv;
    TC dn = 0, c = 1;
    if (g.sm) {
      dn = TC(den[(b * g.H + h) * g.T + t]);
      c = dn > TC(kLinAttnDenominatorEps) ? dn : TC(kLinAttnDenominatorEps);
    }
    TC dot = 0;
    for (int64_t d = 0; d < g.Dv; ++d) {
      const TC gy = to_compute(dy[o + d]);
      dnum[row * g.Dv + d] = gy / c;
      dot += gy * TC(to_compute(y[o + d]));
    }
    dden[row] = g.sm && dn > TC(kLinAttnDenominatorEps) ? -dot / c : TC(0);
  }
}

// The intra tile's backward, per element: from the scores u (in U) and dW (in DW, without dden):
// W -> U, du -> DW, G = dW W -> Gm.
template <typename TC, typename TS>
__global__ void tile_bwd_kernel(Geo g, const TS* bl, const TC* dden, TC* U, TC* DW, TC* Gm) {
  const int64_t total = g.N * g.C * g.C;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t j = e % g.C, i = (e / g.C) % g.C, n = e / (g.C * g.C);
    if (j > i) {
      U[e] = DW[e] = Gm[e] = TC(0);
      continue;
    }
    const TC u = U[e], E = TC(dexp(bl[n * g.C + i] - bl[n * g.C + j]));
    const TC dW = DW[e] + dden[n * g.C + i];
    const TC W = (g.power == 2 ? u * u : u) * E;
    U[e] = W;
    Gm[e] = dW * W;
    DW[e] = (g.power == 2 ? TC(2) * u : TC(1)) * E * dW;
  }
}

// Feature gradients of a group: DP (cnt, C, F) holds the raw GEMM product; scaled in place to the
// gradient of phi(x_i) (mode 0, queries: e^{b_i} (DP + z dden_i); mode 1, keys: e^{B - b_j} (DP + gz)),
// then r[row] = phi(x_i) . dphi_i and dX[row] += J_phi^T dphi (one thread per (row, a)).
template <typename TC, typename TS>
__global__ void dfeat_scale_kernel(Geo g, int64_t n0, int64_t cnt, const TS* bl, int mode, const TS* zs,
                                   const TC* dden, TC* DP) {
  const int64_t total = cnt * g.C * g.F;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t f = e % g.F, row = e / g.F, i = row % g.C, n = n0 + row / g.C;
    TC v = DP[e];
    if (mode == 0) {
      if (zs) v += TC(zs[n * g.F + f]) * dden[n * g.C + i];
      v *= TC(dexp(bl[n * g.C + i]));
    } else {
      if (zs) v += TC(zs[n * g.F + f]);
      v *= TC(dexp(bl[n * g.C + g.C - 1] - bl[n * g.C + i]));
    }
    DP[e] = v;
  }
}

template <typename TC>
__global__ void dfeat_chain_kernel(Geo g, int64_t n0, int64_t cnt, const TC* X, const TC* DP, TC* dX, TC* r) {
  const int64_t total = cnt * g.C * g.D;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t p = e % g.D, row = e / g.D, grow = n0 * g.C + row;
    const TC* x = X + grow * g.D;
    const TC* dp = DP + row * g.F;
    TC acc = 0, rr = 0;
    if (g.power == 1) {
      acc = dp[p];
      rr = x[p] * dp[p];
    } else {
      for (int64_t o = 0; o < g.D; ++o) {
        const int lo = int(p < o ? p : o), hi = int(p < o ? o : p);
        const TC gv = dp[pair_index(lo, hi, g.D)];
        acc += (p == o ? TC(2) : TC(1.4142135623730950488)) * gv * x[o];
        if (o >= p) rr += (p == o ? TC(1) : TC(1.4142135623730950488)) * x[p] * x[o] * gv;
      }
    }
    dX[grow * g.D + p] += acc;
    r[grow * g.D + p] = rr;  // partial of phi(x).dphi: summed over p by the db kernel
  }
}

// <G_c, S_c> + gz_c . z_c per tile n (one block per tile).
template <typename TS>
__global__ void state_dot_kernel(Geo g, int64_t E, const TS* Gs, const TS* Sc, const TS* gz, const TS* zc,
                                 TS* out) {
  const int64_t n = blockIdx.x;
  TS acc = 0;
  for (int64_t e = threadIdx.x; e < E; e += blockDim.x) acc += Gs[n * E + e] * Sc[n * E + e];
  if (gz)
    for (int64_t f = threadIdx.x; f < g.F; f += blockDim.x) acc += gz[n * g.F + f] * zc[n * g.F + f];
  __shared__ TS part[kThreads];
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[n] = part[0];
}

// db per tile and da (B, T, H), one block per tile n: db_i = rq_i - rk_i + sum_j G_ij - sum_j G_ji
// (thread per i), db_{C-1} += e^B sd + sum rk; da = the reverse cumsum in the tile (one thread, C steps).
template <typename TC, typename TS>
__global__ void decay_grad_kernel(Geo g, const TS* bl, const TC* rq, const TC* rk, const TC* Gm, const TS* sd,
                                  TS* da, TS* dbw) {
  const int64_t n = blockIdx.x;
  TS* db = dbw + n * g.C;
  TS krow = 0;  // this thread's share of sum rk
  for (int64_t i = threadIdx.x; i < g.C; i += blockDim.x) {
    TS v = 0, k = 0;
    for (int64_t p = 0; p < g.D; ++p) {
      v += TS(rq[(n * g.C + i) * g.D + p]);
      k += TS(rk[(n * g.C + i) * g.D + p]);
    }
    const TC* G = Gm + n * g.C * g.C;
    for (int64_t j = 0; j < g.C; ++j) v += TS(G[i * g.C + j]) - TS(G[j * g.C + i]);
    db[i] = v - k;
    krow += k;
  }
  __shared__ TS part[kThreads];
  part[threadIdx.x] = krow;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    TS acc = dexp(bl[n * g.C + g.C - 1]) * sd[n] + part[0];
    for (int64_t i = g.C - 1; i >= 0; --i) {
      acc += db[i];
      int64_t b, h, t;
      tile_token(g, n, i, b, h, t);
      if (t < g.T) da[(b * g.T + t) * g.H + h] = acc;
    }
  }
}

// Tile buffer (N, C, W) -> x (B, T, H, W) times mul.
template <typename T, typename TC>
__global__ void unstage_kernel(Geo g, const TC* X, int64_t W, TC mul, T* x) {
  const int64_t total = g.N * g.C * W;
  for (int64_t e = grid_index(); e < total; e += grid_stride()) {
    const int64_t w = e % W, row = e / W, i = row % g.C, n = row / g.C;
    int64_t b, h, t;
    tile_token(g, n, i, b, h, t);
    if (t < g.T) x[((b * g.T + t) * g.H + h) * W + w] = from_compute<T>(X[e] * mul);
  }
}

template <typename T>
void chunked_backward(const KernelArgs& a) {
  using TC = compute_t<T>;
  using TS = TC;
  const Tensor& q = a.in[3];
  Geo g = geo_of(a, q, a.in[5]);
  const T* dy = a.in[0].data<T>();
  const TS* dS = a.in[1].defined() ? a.in[1].data<TS>() : nullptr;
  const TS* dz = g.sm && a.in[2].defined() ? a.in[2].data<TS>() : nullptr;
  const TS* av = a.in[6].defined() ? a.in[6].data<TS>() : nullptr;
  const T* y = a.in[7].data<T>();
  const TS* Sc = a.in[8].data<TS>();
  const TS* zc = g.sm ? a.in[9].data<TS>() : nullptr;
  const TS* den = g.sm ? a.in[10].data<TS>() : nullptr;
  TS* da = av ? a.out[3].data<TS>() : nullptr;
  TS* dS0 = a.out[4].data<TS>();
  TS* dz0 = g.sm ? a.out[5].data<TS>() : nullptr;
  LaunchContext ctx(q);
  const cudaStream_t stream = ctx.stream;
  const bool fast = std::is_same_v<T, bf16_t>;  // TF32 GEMMs for bf16 inputs
  const int dev = q.device().index;
  const Device dv = q.device();
  const int64_t C = g.C, D = g.D, Dv = g.Dv, F = g.F, N = g.N, BH = g.BH;
  Tensor hQ, hK, hV, hB, hDn, hDd, hGs, hGz, hP, hDP, hdQ, hdK, hdV, hRq, hRk, hSd, hU, hDW, hGm;
  TC* Q = scratch<TC>(hQ, N * C * D, dv);
  TC* K = scratch<TC>(hK, N * C * D, dv);
  TC* V = scratch<TC>(hV, N * C * Dv, dv);
  TS* bl = scratch<TS>(hB, N * C, dv);
  TC* dnum = scratch<TC>(hDn, N * C * Dv, dv);
  TC* dden = scratch<TC>(hDd, N * C, dv);
  LAUNCH(stage_kernel<T COMMA TC>, N * C * D)(g, q.data<T>(), D, TC(1), Q);
  LAUNCH(stage_kernel<T COMMA TC>, N * C * D)(g, a.in[4].data<T>(), D, TC(g.scale), K);
  LAUNCH(stage_kernel<T COMMA TC>, N * C * Dv)(g, a.in[5].data<T>(), Dv, TC(1), V);
  LAUNCH(cumsum_kernel<TS>, N)(g, av, bl);
  LAUNCH(dout_kernel<T COMMA TC COMMA TS>, N * C)(g, dy, y, den, dnum, dden);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked backward staging");
  TS* Gs = scratch<TS>(hGs, N * F * Dv, dv);
  TS* Gz = g.sm ? scratch<TS>(hGz, N * F, dv) : nullptr;
  const int64_t gc = group_chunks(g, sizeof(TC));
  TC* P = scratch<TC>(hP, gc * BH * C * F, dv);
  TC* DP = scratch<TC>(hDP, gc * BH * C * F, dv);
  // Readout contributions R_c = (phi(Q) e^b)^T dnum into Gs slot c - 1 (dS0 for c = 0), then the
  // reverse scan.
  for (int64_t c0 = 0; c0 < g.nc; c0 += gc) {
    const int64_t c1 = std::min(g.nc, c0 + gc), cnt = (c1 - c0) * BH, n0 = c0 * BH;
    LAUNCH(features_kernel<TC COMMA TS>, cnt * C * F)(g, n0, cnt, Q, bl, 0, P);
    COIL_CUDA_CHECK_LAUNCH("linattn_chunked backward features");
    const int64_t skip = c0 == 0 ? 1 : 0;  // chunk 0 writes dS0
    if (skip) {
      bgemm<TC>(fast, stream, dev, true, false, F, Dv, C, BH, P, C * F, dnum, C * Dv, dS0, F * Dv);
      if (g.sm) bgemm<TC>(fast, stream, dev, true, false, F, 1, C, BH, P, C * F, dden, C, dz0, F);
    }
    const int64_t m0 = skip * BH;  // first tile of the group written into Gs
    bgemm<TC>(fast, stream, dev, true, false, F, Dv, C, cnt - m0, P + m0 * C * F, C * F, dnum + (n0 + m0) * C * Dv,
              C * Dv, Gs + (n0 + m0 - BH) * F * Dv, F * Dv);
    if (g.sm)
      bgemm<TC>(fast, stream, dev, true, false, F, 1, C, cnt - m0, P + m0 * C * F, C * F, dden + (n0 + m0) * C, C,
                Gz + (n0 + m0 - BH) * F, F);
  }
  LAUNCH(scan_bwd_kernel<TS>, BH * F * Dv)(g, F * Dv, bl, dS, Gs, dS0);
  if (g.sm) LAUNCH(scan_bwd_kernel<TS>, BH * F)(g, F, bl, dz, Gz, dz0);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked backward scan");
  TS* sd = scratch<TS>(hSd, N, dv);
  state_dot_kernel<TS><<<unsigned(N), kThreads, 0, stream>>>(g, F * Dv, Gs, Sc, Gz, zc, sd);
  // Feature gradients, group by group.
  TC* dQ = scratch<TC>(hdQ, N * C * D, dv);
  TC* dK = scratch<TC>(hdK, N * C * D, dv);
  TC* dV = scratch<TC>(hdV, N * C * Dv, dv);
  TC* rq = scratch<TC>(hRq, N * C * D, dv);
  TC* rk = scratch<TC>(hRk, N * C * D, dv);
  COIL_CUDA_CHECK(cudaMemsetAsync(dQ, 0, size_t(N * C * D) * sizeof(TC), stream));
  COIL_CUDA_CHECK(cudaMemsetAsync(dK, 0, size_t(N * C * D) * sizeof(TC), stream));
  for (int64_t c0 = 0; c0 < g.nc; c0 += gc) {
    const int64_t c1 = std::min(g.nc, c0 + gc), cnt = (c1 - c0) * BH, n0 = c0 * BH;
    // Keys: dphi(K) = e^{B-b} (V G^T + gz); dV = (phi(K) e^{B-b}) G.
    LAUNCH(features_kernel<TC COMMA TS>, cnt * C * F)(g, n0, cnt, K, bl, 1, P);
    bgemm<TC>(fast, stream, dev, false, false, C, Dv, F, cnt, P, C * F, Gs + n0 * F * Dv, F * Dv, dV + n0 * C * Dv,
              C * Dv);
    bgemm<TC>(fast, stream, dev, false, true, C, F, Dv, cnt, V + n0 * C * Dv, C * Dv, Gs + n0 * F * Dv, F * Dv, DP,
              C * F);
    LAUNCH(dfeat_scale_kernel<TC COMMA TS>, cnt * C * F)(g, n0, cnt, bl, 1, g.sm ? Gz : nullptr, dden, DP);
    LAUNCH(dfeat_chain_kernel<TC>, cnt * C * D)(g, n0, cnt, K, DP, dK, rk);
    // Queries: dphi(Q) = e^b (dnum S^T + dden z).
    bgemm<TC>(fast, stream, dev, false, true, C, F, Dv, cnt, dnum + n0 * C * Dv, C * Dv, Sc + n0 * F * Dv, F * Dv, DP,
              C * F);
    LAUNCH(dfeat_scale_kernel<TC COMMA TS>, cnt * C * F)(g, n0, cnt, bl, 0, g.sm ? zc : nullptr, dden, DP);
    LAUNCH(dfeat_chain_kernel<TC>, cnt * C * D)(g, n0, cnt, Q, DP, dQ, rq);
    COIL_CUDA_CHECK_LAUNCH("linattn_chunked backward feature gradients");
  }
  hP = Tensor();
  hDP = Tensor();
  hGs = Tensor();
  // Intra-chunk tiles.
  TC* U = scratch<TC>(hU, N * C * C, dv);
  TC* DW = scratch<TC>(hDW, N * C * C, dv);
  TC* Gm = scratch<TC>(hGm, N * C * C, dv);
  bgemm<TC>(fast, stream, dev, false, true, C, C, D, N, Q, C * D, K, C * D, U, C * C);
  bgemm<TC>(fast, stream, dev, false, true, C, C, Dv, N, dnum, C * Dv, V, C * Dv, DW, C * C);
  LAUNCH(tile_bwd_kernel<TC COMMA TS>, N * C * C)(g, bl, dden, U, DW, Gm);
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked backward tile");
  bgemm<TC>(fast, stream, dev, false, false, C, D, C, N, DW, C * C, K, C * D, dQ, C * D, true);
  bgemm<TC>(fast, stream, dev, true, false, C, D, C, N, DW, C * C, Q, C * D, dK, C * D, true);
  bgemm<TC>(fast, stream, dev, true, false, C, Dv, C, N, U, C * C, dnum, C * Dv, dV, C * Dv, true);
  if (da) {
    Tensor hDb;
    TS* dbw = scratch<TS>(hDb, N * C, dv);
    decay_grad_kernel<TC, TS><<<unsigned(N), kThreads, 0, stream>>>(g, bl, rq, rk, Gm, sd, da, dbw);
  }
  LAUNCH(unstage_kernel<T COMMA TC>, N * C * D)(g, dQ, D, TC(1), a.out[0].data<T>());
  LAUNCH(unstage_kernel<T COMMA TC>, N * C * D)(g, dK, D, TC(g.scale), a.out[1].data<T>());
  LAUNCH(unstage_kernel<T COMMA TC>, N * C * Dv)(g, dV, Dv, TC(1), a.out[2].data<T>());
  COIL_CUDA_CHECK_LAUNCH("linattn_chunked backward outputs");
}

#undef LAUNCH
#undef COMMA

template <typename T>
void chunked_kernel(const KernelArgs& a) {
  chunked_forward<T>(a);
}
template <typename T>
void chunked_backward_kernel(const KernelArgs& a) {
  chunked_backward<T>(a);
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(LinAttnChunked, chunked_kernel);
COIL_CUDA_FLOAT_KERNELS(LinAttnChunkedBackward, chunked_backward_kernel);

}  // namespace coil::cuda
