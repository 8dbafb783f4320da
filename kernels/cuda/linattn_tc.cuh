// The tensor-core kernels of the masked quadratic linear attention (bf16, D = Dv = 64), used by
// linattn.cu. Layout: q, k, v, y, dO (B, T, H, 64) bf16; acs, dacs (B, T, H) f32; den (B, H, T) f32;
// the backward's row statistics rc = 1 / c_i and dl (B, H, Tpad) f32, zero past T.
//
// Tiles of 64 tokens x 64 channels sit in shared memory with their 16-byte chunks XOR-swizzled by row
// (chunk ^ (row % 8)), so the eight rows an ldmatrix phase reads fall in eight different bank groups.
// A CTA is 4 warps running mma.sync m16n8k16 (bf16 in, fp32 accumulate): the forward's warps own 32
// query rows each (128 per CTA), the backward's 16 rows (64 query or key rows per CTA; more would not
// fit the registers at two CTAs per SM). A score tile (rows x 64) comes out in the accumulator layout,
// which is also the A-operand layout of the next GEMM, so the weights never leave registers. The next
// tile's loads (cp.async) overlap the current tile's math (two buffers). The decay enters as
// 2^(a2_i - a2_j) with a2 = acs log2 e laid out (B, H, Tpad) by acs_prep_kernel, s^power folded in.
//
// The exp form (template power P = kPowerExp, 2Mamba-E) works in base 2 throughout: the logit is
// x_ij = acc (s log2 e) + a2_i - a2_j (sp = s log2 e). The forward keeps FlashAttention's running row
// max m_i (the numerator and the bf16-rounded row sum are rescaled by 2^(m_old - m_new) when it grows)
// and stores den_i = (m_i + log2 l_i) ln 2, the natural log-sum-exp; the backward's row statistic rc_i
// is that log-sum-exp times log2 e (lse2) and both gradient kernels recompute P_ij = 2^(x_ij - lse2_i).
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/device.h"

namespace coil::cuda::tc {

inline constexpr int kDim = 64;   // head dim (D and Dv) of the tensor-core path
inline constexpr int kTile = 64;  // tokens per tile (queries and keys)
inline constexpr int kThreadsTc = 128;
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;
inline constexpr float kEpsF = 1e-8f;  // the denominator clamp (core/ops.h kLinAttnDenominatorEps)
inline constexpr int kPowerExp = 0;    // core/ops.h kLinAttnPowerExp: softmax weights (2Mamba-E)

struct Problem {
  int64_t B, T, H;
  double scale;  // s > 0 on this path (its power is folded into the decay's exponent)
  int power;
  bool sm_norm;
  float sp = 1.0f, log2_sp = 0.0f;  // s^power and its log2 (exp form: s log2 e and 0; set by the launchers)
  // Elements between consecutive tokens of q, k, v (ld_in) and of dq, dk, dv (ld_grad); 0 means
  // dense (B, T, H, 64), H * 64. The mixers pass views of one packed (B, T, 3, H, 64) projection
  // (3 H 64), so neither the split into q, k, v nor the merge of their gradients costs a copy.
  int64_t ld_in = 0, ld_grad = 0;
};

using bf16 = __nv_bfloat16;

// --- PTX helpers ------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Element offset of (row, 16-byte chunk) in a swizzled 64 x 64 bf16 tile.
__device__ __forceinline__ int swz(int row, int chunk) { return row * kDim + ((chunk ^ (row & 7)) << 3); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// c += a b: a 16 x 16 (row), b 16 x 8 (col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// --- tiles ------------------------------------------------------------------------------------------
// Rows t0 .. t0+63 of head (b, h) of a (B, T, H, 64) tensor whose tokens lie ld elements apart;
// rows past T are zero-filled.
__device__ __forceinline__ void load_tile(bf16* sm, const bf16* g, const Problem& p, int64_t ld, int64_t b,
                                          int64_t h, int64_t t0) {
  for (int c = threadIdx.x; c < kTile * 8; c += kThreadsTc) {
    const int row = c >> 3, ch = c & 7;
    const int64_t t = t0 + row;
    const bool ok = t < p.T;
    cp_async16(sm + swz(row, ch), ok ? g + (b * p.T + t) * ld + h * kDim + ch * 8 : g, ok);
  }
}
// 64 floats of a (B, T, H) tensor (stride H) or of a (B, H, Tpad) one (stride 1); zero past `n`.
__device__ __forceinline__ void load_row(float* sm, const float* g, int64_t first, int64_t stride, int64_t avail) {
  if (threadIdx.x < kTile) {
    const bool ok = threadIdx.x < avail;
    cp_async4(sm + threadIdx.x, ok ? g + first + int64_t(threadIdx.x) * stride : g, ok);
  }
}

// A fragments (16 rows of this warp x 64 channels, four k-steps) of a swizzled tile.
__device__ __forceinline__ void load_a(uint32_t (&f)[4][4], const bf16* sm, int warp, int lane) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) ldsm_x4(f[kk], sm + swz(warp * 16 + (lane & 15), 2 * kk + (lane >> 4)));
}

// acc (16 x 64) = A (16 x 64, fragments) . X^T where X is a swizzled tile [n][k] (64 rows n).
__device__ __forceinline__ void gemm_abt(float (&acc)[8][4], const uint32_t (&a)[4][4], const bf16* sx, int lane) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b[4];
      ldsm_x4(b, sx + swz(np * 16 + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
      mma(acc[2 * np], a[kk], b[0], b[1]);
      mma(acc[2 * np + 1], a[kk], b[2], b[3]);
    }
  }
}

// B fragment of an all-ones 16 x 8 matrix: W . 1 gives the row sums of the bf16 weights exactly as
// the numerator's GEMM sees them.
inline constexpr uint32_t kOnes = 0x3f803f80u;

// acc (16 x 64) += W (16 x 64, accumulator layout, rounded to bf16) . X where X is a swizzled tile
// [k][n] (64 rows k); when `rowsum` is given it also accumulates W's row sums (every column of it
// holds the sum: elements 0 and 2 are rows r0 and r0 + 8).
__device__ __forceinline__ void gemm_wx(float (&acc)[8][4], const float (&w)[8][4], const bf16* sx, int lane,
                                        float (*rowsum)[4]) {
#pragma unroll
  for (int kt = 0; kt < 4; ++kt) {
    const uint32_t a[4] = {pack(w[2 * kt][0], w[2 * kt][1]), pack(w[2 * kt][2], w[2 * kt][3]),
                           pack(w[2 * kt + 1][0], w[2 * kt + 1][1]), pack(w[2 * kt + 1][2], w[2 * kt + 1][3])};
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b[4];
      ldsm_x4_t(b, sx + swz(kt * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), 2 * np + (lane >> 4)));
      mma(acc[2 * np], a, b[0], b[1]);
      mma(acc[2 * np + 1], a, b[2], b[3]);
    }
    if (rowsum) mma(*rowsum, a, kOnes, kOnes);
  }
}

// Sum over the four lanes of a quad (the lanes holding one accumulator row).
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

// The thread's 16 columns (nt * 8 + 2 (lane % 4) + {0, 1}) of a 64-float row in shared memory.
__device__ __forceinline__ void load_cols(float (&c)[16], const float* sm, int lane) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    const float2 x = *reinterpret_cast<const float2*>(sm + nt * 8 + 2 * (lane & 3));
    c[2 * nt] = x.x;
    c[2 * nt + 1] = x.y;
  }
}

// --- M row blocks per warp ---------------------------------------------------------------------------
// A warp that owns M blocks of 16 rows reuses every B fragment it loads from shared memory M times:
// with one block, ldmatrix traffic (4 clocks of the SM's shared-memory pipe per x4 load) is twice the
// tensor-core time of the MMAs it feeds.
template <int M>
__device__ __forceinline__ void load_a_m(uint32_t (&f)[M][4][4], const bf16* sm, int row0, int lane) {
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) ldsm_x4(f[m][kk], sm + swz(row0 + m * 16 + (lane & 15), 2 * kk + (lane >> 4)));
}

// acc (M x 16 rows, NT x 8 columns) = A . X^T, X rows x0 .. x0 + 8 NT of a swizzled tile [n][k].
template <int M, int NT>
__device__ __forceinline__ void gemm_abt_m(float (&acc)[M][NT][4], const uint32_t (&a)[M][4][4], const bf16* sx,
                                           int x0, int lane) {
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) acc[m][nt][0] = acc[m][nt][1] = acc[m][nt][2] = acc[m][nt][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4(b, sx + swz(x0 + np * 16 + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
#pragma unroll
      for (int m = 0; m < M; ++m) {
        mma(acc[m][2 * np], a[m][kk], b[0], b[1]);
        mma(acc[m][2 * np + 1], a[m][kk], b[2], b[3]);
      }
    }
  }
}

// acc (M x 16 rows, 64 columns) += W (M x 16 rows, 2 KT x 8 columns, accumulator layout, rounded to
// bf16) . X, X rows x0 .. x0 + 16 KT of a swizzled tile [k][n]; `rowsum`, when given, also gets W's
// row sums (elements 0 and 2: rows r and r + 8 of each block).
template <int M, int KT>
__device__ __forceinline__ void gemm_wx_m(float (&acc)[M][8][4], const float (&w)[M][2 * KT][4], const bf16* sx,
                                          int x0, int lane, float (*rowsum)[M][4]) {
#pragma unroll
  for (int kt = 0; kt < KT; ++kt) {
    uint32_t a[M][4];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      a[m][0] = pack(w[m][2 * kt][0], w[m][2 * kt][1]);
      a[m][1] = pack(w[m][2 * kt][2], w[m][2 * kt][3]);
      a[m][2] = pack(w[m][2 * kt + 1][0], w[m][2 * kt + 1][1]);
      a[m][3] = pack(w[m][2 * kt + 1][2], w[m][2 * kt + 1][3]);
    }
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b[4];
      ldsm_x4_t(b, sx + swz(x0 + kt * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), 2 * np + (lane >> 4)));
#pragma unroll
      for (int m = 0; m < M; ++m) {
        mma(acc[m][2 * np], a[m], b[0], b[1]);
        mma(acc[m][2 * np + 1], a[m], b[2], b[3]);
      }
    }
    if (rowsum)
#pragma unroll
      for (int m = 0; m < M; ++m) mma((*rowsum)[m], a[m], kOnes, kOnes);
  }
}

// Rows t0 .. t0 + ROWS - 1 of head (b, h) of a (B, T, H, 64) tensor whose tokens lie ld elements
// apart; rows past T are zero-filled.
template <int ROWS>
__device__ __forceinline__ void load_rows(bf16* sm, const bf16* g, const Problem& p, int64_t ld, int64_t b,
                                          int64_t h, int64_t t0) {
  for (int c = threadIdx.x; c < ROWS * 8; c += kThreadsTc) {
    const int row = c >> 3, ch = c & 7;
    const int64_t t = t0 + row;
    const bool ok = t < p.T;
    cp_async16(sm + swz(row, ch), ok ? g + (b * p.T + t) * ld + h * kDim + ch * 8 : g, ok);
  }
}

// --- forward ----------------------------------------------------------------------------------------
// CTA: 64 queries of one (b, h); walks key tiles 0 .. its own (only the diagonal tile is masked).
// w_ij = acc^P Lw with Lw = s^P exp(acs_i - acs_j) = 2^(a2_i + log2 s^P - a2_j) (a2 = acs log2 e).
// The denominator sums the weights as the numerator's GEMM sees them (rounded to bf16, by one more
// MMA against ones): a normalisation consistent with y keeps Delta_i = dO_i.y_i consistent with the
// backward's weights; summing the fp32 weights instead costs several times the naive bf16 error in dq
// and dk when one weight dominates a row (power 2 without decay).
inline constexpr int kFwdRows = 128;  // queries per forward CTA: 4 warps x 2 blocks of 16

template <int P>
__device__ __forceinline__ void fwd_weights(float (&s)[2][8][4], const float (&aj)[16], const float (&ai)[2][2],
                                            bool decay, float sp, bool mask, int row0, int key0, int lane) {
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 2 * nt + (e & 1);
        const float lw = decay ? ex2(ai[m][e >> 1] - aj[c]) : sp;
        float w = (P == 2 ? s[m][nt][e] * s[m][nt][e] : s[m][nt][e]) * lw;
        if (mask && key0 + nt * 8 + 2 * (lane & 3) + (e & 1) > row0 + m * 16 + (lane >> 2) + ((e >> 1) << 3))
          w = 0.0f;
        s[m][nt][e] = w;
      }
    }
}

// The exp form's online softmax on one score tile: s <- 2^(x - m_i), x = acc sp + a2_i - a2_j (-inf
// where masked), m_i the running row max (mrow), with o and the row sums dn rescaled by 2^(m_old - m_i)
// first. Every row sees key 0 in its first tile, so m_i is finite from then on.
__device__ __forceinline__ void fwd_exp_weights(float (&s)[2][8][4], const float (&aj)[16], const float (&ai)[2][2],
                                                bool decay, float sp, bool mask, int row0, int key0, int lane,
                                                float (&mrow)[2][2], float (&o)[2][8][4], float (&dn)[2][4]) {
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 2 * nt + (e & 1);
        float x = decay ? fmaf(s[m][nt][e], sp, ai[m][e >> 1] - aj[c]) : s[m][nt][e] * sp;
        if (mask && key0 + nt * 8 + 2 * (lane & 3) + (e & 1) > row0 + m * 16 + (lane >> 2) + ((e >> 1) << 3))
          x = -INFINITY;
        s[m][nt][e] = x;
        mt[e >> 1] = fmaxf(mt[e >> 1], x);
      }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float mnew = fmaxf(mrow[m][r], quad_max(mt[r]));
      base[r] = mnew == -INFINITY ? 0.0f : mnew;
      const float corr = ex2(mrow[m][r] - base[r]);  // 0 before the first key
      mrow[m][r] = mnew;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        o[m][nt][2 * r] *= corr;
        o[m][nt][2 * r + 1] *= corr;
      }
      dn[m][2 * r] *= corr;
      dn[m][2 * r + 1] *= corr;
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[m][nt][e] = ex2(s[m][nt][e] - base[e >> 1]);
  }
}

// CTA: 128 queries of one (b, h), 32 per warp; walks the 64-key tiles up to its last query (keys
// past a warp's rows are masked; a warp whose rows all precede a key tile skips it).
template <int P>
__global__ void __launch_bounds__(kThreadsTc) fwd_kernel(Problem p, const bf16* __restrict__ q,
                                                         const bf16* __restrict__ k,
                                                         const bf16* __restrict__ v,
                                                         const float* __restrict__ a2, bf16* __restrict__ y,
                                                         float* __restrict__ den) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);    // 128 x 64
  bf16* sK = sQ + kFwdRows * kDim;             // [2][64 * 64]
  bf16* sV = sK + 2 * kTile * kDim;            // [2][64 * 64]
  float* sA = reinterpret_cast<float*>(sV + 2 * kTile * kDim);  // [2][64]
  const int nq = int((p.T + kFwdRows - 1) / kFwdRows);
  const int64_t Tpad = (p.T + kTile - 1) / kTile * kTile;
  const int qt = nq - 1 - int(blockIdx.x);  // the longest rows first
  const int64_t bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t q0 = int64_t(qt) * kFwdRows;
  const int nk = int((std::min<int64_t>(q0 + kFwdRows, p.T) + kTile - 1) / kTile);  // key tiles to walk
  const bool decay = a2 != nullptr;
  const int row0 = warp * 32;  // this warp's first row in the tile

  load_rows<kFwdRows>(sQ, q, p, p.ld_in, b, h, q0);
  load_rows<kTile>(sK, k, p, p.ld_in, b, h, 0);
  load_rows<kTile>(sV, v, p, p.ld_in, b, h, 0);
  if (decay) load_row(sA, a2, bh * Tpad, 1, kTile);
  cp_commit();

  float ai[2][2] = {};
  if (decay)
    for (int m = 0; m < 2; ++m)
      for (int r = 0; r < 2; ++r) {
        const int64_t t = q0 + row0 + m * 16 + (lane >> 2) + 8 * r;
        ai[m][r] = (t < Tpad ? a2[bh * Tpad + t] : 0.0f) + p.log2_sp;
      }
  float o[2][8][4] = {};
  float dn[2][4] = {};
  float mrow[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};  // the exp form's running max
  uint32_t qf[2][4][4];

  for (int kt = 0; kt < nk; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < nk) {
      const int nx = cur ^ 1;
      load_rows<kTile>(sK + nx * kTile * kDim, k, p, p.ld_in, b, h, int64_t(kt + 1) * kTile);
      load_rows<kTile>(sV + nx * kTile * kDim, v, p, p.ld_in, b, h, int64_t(kt + 1) * kTile);
      if (decay) load_row(sA + nx * kTile, a2, bh * Tpad + int64_t(kt + 1) * kTile, 1, kTile);
    }
    cp_commit();
    cp_wait<1>();
    __syncthreads();
    if (kt == 0) load_a_m<2>(qf, sQ, row0, lane);
    const int64_t key0 = int64_t(kt) * kTile;
    if (key0 <= q0 + row0 + 31) {  // else every key of the tile follows this warp's rows
      float aj[16] = {};
      if (decay) load_cols(aj, sA + cur * kTile, lane);
      float s[2][8][4];
      gemm_abt_m<2, 8>(s, qf, sK + cur * kTile * kDim, 0, lane);
      const bool mask = key0 + kTile - 1 > q0 + row0;
      if constexpr (P == kPowerExp)
        fwd_exp_weights(s, aj, ai, decay, p.sp, mask, int(q0 - key0) + row0, 0, lane, mrow, o, dn);
      else
        fwd_weights<P>(s, aj, ai, decay, p.sp, mask, int(q0 - key0) + row0, 0, lane);
      gemm_wx_m<2, 4>(o, s, sV + cur * kTile * kDim, 0, lane, &dn);
    }
    __syncthreads();  // the next iteration's loads overwrite this buffer
  }

  for (int m = 0; m < 2; ++m)
    for (int r = 0; r < 2; ++r) {
      const float total = dn[m][2 * r];
      const int64_t t = q0 + row0 + m * 16 + (lane >> 2) + 8 * r;
      if (t >= p.T) continue;
      const float inv = P == kPowerExp ? 1.0f / total : p.sm_norm ? 1.0f / fmaxf(total, kEpsF) : 1.0f;
      bf16* yr = y + ((b * p.T + t) * p.H + h) * kDim + 2 * (lane & 3);
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
        *reinterpret_cast<__nv_bfloat162*>(yr + nt * 8) =
            __floats2bfloat162_rn(o[m][nt][2 * r] * inv, o[m][nt][2 * r + 1] * inv);
      if ((lane & 3) == 0) den[bh * p.T + t] = P == kPowerExp ? (mrow[m][r] + log2f(total)) * kLn2 : total;
    }
}

// --- backward: elementwise --------------------------------------------------------------------------
// From the scores acc = q.k and dp = dO.v of one tile, with Lw = s^P exp(acs_i - acs_j) and
// dw = (dp - dl_i) rc_i:
//   du' = acc^(P-1) Lw dw   (dU_ij = f'(u) L dw = du' * P / s, so dq = P sum du' k, dk = P sum du' q)
//   G   = acc du' = w dw     (the decay gradient)
//   Pn  = acc^P Lw rc_i      (the normalised weight, dV's operand)

// --- backward: dQ and the query side of dacs --------------------------------------------------------
// CTA: 64 queries; walks key tiles 0 .. its own. dacs_i = sum_j G_ij (written, not added).
template <int P, bool MASK>
__device__ __forceinline__ void dq_weights(float (&s)[8][4], const float (&dp)[8][4], const float (&aj)[16],
                                           const float (&ai)[2], const float (&rci)[2], const float (&dli)[2],
                                           float (&gsum)[2], bool decay, float sp, int r0, int lane) {
  if constexpr (P == kPowerExp) {  // ai = a2_i - lse2_i: s <- G = P (dp - Delta)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 2 * nt + (e & 1), r = e >> 1;
        const float x = fmaf(s[nt][e], sp, decay ? ai[r] - aj[c] : ai[r]);
        float g = ex2(x) * (dp[nt][e] - dli[r]);
        if (MASK && nt * 8 + 2 * (lane & 3) + (e & 1) > r0 + (r << 3)) g = 0.0f;
        gsum[r] += g;
        s[nt][e] = g;
      }
  } else {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 2 * nt + (e & 1), r = e >> 1;
        const float lw = decay ? ex2(ai[r] - aj[c]) : sp;
        const float acc = s[nt][e];
        float du = (P == 2 ? acc * lw : lw) * ((dp[nt][e] - dli[r]) * rci[r]);
        if (MASK && nt * 8 + 2 * (lane & 3) + (e & 1) > r0 + (r << 3)) du = 0.0f;
        gsum[r] += du * acc;
        s[nt][e] = du;
      }
    }
  }
}

template <int P>
__global__ void __launch_bounds__(kThreadsTc, 3) dq_kernel(Problem p, const bf16* __restrict__ dO,
                                                        const bf16* __restrict__ q,
                                                        const bf16* __restrict__ k,
                                                        const bf16* __restrict__ v,
                                                        const float* __restrict__ a2,
                                                        const float* __restrict__ rc,
                                                        const float* __restrict__ dl,
                                                        bf16* __restrict__ dq, float* __restrict__ dacs) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sO = sQ + kTile * kDim;
  bf16* sK = sO + kTile * kDim;      // [2]
  bf16* sV = sK + 2 * kTile * kDim;  // [2]
  float* sA = reinterpret_cast<float*>(sV + 2 * kTile * kDim);  // [2][64]
  const int nq = int((p.T + kTile - 1) / kTile);
  const int64_t Tpad = int64_t(nq) * kTile;
  const int qt = nq - 1 - int(blockIdx.x);
  const int64_t bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t q0 = int64_t(qt) * kTile;
  const bool decay = a2 != nullptr;

  load_tile(sQ, q, p, p.ld_in, b, h, q0);
  load_tile(sO, dO, p, p.H * kDim, b, h, q0);
  load_tile(sK, k, p, p.ld_in, b, h, 0);
  load_tile(sV, v, p, p.ld_in, b, h, 0);
  if (decay) load_row(sA, a2, bh * Tpad, 1, kTile);
  cp_commit();

  const int r0 = warp * 16 + (lane >> 2);
  float ai[2] = {0.0f, 0.0f}, rci[2], dli[2];
  for (int r = 0; r < 2; ++r) {
    const int64_t t = q0 + r0 + 8 * r;
    if (decay) ai[r] = a2[bh * Tpad + t] + p.log2_sp;
    rci[r] = rc[bh * Tpad + t];
    dli[r] = dl[bh * Tpad + t];
    if (P == kPowerExp) ai[r] -= rci[r];  // rc holds lse2_i
  }
  float acc[8][4] = {};
  float gsum[2] = {0.0f, 0.0f};
  uint32_t qf[4][4], of[4][4];

  for (int kt = 0; kt <= qt; ++kt) {
    const int cur = kt & 1;
    if (kt < qt) {
      const int nx = cur ^ 1;
      load_tile(sK + nx * kTile * kDim, k, p, p.ld_in, b, h, int64_t(kt + 1) * kTile);
      load_tile(sV + nx * kTile * kDim, v, p, p.ld_in, b, h, int64_t(kt + 1) * kTile);
      if (decay) load_row(sA + nx * kTile, a2, bh * Tpad + int64_t(kt + 1) * kTile, 1, kTile);
    }
    cp_commit();
    cp_wait<1>();
    __syncthreads();
    if (kt == 0) {
      load_a(qf, sQ, warp, lane);
      load_a(of, sO, warp, lane);
    }
    const bf16* k_t = sK + cur * kTile * kDim;
    float aj[16] = {};
    if (decay) load_cols(aj, sA + cur * kTile, lane);
    float s[8][4], dp[8][4];
    gemm_abt(s, qf, k_t, lane);
    gemm_abt(dp, of, sV + cur * kTile * kDim, lane);
    if (kt == qt) dq_weights<P, true>(s, dp, aj, ai, rci, dli, gsum, decay, p.sp, r0, lane);
    else dq_weights<P, false>(s, dp, aj, ai, rci, dli, gsum, decay, p.sp, r0, lane);
    gemm_wx(acc, s, k_t, lane, nullptr);
    __syncthreads();
  }

  const float gmul = P == kPowerExp ? float(p.scale) : float(P);  // dq = s sum G k (exp form)
  for (int r = 0; r < 2; ++r) {
    const float g = quad_sum(gsum[r]);
    const int64_t t = q0 + r0 + 8 * r;
    if (t >= p.T) continue;
    bf16* dr = dq + (b * p.T + t) * p.ld_grad + h * kDim + 2 * (lane & 3);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
      *reinterpret_cast<__nv_bfloat162*>(dr + nt * 8) =
          __floats2bfloat162_rn(acc[nt][2 * r] * gmul, acc[nt][2 * r + 1] * gmul);
    if (dacs && (lane & 3) == 0) dacs[(b * p.T + t) * p.H + h] = g;
  }
}

// --- backward: dK, dV and the key side of dacs ------------------------------------------------------
// CTA: 64 keys; walks query tiles from its own to the last. Per warp, 16 keys x 64 queries in the
// transposed layout (keys are rows): S^T = K Q^T, dP^T = V dO^T; dV_j += sum_i Pn_ij dO_i,
// dK_j += P sum_i du'_ij q_i, dacs_j -= sum_i G_ij (added to the query side the dQ kernel wrote).
template <int P, bool MASK>
__device__ __forceinline__ void dkdv_weights(float (&st)[8][4], float (&dpt)[8][4], const float* sa, const float* sr,
                                             const float* sd, const float (&aj)[2], float (&gsum)[2], bool decay,
                                             float sp, int r0, int lane, bool diag, int64_t qlim) {
  // The per-query values are read from shared memory where they are used (two columns at a time):
  // holding all 48 of this thread's columns in registers spills (measured: 3.43 -> 3.39 ms f+b at
  // T=2K; forcing three CTAs per SM spills more and loses, 3.63 ms).
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    const int col0 = nt * 8 + 2 * (lane & 3);
    const float2 ai2 = decay ? *reinterpret_cast<const float2*>(sa + col0) : make_float2(0.0f, 0.0f);
    const float2 rc2 = *reinterpret_cast<const float2*>(sr + col0);
    const float2 dl2 = *reinterpret_cast<const float2*>(sd + col0);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e >> 1;
      const float ai = (e & 1) ? ai2.y : ai2.x, rc = (e & 1) ? rc2.y : rc2.x, dl = (e & 1) ? dl2.y : dl2.x;
      if constexpr (P == kPowerExp) {  // rc holds lse2_i: st <- P, dpt <- G = P (dp - Delta)
        float pe = ex2(fmaf(st[nt][e], sp, (decay ? ai - aj[r] : 0.0f) - rc));
        float g = pe * (dpt[nt][e] - dl);
        if (MASK) {
          const int col = col0 + (e & 1);
          if ((diag && col < r0 + (r << 3)) || col >= qlim) g = pe = 0.0f;
        }
        gsum[r] += g;
        st[nt][e] = pe;
        dpt[nt][e] = g;
        continue;
      }
      const float lw = decay ? ex2(ai - aj[r]) : sp;
      const float acc = st[nt][e];
      const float t = P == 2 ? acc * lw : lw;
      float du = t * ((dpt[nt][e] - dl) * rc);
      float pn = t * acc * rc;
      if (MASK) {
        const int col = col0 + (e & 1);
        // Rows past T are zero but their decay may overflow: masked by selection, not by product.
        if ((diag && col < r0 + (r << 3)) || col >= qlim) du = pn = 0.0f;
      }
      gsum[r] += du * acc;
      st[nt][e] = pn;
      dpt[nt][e] = du;
    }
  }
}

template <int P>
__global__ void __launch_bounds__(kThreadsTc) dkdv_kernel(Problem p, const bf16* __restrict__ dO,
                                                          const bf16* __restrict__ q,
                                                          const bf16* __restrict__ k,
                                                          const bf16* __restrict__ v,
                                                          const float* __restrict__ a2,
                                                          const float* __restrict__ rc,
                                                          const float* __restrict__ dl,
                                                          bf16* __restrict__ dk, bf16* __restrict__ dv,
                                                          float* __restrict__ dacs) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = sK + kTile * kDim;
  bf16* sQ = sV + kTile * kDim;      // [2]
  bf16* sO = sQ + 2 * kTile * kDim;  // [2]
  float* sA = reinterpret_cast<float*>(sO + 2 * kTile * kDim);  // [2][64] a2_i + log2 s^P
  float* sR = sA + 2 * kTile;                                   // [2][64] rc_i
  float* sD = sR + 2 * kTile;                                   // [2][64] dl_i
  const int nq = int((p.T + kTile - 1) / kTile);
  const int64_t Tpad = int64_t(nq) * kTile;
  const int kt = int(blockIdx.x);  // tile 0 walks the most query tiles: launched first
  const int64_t bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t k0 = int64_t(kt) * kTile;
  const bool decay = a2 != nullptr;

  load_tile(sK, k, p, p.ld_in, b, h, k0);
  load_tile(sV, v, p, p.ld_in, b, h, k0);
  auto load_q = [&](int qt, int buf) {
    const int64_t t0 = int64_t(qt) * kTile;
    load_tile(sQ + buf * kTile * kDim, q, p, p.ld_in, b, h, t0);
    load_tile(sO + buf * kTile * kDim, dO, p, p.H * kDim, b, h, t0);
    if (decay) load_row(sA + buf * kTile, a2, bh * Tpad + t0, 1, kTile);
    load_row(sR + buf * kTile, rc, bh * Tpad + t0, 1, kTile);
    load_row(sD + buf * kTile, dl, bh * Tpad + t0, 1, kTile);
  };
  load_q(kt, 0);
  cp_commit();

  const int r0 = warp * 16 + (lane >> 2);  // this thread's keys r0 and r0 + 8 of the tile
  float aj[2] = {0.0f, 0.0f};
  if (decay)
    for (int r = 0; r < 2; ++r) aj[r] = a2[bh * Tpad + k0 + r0 + 8 * r] - p.log2_sp;
  float adk[8][4] = {}, adv[8][4] = {};
  float gsum[2] = {0.0f, 0.0f};
  uint32_t kf[4][4], vf[4][4];

  for (int qt = kt; qt < nq; ++qt) {
    const int cur = (qt - kt) & 1;
    if (qt + 1 < nq) load_q(qt + 1, cur ^ 1);
    cp_commit();
    cp_wait<1>();
    __syncthreads();
    if (qt == kt) {
      load_a(kf, sK, warp, lane);
      load_a(vf, sV, warp, lane);
    }
    const bf16* q_t = sQ + cur * kTile * kDim;
    const bf16* o_t = sO + cur * kTile * kDim;
    float st[8][4], dpt[8][4];
    gemm_abt(st, kf, q_t, lane);
    gemm_abt(dpt, vf, o_t, lane);
    const int64_t qlim = p.T - int64_t(qt) * kTile;  // columns at or past it are padding
    const float *a_t = sA + cur * kTile, *r_t = sR + cur * kTile, *d_t = sD + cur * kTile;
    if (qt == kt || qlim < kTile)
      dkdv_weights<P, true>(st, dpt, a_t, r_t, d_t, aj, gsum, decay, p.sp, r0, lane, qt == kt, qlim);
    else
      dkdv_weights<P, false>(st, dpt, a_t, r_t, d_t, aj, gsum, decay, p.sp, r0, lane, false, qlim);
    gemm_wx(adv, st, o_t, lane, nullptr);
    gemm_wx(adk, dpt, q_t, lane, nullptr);
    __syncthreads();
  }

  const float gmul = P == kPowerExp ? float(p.scale) : float(P);  // dk = s sum G q (exp form)
  for (int r = 0; r < 2; ++r) {
    const float g = quad_sum(gsum[r]);
    const int64_t t = k0 + r0 + 8 * r;
    if (t >= p.T) continue;
    bf16* kr = dk + (b * p.T + t) * p.ld_grad + h * kDim + 2 * (lane & 3);
    bf16* vr = dv + (b * p.T + t) * p.ld_grad + h * kDim + 2 * (lane & 3);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      *reinterpret_cast<__nv_bfloat162*>(kr + nt * 8) =
          __floats2bfloat162_rn(adk[nt][2 * r] * gmul, adk[nt][2 * r + 1] * gmul);
      *reinterpret_cast<__nv_bfloat162*>(vr + nt * 8) = __floats2bfloat162_rn(adv[nt][2 * r], adv[nt][2 * r + 1]);
    }
    if (dacs && (lane & 3) == 0) dacs[(b * p.T + t) * p.H + h] -= g;
  }
}

// acs (B, T, H) -> a2 (B, H, Tpad) = acs log2 e, zero past T: one contiguous, pre-scaled row per head
// that every kernel above reads tile by tile.
__global__ void acs_prep_kernel(Problem p, int64_t Tpad, const float* __restrict__ acs, float* __restrict__ a2) {
  const int64_t n = p.B * p.H * Tpad;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx % Tpad, bh = idx / Tpad, b = bh / p.H, h = bh % p.H;
    a2[idx] = t < p.T ? acs[(b * p.T + t) * p.H + h] * kLog2e : 0.0f;
  }
}

// --- launchers --------------------------------------------------------------------------------------
inline constexpr size_t kTileBytes = size_t(kTile) * kDim * sizeof(bf16);
inline constexpr size_t kFwdSmem = 6 * kTileBytes + 2 * kTile * sizeof(float);
inline constexpr size_t kDqSmem = 6 * kTileBytes + 2 * kTile * sizeof(float);
inline constexpr size_t kDkdvSmem = 6 * kTileBytes + 6 * kTile * sizeof(float);

inline int64_t padded_length(int64_t T) { return (T + kTile - 1) / kTile * kTile; }

// Above 48 KiB a kernel's dynamic shared memory must be opted into, once per kernel (each call site
// is one template instance, so its static flag is per kernel).
template <typename K>
void allow_smem(K kernel, size_t bytes) {
  COIL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

inline dim3 grid_of(const Problem& p) { return dim3(unsigned(padded_length(p.T) / kTile), unsigned(p.B * p.H)); }

// The launch-ready problem: s^power and its log2, and the token strides resolved (0: dense).
inline Problem with_powers(Problem p) {
  if (p.ld_in == 0) p.ld_in = p.H * kDim;
  if (p.ld_grad == 0) p.ld_grad = p.H * kDim;
  if (p.power == kPowerExp) {
    p.sp = float(p.scale * double(kLog2e));
    p.log2_sp = 0.0f;
    return p;
  }
  p.sp = float(p.power == 2 ? p.scale * p.scale : p.scale);
  p.log2_sp = float(std::log2(p.power == 2 ? p.scale * p.scale : p.scale));
  return p;
}

// a2 must hold B * H * padded_length(T) floats.
inline void prep_decay(const Problem& p, const float* acs, float* a2, cudaStream_t stream) {
  const int64_t n = p.B * p.H * padded_length(p.T);
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535);
  acs_prep_kernel<<<unsigned(blocks), 256, 0, stream>>>(p, padded_length(p.T), acs, a2);
  COIL_CUDA_CHECK_LAUNCH("linattn acs_prep_kernel");
}

template <int P>
void forward_p(const Problem& p, const bf16* q, const bf16* k, const bf16* v, const float* a2, bf16* y,
               float* den, cudaStream_t stream) {
  static const bool opted = (allow_smem(fwd_kernel<P>, kFwdSmem), true);
  (void)opted;
  const dim3 grid(unsigned((p.T + kFwdRows - 1) / kFwdRows), unsigned(p.B * p.H));
  fwd_kernel<P><<<grid, kThreadsTc, kFwdSmem, stream>>>(with_powers(p), q, k, v, a2, y, den);
  COIL_CUDA_CHECK_LAUNCH("linattn fwd_kernel");
}

// a2: prep_decay's output, or null without decay.
inline void forward(const Problem& p, const bf16* q, const bf16* k, const bf16* v, const float* a2, bf16* y,
                    float* den, cudaStream_t stream) {
  if (p.power == 2) forward_p<2>(p, q, k, v, a2, y, den, stream);
  else if (p.power == kPowerExp) forward_p<kPowerExp>(p, q, k, v, a2, y, den, stream);
  else forward_p<1>(p, q, k, v, a2, y, den, stream);
}

template <int P>
void backward_p(const Problem& p, const bf16* dO, const bf16* q, const bf16* k, const bf16* v, const float* a2,
                const float* rc, const float* dl, bf16* dq, bf16* dk, bf16* dv, float* dacs,
                cudaStream_t stream) {
  static const bool opted = (allow_smem(dq_kernel<P>, kDqSmem), allow_smem(dkdv_kernel<P>, kDkdvSmem), true);
  (void)opted;
  const Problem pp = with_powers(p);
  dq_kernel<P><<<grid_of(p), kThreadsTc, kDqSmem, stream>>>(pp, dO, q, k, v, a2, rc, dl, dq, dacs);
  COIL_CUDA_CHECK_LAUNCH("linattn dq_kernel");
  dkdv_kernel<P><<<grid_of(p), kThreadsTc, kDkdvSmem, stream>>>(pp, dO, q, k, v, a2, rc, dl, dk, dv, dacs);
  COIL_CUDA_CHECK_LAUNCH("linattn dkdv_kernel");
}

// rc, dl: (B, H, padded_length(T)) row statistics, zero past T (exp form: rc = lse log2 e, dl = Delta);
// a2 as for forward.
inline void backward(const Problem& p, const bf16* dO, const bf16* q, const bf16* k, const bf16* v,
                     const float* a2, const float* rc, const float* dl, bf16* dq, bf16* dk, bf16* dv,
                     float* dacs, cudaStream_t stream) {
  if (p.power == 2) backward_p<2>(p, dO, q, k, v, a2, rc, dl, dq, dk, dv, dacs, stream);
  else if (p.power == kPowerExp) backward_p<kPowerExp>(p, dO, q, k, v, a2, rc, dl, dq, dk, dv, dacs, stream);
  else backward_p<1>(p, dO, q, k, v, a2, rc, dl, dq, dk, dv, dacs, stream);
}

}  // namespace coil::cuda::tc
