// Mamba-1 selective scan (ops SelectiveScan / SelectiveScanBackward, contract in core/op_list.h; the CPU
// oracle is kernels/cpu/scan.cpp, whose header comment gives the backward recurrences). u, Bm, Cm, y,
// du, dBm, dCm are in the storage type T (f32, f64 or bf16); dt, A, the states and every sum are in the
// compute type S (fp32 for f32 / bf16, fp64 for f64).
//
// One thread per (b, d, n): a group of G = pow2 >= N lanes (at least 4, at most 32: N <= 32) holds the
// N states of one channel d, a block of 256 threads holds 256 / G channels of one batch row, and every
// thread walks the whole sequence. Tokens are staged through shared memory L at a time (u, dt, dy for
// the block's channels, Bm, Cm shared by all of them, loads coalesced along d / n); y_t = sum_n h C is
// a shuffle reduction inside the group.
//
// The forward stores the state entering every 64-token chunk (hc). The backward walks the chunks in
// reverse: it recomputes the chunk's 64 states into registers from hc, then runs the reverse scan
// over them with g = dL/dh carried across chunks. du and ddt come from shuffle sums over the group;
// dA accumulates per thread (one partial per batch row, summed over rows in order at the end); dBm and
// dCm, sums over d, are reduced inside the block (shuffles over the warp's channels, then the warps
// in shared memory) and written as one partial per block, which a second kernel sums over blocks in
// a fixed order. No float atomics: the results are deterministic. To bound the partials' memory the
// backward runs over segments of whole chunks, last segment first (g and dA carry in buffers).
//
// With few batch rows (long T at a fixed token count) one thread per state leaves most SMs idle, so
// the split form runs the 64-token chunks in parallel: forward, each chunk from a zero state gives its
// end state e_c and decay p_c = exp(A sum dt); a combine kernel walks the chunks per state
// (h_in[c + 1] = p_c h_in[c] + e_c: hc and hT); then each chunk runs again from hc, writing y.
// Backward, g does not depend on the states: each chunk's g at its start from zero (and p_c), a reverse
// combine gives g at every chunk end (and dh0), then the reverse-scan kernel runs every chunk at once.
#include <algorithm>

#include "kernels/cuda/selective_scan.h"

#include "core/ops.h"
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kChunk = int(kSelectiveScanChunk);
// The dBm / dCm partials of one backward segment stay under this many bytes (tests lower it through
// selective_scan_partial_budget to run several segments on small shapes).
int64_t g_partial_bytes = int64_t(64) << 20;
ScanMode g_mode = ScanMode::kAuto;

// Tokens staged per shared-memory pass (a divisor of kChunk): fewer in f64 to keep the staging small.
template <typename S>
constexpr int stage_len() {
  return sizeof(S) == 8 ? 8 : 16;
}

struct Geo {
  int64_t B, T, D;
  int N, G, dper;  // states, lanes per channel, channels per block
  int64_t nc, nDB;  // chunks, blocks along d
};

Geo geo_of(const Tensor& u, const Tensor& A) {
  COIL_INTERNAL_ASSERT(u.dim() == 3 && A.dim() == 2, "selective_scan: expected u (B, T, D), A (D, N), got ",
                       u.describe(), ", ", A.describe());
  Geo g;
  g.B = u.size(0);
  g.T = u.size(1);
  g.D = u.size(2);
  COIL_CHECK(A.size(1) >= 1 && A.size(1) <= 32, "selective_scan on CUDA: d_state N must be in [1, 32] (one "
             "warp holds a channel's states), got ", A.size(1));
  COIL_CHECK(g.B <= 65535, "selective_scan on CUDA: batch ", g.B, " exceeds the grid limit 65535");
  g.N = int(A.size(1));
  g.G = 4;
  while (g.G < g.N) g.G *= 2;
  g.dper = kBlock / g.G;
  g.nc = (g.T + kChunk - 1) / kChunk;
  g.nDB = (g.D + g.dper - 1) / g.dper;
  return g;
}

template <typename S>
__device__ __forceinline__ S dexp(S x) {
  if constexpr (sizeof(S) == 8) return ::exp(x);
  else return ::expf(x);
}

// Sum over the `width` lanes of a group (width a power of two <= 32); every lane gets the sum.
template <typename S>
__device__ __forceinline__ S group_sum(S v, int width) {
  for (int off = width / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// dst[i * w + j] = src[(t0 + i) * ld + c0 + j] for i < L, j < w, zero past T rows or ld columns.
template <typename S, typename X>
__device__ __forceinline__ void stage(S* dst, const X* src, int64_t t0, int L, int64_t T, int64_t c0, int w,
                                      int64_t ld) {
  for (int j = threadIdx.x; j < L * w; j += kBlock) {
    const int i = j / w, c = j - i * w;
    const int64_t t = t0 + i, col = c0 + c;
    dst[j] = (t < T && col < ld) ? S(to_compute(src[t * ld + col])) : S(0);
  }
}

// Block z of grid.z runs chunks [z cpb, (z + 1) cpb) of one batch row for dper channels. The state
// starts from hc_in's chunk entry when given, else h0 (undefined: zero). Each output is optional:
// y; hc_out, the state entering every chunk; h_end (B, gridDim.z, D, N), the state after the block's
// last token; p_end (same layout), exp(A sum dt) over the block's tokens (the decay across them).
// Sequential: cpb = nc, grid.z = 1 (h0 -> y, hc_out, h_end = hT). Split: the local pass (zero start ->
// h_end, p_end per chunk), then after combine_fwd_kernel the output pass (hc_in -> y per chunk).
template <typename T>
__global__ void __launch_bounds__(kBlock) scan_fwd_kernel(
    Geo g, int64_t cpb, const T* __restrict__ u, const compute_t<T>* __restrict__ dt,
    const compute_t<T>* __restrict__ A, const T* __restrict__ Bm, const T* __restrict__ Cm,
    const compute_t<T>* __restrict__ h0, const compute_t<T>* __restrict__ hc_in, T* __restrict__ y,
    compute_t<T>* __restrict__ hc_out, compute_t<T>* __restrict__ h_end, compute_t<T>* __restrict__ p_end) {
  using S = compute_t<T>;
  constexpr int L = stage_len<S>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  S* s_u = reinterpret_cast<S*>(smem_raw);
  S* s_dt = s_u + L * g.dper;
  S* s_B = s_dt + L * g.dper;
  S* s_C = s_B + L * g.N;
  const int n = threadIdx.x % g.G, dl = threadIdx.x / g.G;
  const int64_t b = blockIdx.y, d0 = int64_t(blockIdx.x) * g.dper, d = d0 + dl;
  const bool has_n = n < g.N, active = has_n && d < g.D;
  const int nn = has_n ? n : 0;
  const S An = active ? A[d * g.N + n] : S(0);
  const int64_t state = (b * g.D + d) * g.N + n;
  const int64_t c_lo = int64_t(blockIdx.z) * cpb, c_hi = c_lo + cpb < g.nc ? c_lo + cpb : g.nc;
  const int64_t t_lo = c_lo * kChunk, t_hi = c_hi * kChunk < g.T ? c_hi * kChunk : g.T;
  S h = S(0);
  if (active) {
    if (hc_in) h = hc_in[((b * g.nc + c_lo) * g.D + d) * g.N + n];
    else if (h0) h = h0[state];
  }
  S dt_sum = S(0);
  const T* ub = u + b * g.T * g.D;
  const S* dtb = dt + b * g.T * g.D;
  const T* Bb = Bm + b * g.T * g.N;
  const T* Cb = Cm + b * g.T * g.N;
  for (int64_t t0 = t_lo; t0 < t_hi; t0 += L) {
    if (hc_out && t0 % kChunk == 0 && active) hc_out[((b * g.nc + t0 / kChunk) * g.D + d) * g.N + n] = h;
    __syncthreads();  // the previous stage is consumed
    stage(s_u, ub, t0, L, t_hi, d0, g.dper, g.D);
    stage(s_dt, dtb, t0, L, t_hi, d0, g.dper, g.D);
    stage(s_B, Bb, t0, L, t_hi, 0, g.N, g.N);
    if (y) stage(s_C, Cb, t0, L, t_hi, 0, g.N, g.N);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < L; ++i) {
      // Padding rows (t >= t_hi, d >= D) are zero: dt = 0 leaves the state as it is.
      const S dtv = s_dt[i * g.dper + dl], x = dtv * s_u[i * g.dper + dl];
      const S Bn = has_n ? s_B[i * g.N + nn] : S(0);
      h = dexp(dtv * An) * h + x * Bn;
      dt_sum += dtv;
      if (y) {  // uniform over the block: every lane takes part in the shuffles
        const S Cn = has_n ? s_C[i * g.N + nn] : S(0);
        const S p = group_sum(h * Cn, g.G);
        if (n == 0 && d < g.D && t0 + i < t_hi) y[(b * g.T + t0 + i) * g.D + d] = from_compute<T>(p);
      }
    }
  }
  const int64_t out = ((b * gridDim.z + blockIdx.z) * g.D + d) * g.N + n;
  if (active && h_end) h_end[out] = h;
  if (active && p_end) p_end[out] = dexp(An * dt_sum);
}

// Split forward, between the passes: per state, the chunk-entry states from the chunks' local end
// states and decays, in order: hc[c] = h; h = p[c] h + e[c]; then hT = h.
template <typename S>
__global__ void combine_fwd_kernel(Geo g, const S* __restrict__ h0, const S* __restrict__ e,
                                   const S* __restrict__ p, S* __restrict__ hc, S* __restrict__ hT) {
  const int64_t total = g.B * g.D * g.N;
  for (int64_t i = grid_index(); i < total; i += grid_stride()) {
    const int64_t b = i / (g.D * g.N), dn = i - b * g.D * g.N;
    S h = h0 ? h0[i] : S(0);
    for (int64_t c = 0; c < g.nc; ++c) {
      const int64_t k = (b * g.nc + c) * g.D * g.N + dn;
      hc[k] = h;
      h = p[k] * h + e[k];
    }
    hT[i] = h;
  }
}

// Split backward, first pass: per chunk, g at the chunk's start from g = 0 at its end (gl) and the
// chunk's decay exp(A sum dt) (p); g does not depend on the states, only on dy, C and dt.
template <typename T>
__global__ void __launch_bounds__(kBlock) local_g_kernel(Geo g, const T* __restrict__ dy,
                                                         const compute_t<T>* __restrict__ dt,
                                                         const compute_t<T>* __restrict__ A,
                                                         const T* __restrict__ Cm, compute_t<T>* __restrict__ gl,
                                                         compute_t<T>* __restrict__ p) {
  using S = compute_t<T>;
  constexpr int L = stage_len<S>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  S* s_dy = reinterpret_cast<S*>(smem_raw);
  S* s_dt = s_dy + L * g.dper;
  S* s_C = s_dt + L * g.dper;
  const int n = threadIdx.x % g.G, dl = threadIdx.x / g.G;
  const int64_t b = blockIdx.y, d0 = int64_t(blockIdx.x) * g.dper, d = d0 + dl, c = blockIdx.z;
  const bool has_n = n < g.N, active = has_n && d < g.D;
  const int nn = has_n ? n : 0;
  const S An = active ? A[d * g.N + n] : S(0);
  const int64_t t_lo = c * kChunk, t_hi = t_lo + kChunk < g.T ? t_lo + kChunk : g.T;
  const T* dyb = dy + b * g.T * g.D;
  const S* dtb = dt + b * g.T * g.D;
  const T* Cb = Cm + b * g.T * g.N;
  S gr = S(0), dt_sum = S(0);
  for (int64_t t0 = t_lo + (kChunk / L - 1) * L; t0 >= t_lo; t0 -= L) {
    __syncthreads();
    stage(s_dy, dyb, t0, L, t_hi, d0, g.dper, g.D);
    stage(s_dt, dtb, t0, L, t_hi, d0, g.dper, g.D);
    stage(s_C, Cb, t0, L, t_hi, 0, g.N, g.N);
    __syncthreads();
#pragma unroll
    for (int i = L - 1; i >= 0; --i) {
      const S dtv = s_dt[i * g.dper + dl];
      const S Cn = has_n ? s_C[i * g.N + nn] : S(0);
      gr += s_dy[i * g.dper + dl] * Cn;
      gr *= dexp(dtv * An);
      dt_sum += dtv;
    }
  }
  if (active) {
    const int64_t k = ((b * g.nc + c) * g.D + d) * g.N + n;
    gl[k] = gr;
    p[k] = dexp(An * dt_sum);
  }
}

// Split backward, between the passes: per state, g entering every chunk from its end, last chunk
// first: gend[c] = G; G = p[c] G + gl[c] (G starts at dhT); then dh0 = G.
template <typename S>
__global__ void combine_bwd_kernel(Geo g, const S* __restrict__ dhT, const S* __restrict__ gl,
                                   const S* __restrict__ p, S* __restrict__ gend, S* __restrict__ dh0) {
  const int64_t total = g.B * g.D * g.N;
  for (int64_t i = grid_index(); i < total; i += grid_stride()) {
    const int64_t b = i / (g.D * g.N), dn = i - b * g.D * g.N;
    S G = dhT ? dhT[i] : S(0);
    for (int64_t c = g.nc - 1; c >= 0; --c) {
      const int64_t k = (b * g.nc + c) * g.D * g.N + dn;
      gend[k] = G;
      G = p[k] * G + gl[k];
    }
    dh0[i] = G;
  }
}

// Chunks [c0, c1) of the reverse scan (a segment), one batch row and dper channels per block.
// Sequential (!split, grid.z = 1): the block walks the segment's chunks; gbuf (B, D, N) holds g
// entering (dL/dh at the segment's end), then leaving; dA_part (B, D, N) accumulates. Split: block z
// runs chunk c0 + z alone, from g = gbuf (B, nc, D, N) at that chunk's end (combine_bwd_kernel), and
// writes its dA partial to dA_part (B, nc, D, N). pB, pC (B, Lseg, nDB, N): per-block partial sums
// over d of dBm, dCm.
template <typename T>
__global__ void __launch_bounds__(kBlock) scan_bwd_kernel(
    Geo g, int64_t c0, int64_t c1, bool split, int64_t Lseg, const T* __restrict__ dy, const T* __restrict__ u,
    const compute_t<T>* __restrict__ dt, const compute_t<T>* __restrict__ A, const T* __restrict__ Bm,
    const T* __restrict__ Cm, const compute_t<T>* __restrict__ hc, compute_t<T>* __restrict__ gbuf,
    compute_t<T>* __restrict__ dA_part, T* __restrict__ du, compute_t<T>* __restrict__ ddt,
    compute_t<T>* __restrict__ pB, compute_t<T>* __restrict__ pC) {
  using S = compute_t<T>;
  constexpr int L = stage_len<S>();
  constexpr int kStages = kChunk / L;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  S* s_u = reinterpret_cast<S*>(smem_raw);
  S* s_dt = s_u + L * g.dper;
  S* s_dy = s_dt + L * g.dper;
  S* s_B = s_dy + L * g.dper;
  S* s_C = s_B + L * g.N;
  S* r_B = s_C + L * g.N;          // (L, kWarps, G): each warp's sum over its channels
  S* r_C = r_B + L * kWarps * g.G;
  const int n = threadIdx.x % g.G, dl = threadIdx.x / g.G;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t b = blockIdx.y, d0 = int64_t(blockIdx.x) * g.dper, d = d0 + dl;
  const bool has_n = n < g.N, active = has_n && d < g.D;
  const int nn = has_n ? n : 0;
  const S An = active ? A[d * g.N + n] : S(0);
  const int64_t state = (b * g.D + d) * g.N + n;
  const T* ub = u + b * g.T * g.D;
  const T* dyb = dy + b * g.T * g.D;
  const S* dtb = dt + b * g.T * g.D;
  const T* Bb = Bm + b * g.T * g.N;
  const T* Cb = Cm + b * g.T * g.N;
  const int64_t t_begin = c0 * kChunk;
  const int64_t c_lo = split ? c0 + blockIdx.z : c0, c_hi = split ? c_lo + 1 : c1;
  const int64_t own = split ? ((b * g.nc + c_lo) * g.D + d) * g.N + n : state;  // gbuf, dA_part index
  S gr = active ? gbuf[own] : S(0);
  S dA_acc = S(0);
  for (int64_t c = c_hi - 1; c >= c_lo; --c) {
    const int64_t tc = c * kChunk;
    const S h_in = active ? hc[((b * g.nc + c) * g.D + d) * g.N + n] : S(0);
    // The chunk's states h_t, recomputed from the one entering it.
    S hs[kChunk];
    S h = h_in;
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      const int64_t t0 = tc + st * L;
      __syncthreads();
      stage(s_u, ub, t0, L, g.T, d0, g.dper, g.D);
      stage(s_dt, dtb, t0, L, g.T, d0, g.dper, g.D);
      stage(s_B, Bb, t0, L, g.T, 0, g.N, g.N);
      __syncthreads();
#pragma unroll
      for (int i = 0; i < L; ++i) {
        const S dtv = s_dt[i * g.dper + dl], x = dtv * s_u[i * g.dper + dl];
        const S Bn = has_n ? s_B[i * g.N + nn] : S(0);
        h = dexp(dtv * An) * h + x * Bn;
        hs[st * L + i] = h;
      }
    }
#pragma unroll
    for (int st = kStages - 1; st >= 0; --st) {
      const int64_t t0 = tc + st * L;
      __syncthreads();
      stage(s_u, ub, t0, L, g.T, d0, g.dper, g.D);
      stage(s_dt, dtb, t0, L, g.T, d0, g.dper, g.D);
      stage(s_dy, dyb, t0, L, g.T, d0, g.dper, g.D);
      stage(s_B, Bb, t0, L, g.T, 0, g.N, g.N);
      stage(s_C, Cb, t0, L, g.T, 0, g.N, g.N);
      __syncthreads();
#pragma unroll
      for (int i = L - 1; i >= 0; --i) {
        const int k = st * L + i;
        const S ht = hs[k], hp = k > 0 ? hs[k - 1] : h_in;
        const S dtv = s_dt[i * g.dper + dl], uv = s_u[i * g.dper + dl], x = dtv * uv;
        const S dyv = s_dy[i * g.dper + dl];
        const S Bn = has_n ? s_B[i * g.N + nn] : S(0), Cn = has_n ? s_C[i * g.N + nn] : S(0);
        const S at = dexp(dtv * An);
        gr += dyv * Cn;
        S cC = dyv * ht, cB = gr * x;
        for (int off = g.G; off < 32; off <<= 1) {  // over the channels of this warp
          cC += __shfl_xor_sync(0xffffffffu, cC, off);
          cB += __shfl_xor_sync(0xffffffffu, cB, off);
        }
        if (lane < g.G) {
          r_B[(i * kWarps + warp) * g.G + lane] = cB;
          r_C[(i * kWarps + warp) * g.G + lane] = cC;
        }
        const S da = gr * hp * at;  // dL/d(dt A) of this state
        const S s1 = group_sum(gr * Bn, g.G);
        const S s2 = group_sum(da * An, g.G);
        dA_acc += da * dtv;
        gr *= at;
        if (n == 0 && d < g.D && t0 + i < g.T) {
          du[(b * g.T + t0 + i) * g.D + d] = from_compute<T>(dtv * s1);
          ddt[(b * g.T + t0 + i) * g.D + d] = uv * s1 + s2;
        }
      }
      __syncthreads();
      for (int j = threadIdx.x; j < L * g.N; j += kBlock) {
        const int i = j / g.N, m = j - i * g.N;
        const int64_t t = t0 + i;
        if (t >= g.T) continue;
        S sb = S(0), sc = S(0);
        for (int w = 0; w < kWarps; ++w) {
          sb += r_B[(i * kWarps + w) * g.G + m];
          sc += r_C[(i * kWarps + w) * g.G + m];
        }
        const int64_t p = ((b * Lseg + (t - t_begin)) * g.nDB + blockIdx.x) * g.N + m;
        pB[p] = sb;
        pC[p] = sc;
      }
    }
  }
  if (active) {
    if (split) {
      dA_part[own] = dA_acc;
    } else {
      gbuf[own] = gr;
      dA_part[own] += dA_acc;
    }
  }
}

// dBm, dCm rows [t_begin, t_end): the sums of the per-block partials, in block order.
template <typename T>
__global__ void partial_sum_kernel(Geo g, int64_t t_begin, int64_t t_end, int64_t Lseg,
                                   const compute_t<T>* __restrict__ pB, const compute_t<T>* __restrict__ pC,
                                   T* __restrict__ dB, T* __restrict__ dC) {
  using S = compute_t<T>;
  const int64_t rows = t_end - t_begin, total = g.B * rows * g.N;
  for (int64_t i = grid_index(); i < total; i += grid_stride()) {
    const int64_t m = i % g.N, tl = (i / g.N) % rows, b = i / (g.N * rows);
    const int64_t base = (b * Lseg + tl) * g.nDB * g.N + m;
    S sb = S(0), sc = S(0);
    for (int64_t j = 0; j < g.nDB; ++j) {
      sb += pB[base + j * g.N];
      sc += pC[base + j * g.N];
    }
    const int64_t o = (b * g.T + t_begin + tl) * g.N + m;
    dB[o] = from_compute<T>(sb);
    dC[o] = from_compute<T>(sc);
  }
}

template <typename S>
__global__ void batch_sum_kernel(int64_t B, int64_t n, const S* __restrict__ part, S* __restrict__ out) {
  for (int64_t i = grid_index(); i < n; i += grid_stride()) {
    S s = S(0);
    for (int64_t b = 0; b < B; ++b) s += part[b * n + i];
    out[i] = s;
  }
}

template <typename T>
void check_stat(const Tensor& t, const char* what) {
  COIL_INTERNAL_ASSERT(t.device().is_cuda() && t.dtype() == dtype_of<compute_t<T>>(), "selective_scan: ", what,
                       " must be a CUDA tensor in the compute dtype, got ", t.describe());
}

// Split over chunks when the sequential grid leaves most of the GPU idle (few batch rows x channel
// blocks for its SMs) and there are several chunks; tests force either form. The bound of 2 blocks
// per SM is from coil_scan_bench on an H100 (D = 1536, 32K tokens): split f+b is faster at B = 2 and 1
// (192 and 96 blocks), slower at B = 4 (384 blocks).
bool use_split(const Geo& g, const Tensor& t) {
  if (g_mode != ScanMode::kAuto) return g_mode == ScanMode::kSplit && g.nc > 1;
  int sms = 0;
  COIL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, t.device().index));
  return g.nc > 1 && g.B * g.nDB < 2 * int64_t(sms);
}

template <typename T>
void scan_fwd(const KernelArgs& a) {
  using S = compute_t<T>;
  check_arity(a, 6, 3);
  check_tensor<T>(a.in[0]);
  check_stat<T>(a.in[1], "dt");
  check_stat<T>(a.in[2], "A");
  const Geo g = geo_of(a.in[0], a.in[2]);
  LaunchContext ctx(a.in[0]);
  if (g.B * g.T * g.D == 0) return;
  const size_t smem = sizeof(S) * size_t(stage_len<S>()) * size_t(2 * g.dper + 2 * g.N);
  const T *u = a.in[0].data<T>(), *Bm = a.in[3].data<T>(), *Cm = a.in[4].data<T>();
  const S *dt = a.in[1].data<S>(), *A = a.in[2].data<S>();
  const S* h0 = a.in[5].defined() ? a.in[5].data<S>() : nullptr;
  T* y = a.out[0].data<T>();
  S *hT = a.out[1].data<S>(), *hc = a.out[2].data<S>();
  if (!use_split(g, a.in[0])) {
    const dim3 grid(unsigned(g.nDB), unsigned(g.B), 1);
    scan_fwd_kernel<T><<<grid, kBlock, smem, ctx.stream>>>(g, g.nc, u, dt, A, Bm, Cm, h0, nullptr, y, hc, hT,
                                                           nullptr);
    COIL_CUDA_CHECK_LAUNCH("selective_scan scan_fwd_kernel");
    return;
  }
  COIL_CHECK(g.nc <= 65535, "selective_scan on CUDA: ", g.nc, " chunks exceed the grid limit 65535");
  const Device dev = a.in[0].device();
  Tensor e = Tensor::empty({g.B * g.nc * g.D * g.N}, dtype_of<S>(), dev);
  Tensor p = Tensor::empty({g.B * g.nc * g.D * g.N}, dtype_of<S>(), dev);
  const dim3 grid(unsigned(g.nDB), unsigned(g.B), unsigned(g.nc));
  scan_fwd_kernel<T><<<grid, kBlock, smem, ctx.stream>>>(g, 1, u, dt, A, Bm, Cm, nullptr, nullptr, nullptr, nullptr,
                                                         e.data<S>(), p.data<S>());
  COIL_CUDA_CHECK_LAUNCH("selective_scan scan_fwd_kernel (local)");
  combine_fwd_kernel<S><<<grid_for(g.B * g.D * g.N), kThreads, 0, ctx.stream>>>(g, h0, e.data<S>(), p.data<S>(),
                                                                                hc, hT);
  COIL_CUDA_CHECK_LAUNCH("selective_scan combine_fwd_kernel");
  scan_fwd_kernel<T><<<grid, kBlock, smem, ctx.stream>>>(g, 1, u, dt, A, Bm, Cm, nullptr, hc, y, nullptr, nullptr,
                                                         nullptr);
  COIL_CUDA_CHECK_LAUNCH("selective_scan scan_fwd_kernel (output)");
}

template <typename T>
void scan_bwd(const KernelArgs& a) {
  using S = compute_t<T>;
  check_arity(a, 8, 6);
  check_tensor<T>(a.in[2]);
  check_stat<T>(a.in[3], "dt");
  const Geo g = geo_of(a.in[2], a.in[4]);
  LaunchContext ctx(a.in[2]);
  if (g.B * g.T * g.D == 0) return;
  const Device dev = a.in[2].device();
  const T *dy = a.in[0].data<T>(), *u = a.in[2].data<T>(), *Bm = a.in[5].data<T>(), *Cm = a.in[6].data<T>();
  const S *dt = a.in[3].data<S>(), *A = a.in[4].data<S>(), *hc = a.in[7].data<S>();
  const S* dhT = nullptr;
  if (a.in[1].defined()) {
    check_stat<T>(a.in[1], "dhT");
    dhT = a.in[1].data<S>();
  }
  S* dh0 = a.out[5].data<S>();
  constexpr int L = stage_len<S>();
  const bool split = use_split(g, a.in[2]);
  const int64_t states = g.B * g.D * g.N;
  // g carried into each chunk: split, per chunk from the combine pass; sequential, one buffer (dh0
  // itself) carried across segments.
  Tensor gend, dA_part;
  S* gbuf = dh0;
  if (split) {
    COIL_CHECK(g.nc <= 65535, "selective_scan on CUDA: ", g.nc, " chunks exceed the grid limit 65535");
    gend = Tensor::empty({g.B * g.nc * g.D * g.N}, dtype_of<S>(), dev);
    Tensor gl = Tensor::empty({g.B * g.nc * g.D * g.N}, dtype_of<S>(), dev);
    Tensor p = Tensor::empty({g.B * g.nc * g.D * g.N}, dtype_of<S>(), dev);
    const size_t smem_g = sizeof(S) * size_t(L) * size_t(2 * g.dper + g.N);
    local_g_kernel<T><<<dim3(unsigned(g.nDB), unsigned(g.B), unsigned(g.nc)), kBlock, smem_g, ctx.stream>>>(
        g, dy, dt, A, Cm, gl.data<S>(), p.data<S>());
    COIL_CUDA_CHECK_LAUNCH("selective_scan local_g_kernel");
    combine_bwd_kernel<S><<<grid_for(states), kThreads, 0, ctx.stream>>>(g, dhT, gl.data<S>(), p.data<S>(),
                                                                         gend.data<S>(), dh0);
    COIL_CUDA_CHECK_LAUNCH("selective_scan combine_bwd_kernel");
    gbuf = gend.data<S>();
    dA_part = Tensor::empty({g.B * g.nc * g.D * g.N}, dtype_of<S>(), dev);  // every entry written
  } else {
    const size_t bytes = size_t(states) * sizeof(S);
    if (dhT) COIL_CUDA_CHECK(cudaMemcpyAsync(gbuf, dhT, bytes, cudaMemcpyDeviceToDevice, ctx.stream));
    else COIL_CUDA_CHECK(cudaMemsetAsync(gbuf, 0, bytes, ctx.stream));
    dA_part = Tensor::empty({states}, dtype_of<S>(), dev);
    COIL_CUDA_CHECK(cudaMemsetAsync(dA_part.data<S>(), 0, bytes, ctx.stream));
  }
  const int64_t per_chunk = g.B * kChunk * g.nDB * g.N * int64_t(sizeof(S)) * 2;
  const int64_t seg_chunks = std::clamp<int64_t>(g_partial_bytes / per_chunk, 1, g.nc);
  const int64_t Lseg = seg_chunks * kChunk;
  Tensor pB = Tensor::empty({g.B * Lseg * g.nDB * g.N}, dtype_of<S>(), dev);
  Tensor pC = Tensor::empty({g.B * Lseg * g.nDB * g.N}, dtype_of<S>(), dev);
  const size_t smem =
      sizeof(S) * (size_t(L) * size_t(3 * g.dper + 2 * g.N) + 2 * size_t(L) * kWarps * size_t(g.G));
  for (int64_t c1 = g.nc; c1 > 0;) {
    const int64_t c0 = std::max<int64_t>(0, c1 - seg_chunks);
    const dim3 grid(unsigned(g.nDB), unsigned(g.B), split ? unsigned(c1 - c0) : 1u);
    scan_bwd_kernel<T><<<grid, kBlock, smem, ctx.stream>>>(g, c0, c1, split, Lseg, dy, u, dt, A, Bm, Cm, hc, gbuf,
                                                           dA_part.data<S>(), a.out[0].data<T>(), a.out[1].data<S>(),
                                                           pB.data<S>(), pC.data<S>());
    COIL_CUDA_CHECK_LAUNCH("selective_scan scan_bwd_kernel");
    const int64_t t_begin = c0 * kChunk, t_end = std::min(g.T, c1 * kChunk);
    partial_sum_kernel<T><<<grid_for(g.B * (t_end - t_begin) * g.N), kThreads, 0, ctx.stream>>>(
        g, t_begin, t_end, Lseg, pB.data<S>(), pC.data<S>(), a.out[3].data<T>(), a.out[4].data<T>());
    COIL_CUDA_CHECK_LAUNCH("selective_scan partial_sum_kernel");
    c1 = c0;
  }
  // dA: the partials of every batch row (and chunk, split) in order.
  batch_sum_kernel<S><<<grid_for(g.D * g.N), kThreads, 0, ctx.stream>>>(split ? g.B * g.nc : g.B, g.D * g.N,
                                                                       dA_part.data<S>(), a.out[2].data<S>());
  COIL_CUDA_CHECK_LAUNCH("selective_scan batch_sum_kernel");
}

}  // namespace

int64_t selective_scan_partial_budget(int64_t bytes) {
  const int64_t prev = g_partial_bytes;
  if (bytes > 0) g_partial_bytes = bytes;
  return prev;
}

ScanMode selective_scan_mode(ScanMode mode) {
  const ScanMode prev = g_mode;
  g_mode = mode;
  return prev;
}

COIL_CUDA_FLOAT_KERNELS(SelectiveScan, scan_fwd);
COIL_CUDA_FLOAT_KERNELS(SelectiveScanBackward, scan_bwd);

}  // namespace coil::cuda
