// Mamba-2 SSD in chunks on CUDA (ops SsdChunked / SsdChunkedBackward; contract in core/op_list.h, the
// CPU oracle in kernels/cpu/ssd.cpp). The chunked design: every product with a reduction dimension of a
// chunk (C tokens), the state width N or the head width P is a strided-batched GEMM through cuBLASLt
// (kernels/cuda/gemm.h: bf16 operands with fp32 accumulation, f32 in fp32, f64 in fp64); small kernels
// do the rest in the compute type with the log decay, its cumsum and the states in the statistics
// precision (fp32 for bf16).
//
// Per (b, head h of group g, chunk c), b_i the chunk-local cumsum of a and b_L its last value:
//   scores  Q K^T                  (C x C, once per group: heads of a group share q and k)
//   M       scores e^{b_i - b_j}, j <= i (masked before exp: exp is formed only for j <= i)
//   y       M V + e^{b_i} Z,       Z = Q S_c^T   (the readout of the state S_c entering the chunk)
//   local   V^T diag(e^{b_L - b_j}) K           (P x N, the chunk's own contribution to the state)
//   scan    S_{c+1} = e^{b_L} S_c + local_c     (parallel over (b, h, p, n), sequential over chunks)
// Heads of one group appear side by side in the "grouped" layouts, so that a GEMM over a group's heads
// is one matrix: per-head token tensors (b, g, c, i, head-in-group, p) and per-head states (b, g, c,
// head-in-group, p, n). For G = H they are the natural (B, H, T, P) and (B, H, nc, P, N); for G = 1 a
// product over every head of q or k (Z, local and their gradients) is a single GEMM with hpg * P rows.
//
// The backward runs the same pieces in reverse, with D_c the gradient of the state leaving chunk c
// (D_{nc-1} = dsT; D_{c-1} = e^{b_L} D_c + R_c, R = (dy e^{b})^T Q):
//   dM = dY V^T;  dscore = sum over the group's heads of dM e^{b_i - b_j} (masked);
//   dQ = dscore K + (dY e^{b}) S;  dK = dscore^T Q + (V e^{b_L - b}) D;  dV = M^T dY + e^{b_L - b} K D^T;
//   db from the intra scores (row minus column sums of W = M dM per head), the readout
//   (e^{b_i} dy_i . Z_i), the state inputs (-e^{b_L - b_j} v_j . D k_j, their sum at b_L) and the decay
//   (e^{b_L} <D, S>); da is the reverse cumsum of db in each chunk.
// T need not be a multiple of C: q, k, v (and dy) are copied into zero-padded buffers, where padded
// tokens (a = 0, zero k and v) leave the state and every gradient unchanged.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/ops.h"
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/gemm.h"

namespace coil::cuda {
namespace {

struct Geo {
  int64_t B, H, G, T, N, P, C, nc, Tp, hpg;
  // Offsets into the grouped layouts (see the top of the file).
  __host__ __device__ int64_t gtok(int64_t b, int64_t h, int64_t c, int64_t i, int64_t p) const {
    const int64_t g = h / hpg, hh = h - g * hpg;
    return ((((b * G + g) * nc + c) * C + i) * hpg + hh) * P + p;
  }
  __host__ __device__ int64_t gstate(int64_t b, int64_t h, int64_t c, int64_t p, int64_t n) const {
    const int64_t g = h / hpg, hh = h - g * hpg;
    return ((((b * G + g) * nc + c) * hpg + hh) * P + p) * N + n;
  }
};

Geo geo_of(const KernelArgs& a, const Tensor& q, const Tensor& v) {
  COIL_INTERNAL_ASSERT(q.dim() == 4 && v.dim() == 4 && a.attrs.dim > 0, "ssd_chunked: expected q (B, G, T, N), "
                       "v (B, H, T, P) and a positive chunk, got ", q.describe(), ", ", v.describe());
  Geo g;
  g.B = v.size(0);
  g.H = v.size(1);
  g.G = q.size(1);
  g.T = v.size(2);
  g.N = q.size(3);
  g.P = v.size(3);
  g.C = a.attrs.dim;
  g.nc = (g.T + g.C - 1) / g.C;
  g.Tp = g.nc * g.C;
  g.hpg = g.H / g.G;
  COIL_CHECK(g.C <= 1024, "ssd_chunked on CUDA: chunk ", g.C, " exceeds 1024 tokens");
  return g;
}

template <typename S>
__device__ __forceinline__ S dexp(S x) {
  if constexpr (std::is_same_v<S, float>) return expf(x);
  else return ::exp(x);
}

// bcs (B, H, Tp): the chunk-local cumsum of a, 0 past T. One warp per (b, h, chunk) (blockDim (32, 8)),
// a warp prefix sum over each 32 tokens plus the carry.
template <typename S>
__global__ void cumsum_kernel(Geo g, const S* __restrict__ a, S* __restrict__ bcs) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (e >= g.B * g.H * g.nc) return;  // whole warps
  const int64_t bh = e / g.nc, c = e - bh * g.nc;
  const int lane = int(threadIdx.x);
  S carry = 0;
  for (int64_t i0 = 0; i0 < g.C; i0 += 32) {
    const int64_t i = i0 + lane, t = c * g.C + i;
    S x = (i < g.C && t < g.T) ? a[bh * g.T + t] : S(0);
    for (int off = 1; off < 32; off <<= 1) {
      const S y = __shfl_up_sync(0xffffffffu, x, off);
      if (lane >= off) x += y;
    }
    x += carry;
    if (i < g.C) bcs[bh * g.Tp + t] = x;
    carry = __shfl_sync(0xffffffffu, x, 31);
  }
}

// dst (R, Tp, W) = src (R, T, W) followed by zero rows.
template <typename T>
__global__ void pad_kernel(int64_t R, int64_t Tn, int64_t Tp, int64_t W, const T* __restrict__ src,
                           T* __restrict__ dst) {
  for (int64_t e = grid_index(); e < R * Tp * W; e += grid_stride()) {
    const int64_t w = e % W, rt = e / W, t = rt % Tp, r = rt / Tp;
    dst[e] = t < Tn ? src[(r * Tn + t) * W + w] : T(0.0f);
  }
}

// dst (R, T, W) = the first T rows of src (R, Tp, W).
template <typename T>
__global__ void unpad_kernel(int64_t R, int64_t Tn, int64_t Tp, int64_t W, const T* __restrict__ src,
                             T* __restrict__ dst) {
  for (int64_t e = grid_index(); e < R * Tn * W; e += grid_stride()) {
    const int64_t w = e % W, rt = e / W, t = rt % Tn, r = rt / Tn;
    dst[e] = src[(r * Tp + t) * W + w];
  }
}

// M (B, H, nc, C, C) = scores (B, G, nc, C, C) e^{b_i - b_j} for j <= i, else 0. One block per
// (b, h, chunk), threads (32, 8) over (j, i): no index division per element.
template <typename T, typename S>
__global__ void mask_kernel(Geo g, const T* __restrict__ scores, const S* __restrict__ bcs, T* __restrict__ M) {
  const int64_t bhc = blockIdx.x, c = bhc % g.nc, bh = bhc / g.nc, h = bh % g.H, b = bh / g.H;
  const int64_t CC = g.C * g.C;
  const S* bb = bcs + bh * g.Tp + c * g.C;
  const T* sb = scores + ((b * g.G + h / g.hpg) * g.nc + c) * CC;
  T* mb = M + bhc * CC;
  for (int64_t i = threadIdx.y; i < g.C; i += blockDim.y) {
    const S bi = bb[i];
    for (int64_t j = threadIdx.x; j < g.C; j += blockDim.x)
      mb[i * g.C + j] = from_compute<T>(j <= i ? S(to_compute(sb[i * g.C + j])) * dexp(bi - bb[j]) : S(0));
  }
}

// Token rows: grid (B H, ceil(Tp / 8)), threads (32, 8): one row (b, h, t) per threadIdx.y, P along x.
// dst (grouped token layout) = src (B, H, Tp, P) e^{b_L - b_t} (to_end) or e^{b_t}.
template <typename T, typename S>
__global__ void token_scale_kernel(Geo g, const T* __restrict__ src, const S* __restrict__ bcs, bool to_end,
                                   T* __restrict__ dst) {
  const int64_t bh = blockIdx.x, h = bh % g.H, b = bh / g.H;
  const int64_t t = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  if (t >= g.Tp) return;
  const int64_t c = t / g.C, i = t - c * g.C;
  const S bt = bcs[bh * g.Tp + t];
  const S f = to_end ? dexp(bcs[bh * g.Tp + c * g.C + g.C - 1] - bt) : dexp(bt);
  const T* srow = src + (bh * g.Tp + t) * g.P;
  T* drow = dst + g.gtok(b, h, c, i, 0);
  for (int64_t p = threadIdx.x; p < g.P; p += blockDim.x) drow[p] = from_compute<T>(S(to_compute(srow[p])) * f);
}

// out (B, H, T, P) = base (B, H, Tp, P) + f_t grouped (grouped token layout), f_t = e^{b_t} (the readout
// into y) or e^{b_L - b_t} (the state's gradient into dv). Rows as token_scale_kernel.
template <typename T, typename S>
__global__ void combine_kernel(Geo g, const T* __restrict__ base, const T* __restrict__ grouped,
                               const S* __restrict__ bcs, bool to_end, T* __restrict__ out) {
  const int64_t bh = blockIdx.x, h = bh % g.H, b = bh / g.H;
  const int64_t t = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  if (t >= g.T) return;
  const int64_t c = t / g.C, i = t - c * g.C;
  const S bt = bcs[bh * g.Tp + t];
  const S f = to_end ? dexp(bcs[bh * g.Tp + c * g.C + g.C - 1] - bt) : dexp(bt);
  const T *brow = base + (bh * g.Tp + t) * g.P, *grow = grouped + g.gtok(b, h, c, i, 0);
  T* orow = out + (bh * g.T + t) * g.P;
  for (int64_t p = threadIdx.x; p < g.P; p += blockDim.x)
    orow[p] = from_compute<T>(S(to_compute(brow[p])) + f * S(to_compute(grow[p])));
}

// The inter-chunk scan, one thread per (b, h, p, n): sc[c] = S entering chunk c (saved, statistics
// precision), Sx its copy in the GEMM dtype (grouped state layout), sT the final state. The loads of
// kUnroll chunks are issued before their sequential updates, so the chain waits on memory less often.
constexpr int kUnroll = 4;

template <typename T, typename S>
__global__ void scan_fwd_kernel(Geo g, const S* __restrict__ bcs, const T* __restrict__ local,
                                const S* __restrict__ s0, S* __restrict__ sc, T* __restrict__ Sx, S* __restrict__ sT) {
  const int64_t PN = g.P * g.N;
  for (int64_t e = grid_index(); e < g.B * g.H * PN; e += grid_stride()) {
    const int64_t pn = e % PN, bh = e / PN, h = bh % g.H, b = bh / g.H, p = pn / g.N, n = pn - p * g.N;
    S s = s0 ? s0[e] : S(0);
    for (int64_t c0 = 0; c0 < g.nc; c0 += kUnroll) {
      S l[kUnroll], d[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (c0 + u < g.nc) {
          l[u] = S(to_compute(local[g.gstate(b, h, c0 + u, p, n)]));
          d[u] = dexp(bcs[bh * g.Tp + (c0 + u) * g.C + g.C - 1]);
        }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (c0 + u < g.nc) {
          sc[(bh * g.nc + c0 + u) * PN + pn] = s;
          Sx[g.gstate(b, h, c0 + u, p, n)] = from_compute<T>(s);
          s = d[u] * s + l[u];
        }
    }
    sT[e] = s;
  }
}

// The reverse scan of the state's gradient, one thread per (b, h, p, n): dSx[c] = D_c (the gradient
// of the state leaving chunk c, GEMM dtype, grouped), Sx[c] = S_c (sc in the GEMM dtype, grouped, for
// the GEMMs after it), ddec[b, h, c] += e^{b_L} D_c S_c summed over (p, n), ds0 = D entering chunk 0.
// When P N is a multiple of 32 a warp shares (b, h) and reduces before its one atomic.
template <typename T, typename S>
__global__ void scan_bwd_kernel(Geo g, const S* __restrict__ bcs, const T* __restrict__ R,
                                const S* __restrict__ sc, const S* __restrict__ dsT, T* __restrict__ dSx,
                                T* __restrict__ Sx, S* __restrict__ ddec, S* __restrict__ ds0) {
  const int64_t PN = g.P * g.N;
  const bool warp_uniform = PN % 32 == 0;
  for (int64_t e = grid_index(); e < g.B * g.H * PN; e += grid_stride()) {
    const int64_t pn = e % PN, bh = e / PN, h = bh % g.H, b = bh / g.H, p = pn / g.N, n = pn - p * g.N;
    S d = dsT ? dsT[e] : S(0);
    for (int64_t c0 = g.nc - 1; c0 >= 0; c0 -= kUnroll) {
      S r[kUnroll], st[kUnroll], eL[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (c0 - u >= 0) {
          const int64_t c = c0 - u;
          r[u] = S(to_compute(R[g.gstate(b, h, c, p, n)]));
          st[u] = sc[(bh * g.nc + c) * PN + pn];
          eL[u] = dexp(bcs[bh * g.Tp + c * g.C + g.C - 1]);
        }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (c0 - u >= 0) {
          const int64_t c = c0 - u, gi = g.gstate(b, h, c, p, n);
          dSx[gi] = from_compute<T>(d);
          Sx[gi] = from_compute<T>(st[u]);
          S part = eL[u] * d * st[u];
          if (warp_uniform) {
            for (int off = 16; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
            if ((threadIdx.x & 31) == 0) atomicAdd(&ddec[bh * g.nc + c], part);
          } else {
            atomicAdd(&ddec[bh * g.nc + c], part);
          }
          d = eL[u] * d + r[u];
        }
    }
    ds0[e] = d;
  }
}

// dscore (B, G, nc, C, C) = sum over the group's heads of dM e^{b_i - b_j} for j <= i, else 0. One block
// per (b, g, chunk), threads (32, 8) over (j, i).
template <typename T, typename S>
__global__ void dscore_kernel(Geo g, const T* __restrict__ dM, const S* __restrict__ bcs, T* __restrict__ dscore) {
  const int64_t CC = g.C * g.C;
  const int64_t bgc = blockIdx.x, c = bgc % g.nc, bg = bgc / g.nc, gi = bg % g.G, b = bg / g.G;
  for (int64_t i = threadIdx.y; i < g.C; i += blockDim.y)
    for (int64_t j = threadIdx.x; j < g.C; j += blockDim.x) {
      S acc = 0;
      if (j <= i)
        for (int64_t hh = 0; hh < g.hpg; ++hh) {
          const int64_t bh = b * g.H + gi * g.hpg + hh;
          const S* bb = bcs + bh * g.Tp + c * g.C;
          acc += S(to_compute(dM[(bh * g.nc + c) * CC + i * g.C + j])) * dexp(bb[i] - bb[j]);
        }
      dscore[bgc * CC + i * g.C + j] = from_compute<T>(acc);
    }
}

// One block per (b, h, chunk), threads (32, 8): db (B, H, Tp) = the intra-chunk part of d(cumsum), row
// sums minus column sums of W = M dM (M already holds the masked scores e^{b_i - b_j}). A warp owns a
// row (reduced by shuffles); columns gather in shared memory.
template <typename T, typename S>
__global__ void db_intra_kernel(Geo g, const T* __restrict__ M, const T* __restrict__ dM, S* __restrict__ db) {
  extern __shared__ unsigned char smem_raw[];
  S* rows = reinterpret_cast<S*>(smem_raw);
  S* cols = rows + g.C;
  const int64_t bhc = blockIdx.x, c = bhc % g.nc, bh = bhc / g.nc;
  const int tid = int(threadIdx.y * blockDim.x + threadIdx.x);
  for (int64_t x = tid; x < 2 * g.C; x += blockDim.x * blockDim.y) rows[x] = 0;
  __syncthreads();
  const int64_t CC = g.C * g.C;
  const T *Mb = M + bhc * CC, *dMb = dM + bhc * CC;
  for (int64_t i = threadIdx.y; i < g.C; i += blockDim.y) {
    S r = 0;
    for (int64_t j0 = 0; j0 <= i; j0 += 32) {
      const int64_t j = j0 + threadIdx.x;
      if (j <= i) {
        const S w = S(to_compute(Mb[i * g.C + j])) * S(to_compute(dMb[i * g.C + j]));
        atomicAdd(&cols[j], w);
        r += w;
      }
    }
    for (int off = 16; off > 0; off >>= 1) r += __shfl_xor_sync(0xffffffffu, r, off);
    if (threadIdx.x == 0) rows[i] = r;
  }
  __syncthreads();
  for (int64_t i = tid; i < g.C; i += blockDim.x * blockDim.y) db[bh * g.Tp + c * g.C + i] = rows[i] - cols[i];
}

// One block of C threads per (b, h, chunk): adds to db the readout (e^{b_i} dy_i . Z_i) and state-input
// (-e^{b_L - b_i} v_i . U_i, their sum and the decay term at the chunk's last position) parts, then
// writes da as the reverse cumsum of db inside the chunk.
template <typename T, typename S>
__global__ void da_kernel(Geo g, const T* __restrict__ dyp, const T* __restrict__ vp, const T* __restrict__ Z,
                          const T* __restrict__ U, const S* __restrict__ bcs, const S* __restrict__ db,
                          const S* __restrict__ ddec, S* __restrict__ da) {
  extern __shared__ unsigned char smem_raw[];
  S* dbs = reinterpret_cast<S*>(smem_raw);
  S* us = dbs + g.C;
  const int64_t bhc = blockIdx.x, c = bhc % g.nc, bh = bhc / g.nc, h = bh % g.H, b = bh / g.H;
  const int64_t i = threadIdx.x, t = c * g.C + i;
  const S* bb = bcs + bh * g.Tp + c * g.C;
  const S bL = bb[g.C - 1];
  S r = 0, u = 0;
  for (int64_t p = 0; p < g.P; ++p) {
    const int64_t gt = g.gtok(b, h, c, i, p), nt = (bh * g.Tp + t) * g.P + p;
    r += S(to_compute(dyp[nt])) * S(to_compute(Z[gt]));
    u += S(to_compute(vp[nt])) * S(to_compute(U[gt]));
  }
  u *= dexp(bL - bb[i]);
  dbs[i] = db[bh * g.Tp + t] + dexp(bb[i]) * r - u;
  us[i] = u;
  __syncthreads();
  if (i == 0) {
    S usum = ddec[bh * g.nc + c];
    for (int64_t x = 0; x < g.C; ++x) usum += us[x];
    S acc = usum;
    for (int64_t x = g.C - 1; x >= 0; --x) {
      acc += dbs[x];
      if (c * g.C + x < g.T) da[bh * g.T + c * g.C + x] = acc;
    }
  }
}

// Grid of the token-row kernels: x over (b, h), y over rows of 8 tokens.
dim3 row_grid(const Geo& g, int64_t rows) {
  const int64_t y = (rows + 7) / 8;
  COIL_CHECK(y <= 65535 && g.B * g.H <= 2147483647, "ssd_chunked on CUDA: ", rows, " tokens per sequence exceed "
             "the grid limit");
  return dim3(unsigned(g.B * g.H), unsigned(y), 1);
}

// One strided-batched GEMM in the dtype T (see gemm.h for the row-major convention).
template <typename T>
void bgemm(cudaStream_t stream, int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t batch,
           const T* a, int64_t sa, const T* b, int64_t sb, T* c, int64_t sc, bool accumulate = false) {
  const GemmCall call =
      batched_gemm_call(dtype_of<T>(), ta, tb, M, N, K, batch, a, sa, b, sb, c, sc, accumulate);
  gemm(call, device, stream);
}

template <typename T>
T* buf(Tensor& holder, int64_t n, DType t, Device dev) {
  holder = Tensor::empty({n}, t, dev);
  return holder.data<T>();
}

// The padded-to-Tp copy of x (R, T, W), or x itself when T is a multiple of C.
template <typename T>
const T* padded(const Geo& g, cudaStream_t stream, const Tensor& x, int64_t R, int64_t W, Tensor& holder) {
  if (g.Tp == g.T) return x.data<T>();
  T* p = buf<T>(holder, R * g.Tp * W, dtype_of<T>(), x.device());
  pad_kernel<T><<<grid_for(R * g.Tp * W), kThreads, 0, stream>>>(R, g.T, g.Tp, W, x.data<T>(), p);
  COIL_CUDA_CHECK_LAUNCH("ssd pad_kernel");
  return p;
}

// The pieces both passes recompute: bcs, the padded q, k, v and the masked scores M (and scores).
template <typename T>
struct Common {
  using S = compute_t<T>;
  Tensor h_bcs, h_q, h_k, h_v, h_scores, h_M;
  const S* bcs;
  const T *qp, *kp, *vp, *scores, *M;
};

template <typename T>
void common(const Geo& g, cudaStream_t stream, int device, const Tensor& q, const Tensor& k, const Tensor& v,
            const Tensor& a, Common<T>& cm) {
  using S = compute_t<T>;
  const Device dev = v.device();
  const DType dt = dtype_of<T>(), st = dtype_of<S>();
  S* bcs = buf<S>(cm.h_bcs, g.B * g.H * g.Tp, st, dev);
  cumsum_kernel<S><<<unsigned((g.B * g.H * g.nc + 7) / 8), dim3(32, 8), 0, stream>>>(g, a.data<S>(), bcs);
  COIL_CUDA_CHECK_LAUNCH("ssd cumsum_kernel");
  cm.bcs = bcs;
  cm.qp = padded<T>(g, stream, q, g.B * g.G, g.N, cm.h_q);
  cm.kp = padded<T>(g, stream, k, g.B * g.G, g.N, cm.h_k);
  cm.vp = padded<T>(g, stream, v, g.B * g.H, g.P, cm.h_v);
  const int64_t CC = g.C * g.C;
  T* scores = buf<T>(cm.h_scores, g.B * g.G * g.nc * CC, dt, dev);
  bgemm<T>(stream, device, false, true, g.C, g.C, g.N, g.B * g.G * g.nc, cm.qp, g.C * g.N, cm.kp, g.C * g.N, scores,
           CC);
  T* M = buf<T>(cm.h_M, g.B * g.H * g.nc * CC, dt, dev);
  mask_kernel<T, S><<<unsigned(g.B * g.H * g.nc), dim3(32, 8), 0, stream>>>(g, scores, bcs, M);
  COIL_CUDA_CHECK_LAUNCH("ssd mask_kernel");
  cm.scores = scores;
  cm.M = M;
}

template <typename T>
void check_inputs(const KernelArgs& a, int first) {
  using S = compute_t<T>;
  for (int x = first; x < first + 3; ++x) check_tensor<T>(a.in[size_t(x)]);
  COIL_INTERNAL_ASSERT(a.in[size_t(first + 3)].dtype() == dtype_of<S>(), "ssd_chunked: a must be in the statistics "
                       "dtype, got ", a.in[size_t(first + 3)].describe());
}

template <typename T>
void ssd_fwd(const KernelArgs& a) {
  using S = compute_t<T>;
  check_arity(a, 5, 3);
  check_inputs<T>(a, 0);
  const Geo g = geo_of(a, a.in[0], a.in[2]);
  LaunchContext ctx(a.in[2]);
  const int device = a.in[2].device().index;
  const Device dev = a.in[2].device();
  const DType dt = dtype_of<T>();
  Common<T> cm;
  common<T>(g, ctx.stream, device, a.in[0], a.in[1], a.in[2], a.in[3], cm);
  const int64_t HP = g.hpg * g.P, CC = g.C * g.C;
  const int64_t batch_h = g.B * g.H * g.nc, batch_g = g.B * g.G * g.nc;
  Tensor h_yi, h_vw, h_loc, h_Sx, h_Z;
  // Intra-chunk: yi = M V.
  T* yi = buf<T>(h_yi, g.B * g.H * g.Tp * g.P, dt, dev);
  bgemm<T>(ctx.stream, device, false, false, g.C, g.P, g.C, batch_h, cm.M, CC, cm.vp, g.C * g.P, yi, g.C * g.P);
  // Chunk states: local = (V e^{b_L - b})^T K, every head of a group in one GEMM.
  T* vw = buf<T>(h_vw, g.B * g.H * g.Tp * g.P, dt, dev);
  token_scale_kernel<T, S><<<row_grid(g, g.Tp), dim3(32, 8), 0, ctx.stream>>>(g, cm.vp, cm.bcs, true, vw);
  COIL_CUDA_CHECK_LAUNCH("ssd token_scale_kernel");
  T* loc = buf<T>(h_loc, g.B * g.H * g.nc * g.P * g.N, dt, dev);
  bgemm<T>(ctx.stream, device, true, false, HP, g.N, g.C, batch_g, vw, g.C * HP, cm.kp, g.C * g.N, loc, HP * g.N);
  // The scan between chunks.
  T* Sx = buf<T>(h_Sx, g.B * g.H * g.nc * g.P * g.N, dt, dev);
  const S* s0 = a.in[4].defined() ? a.in[4].data<S>() : nullptr;
  scan_fwd_kernel<T, S><<<grid_for(g.B * g.H * g.P * g.N), kThreads, 0, ctx.stream>>>(
      g, cm.bcs, loc, s0, a.out[2].data<S>(), Sx, a.out[1].data<S>());
  COIL_CUDA_CHECK_LAUNCH("ssd scan_fwd_kernel");
  // Readout: Z = Q S^T for every head of a group, y = yi + e^{b} Z.
  T* Z = buf<T>(h_Z, g.B * g.H * g.Tp * g.P, dt, dev);
  bgemm<T>(ctx.stream, device, false, true, g.C, HP, g.N, batch_g, cm.qp, g.C * g.N, Sx, HP * g.N, Z, g.C * HP);
  combine_kernel<T, S><<<row_grid(g, g.T), dim3(32, 8), 0, ctx.stream>>>(g, yi, Z, cm.bcs, false, a.out[0].data<T>());
  COIL_CUDA_CHECK_LAUNCH("ssd combine_kernel (y)");
}

template <typename T>
void ssd_bwd(const KernelArgs& a) {
  using S = compute_t<T>;
  check_arity(a, 7, 5);
  check_inputs<T>(a, 2);
  check_tensor<T>(a.in[0]);
  const Geo g = geo_of(a, a.in[2], a.in[4]);
  LaunchContext ctx(a.in[4]);
  const int device = a.in[4].device().index;
  const Device dev = a.in[4].device();
  const DType dt = dtype_of<T>(), st = dtype_of<S>();
  Common<T> cm;
  common<T>(g, ctx.stream, device, a.in[2], a.in[3], a.in[4], a.in[5], cm);
  const int64_t HP = g.hpg * g.P, CC = g.C * g.C;
  const int64_t batch_h = g.B * g.H * g.nc, batch_g = g.B * g.G * g.nc;
  const int64_t tokP = g.B * g.H * g.Tp * g.P, states = g.B * g.H * g.nc * g.P * g.N;
  Tensor h_dy, h_dyw, h_vw, h_Sx, h_Z, h_R, h_dSx, h_U, h_dM, h_dvi, h_dscore, h_db, h_ddec, h_dq, h_dk;
  const T* dyp = padded<T>(g, ctx.stream, a.in[0], g.B * g.H, g.P, h_dy);
  const S* sc = a.in[6].data<S>();
  // Recomputed forward piece: V e^{b_L - b}.
  T* vw = buf<T>(h_vw, tokP, dt, dev);
  token_scale_kernel<T, S><<<row_grid(g, g.Tp), dim3(32, 8), 0, ctx.stream>>>(g, cm.vp, cm.bcs, true, vw);
  COIL_CUDA_CHECK_LAUNCH("ssd token_scale_kernel (v)");
  // R = (dY e^{b})^T Q per chunk, then the reverse scan of the state's gradient (which also lays out the
  // entering states in the GEMM dtype).
  T* dyw = buf<T>(h_dyw, tokP, dt, dev);
  token_scale_kernel<T, S><<<row_grid(g, g.Tp), dim3(32, 8), 0, ctx.stream>>>(g, dyp, cm.bcs, false, dyw);
  COIL_CUDA_CHECK_LAUNCH("ssd token_scale_kernel (dy)");
  T* R = buf<T>(h_R, states, dt, dev);
  bgemm<T>(ctx.stream, device, true, false, HP, g.N, g.C, batch_g, dyw, g.C * HP, cm.qp, g.C * g.N, R, HP * g.N);
  T* dSx = buf<T>(h_dSx, states, dt, dev);
  T* Sx = buf<T>(h_Sx, states, dt, dev);
  S* ddec = buf<S>(h_ddec, g.B * g.H * g.nc, st, dev);
  COIL_CUDA_CHECK(cudaMemsetAsync(ddec, 0, size_t(g.B * g.H * g.nc) * sizeof(S), ctx.stream));
  const S* dsT = a.in[1].defined() ? a.in[1].data<S>() : nullptr;
  {
    // Whole warps, so that the warp reduction of scan_bwd_kernel sees every lane.
    const int64_t n = g.B * g.H * g.P * g.N;
    scan_bwd_kernel<T, S><<<grid_for(n), kThreads, 0, ctx.stream>>>(g, cm.bcs, R, sc, dsT, dSx, Sx, ddec,
                                                                    a.out[4].data<S>());
    COIL_CUDA_CHECK_LAUNCH("ssd scan_bwd_kernel");
  }
  // The readout recomputed: Z = Q S^T.
  T* Z = buf<T>(h_Z, tokP, dt, dev);
  bgemm<T>(ctx.stream, device, false, true, g.C, HP, g.N, batch_g, cm.qp, g.C * g.N, Sx, HP * g.N, Z, g.C * HP);
  // U = K D^T (every head of a group): dv's state part and the state inputs' part of db.
  T* U = buf<T>(h_U, tokP, dt, dev);
  bgemm<T>(ctx.stream, device, false, true, g.C, HP, g.N, batch_g, cm.kp, g.C * g.N, dSx, HP * g.N, U, g.C * HP);
  // Intra-chunk: dM = dY V^T, dv = M^T dY + e^{b_L - b} U.
  T* dM = buf<T>(h_dM, g.B * g.H * g.nc * CC, dt, dev);
  bgemm<T>(ctx.stream, device, false, true, g.C, g.C, g.P, batch_h, dyp, g.C * g.P, cm.vp, g.C * g.P, dM, CC);
  T* dvi = buf<T>(h_dvi, tokP, dt, dev);
  bgemm<T>(ctx.stream, device, true, false, g.C, g.P, g.C, batch_h, cm.M, CC, dyp, g.C * g.P, dvi, g.C * g.P);
  combine_kernel<T, S><<<row_grid(g, g.T), dim3(32, 8), 0, ctx.stream>>>(g, dvi, U, cm.bcs, true, a.out[2].data<T>());
  COIL_CUDA_CHECK_LAUNCH("ssd combine_kernel (dv)");
  // dscore (summed over a group's heads) and the intra part of db.
  T* dscore = buf<T>(h_dscore, g.B * g.G * g.nc * CC, dt, dev);
  dscore_kernel<T, S><<<unsigned(batch_g), dim3(32, 8), 0, ctx.stream>>>(g, dM, cm.bcs, dscore);
  COIL_CUDA_CHECK_LAUNCH("ssd dscore_kernel");
  S* db = buf<S>(h_db, g.B * g.H * g.Tp, st, dev);
  db_intra_kernel<T, S><<<unsigned(batch_h), dim3(32, 8), size_t(2 * g.C) * sizeof(S), ctx.stream>>>(g, cm.M, dM, db);
  COIL_CUDA_CHECK_LAUNCH("ssd db_intra_kernel");
  da_kernel<T, S><<<unsigned(batch_h), unsigned(g.C), size_t(2 * g.C) * sizeof(S), ctx.stream>>>(
      g, dyp, cm.vp, Z, U, cm.bcs, db, ddec, a.out[3].data<S>());
  COIL_CUDA_CHECK_LAUNCH("ssd da_kernel");
  // dq = dscore K + (dY e^{b}) S, dk = dscore^T Q + (V e^{b_L - b}) D, per group.
  const bool pad = g.Tp != g.T;
  T* dq = pad ? buf<T>(h_dq, g.B * g.G * g.Tp * g.N, dt, dev) : a.out[0].data<T>();
  T* dk = pad ? buf<T>(h_dk, g.B * g.G * g.Tp * g.N, dt, dev) : a.out[1].data<T>();
  bgemm<T>(ctx.stream, device, false, false, g.C, g.N, g.C, batch_g, dscore, CC, cm.kp, g.C * g.N, dq, g.C * g.N);
  bgemm<T>(ctx.stream, device, false, false, g.C, g.N, HP, batch_g, dyw, g.C * HP, Sx, HP * g.N, dq, g.C * g.N, true);
  bgemm<T>(ctx.stream, device, true, false, g.C, g.N, g.C, batch_g, dscore, CC, cm.qp, g.C * g.N, dk, g.C * g.N);
  bgemm<T>(ctx.stream, device, false, false, g.C, g.N, HP, batch_g, vw, g.C * HP, dSx, HP * g.N, dk, g.C * g.N, true);
  if (pad) {
    const int64_t n = g.B * g.G * g.T * g.N;
    unpad_kernel<T><<<grid_for(n), kThreads, 0, ctx.stream>>>(g.B * g.G, g.T, g.Tp, g.N, dq, a.out[0].data<T>());
    COIL_CUDA_CHECK_LAUNCH("ssd unpad_kernel (dq)");
    unpad_kernel<T><<<grid_for(n), kThreads, 0, ctx.stream>>>(g.B * g.G, g.T, g.Tp, g.N, dk, a.out[1].data<T>());
    COIL_CUDA_CHECK_LAUNCH("ssd unpad_kernel (dk)");
  }
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(SsdChunked, ssd_fwd);
COIL_CUDA_FLOAT_KERNELS(SsdChunkedBackward, ssd_bwd);

}  // namespace coil::cuda
