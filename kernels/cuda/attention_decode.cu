// AttentionDecode on CUDA: one query per (batch, head) over the K/V cache, split-K ("flash decoding").
// q (B, 1, H, D), k, v (B, P, H, D), o (B, 1, H, D), contiguous, bf16 / f32 / f64, D <= 256.
//  - decode_split_kernel: block (bh, s) takes keys [s * L, min(P, (s + 1) * L)) of one (b, h). Its
//    threads form groups of G lanes (G a power of two, G * VEC >= D where it fits a warp), one key per
//    group at a time; each lane holds VEC-wide slices of q and of the output row, loads k and v rows
//    with 128-bit loads, and the group's dot product is a shuffle reduction. Every group keeps its own
//    running max m, sum l and unnormalised output (the online softmax), merged through shared memory at
//    the end into the split's (m, l, acc[D]), in the compute precision (fp32 for bf16 and f32).
//  - decode_combine_kernel: per (b, h), o = sum_s e^{m_s - M} acc_s / sum_s e^{m_s - M} l_s, M = max m_s.
// With a single split the first kernel writes o itself. Splits are chosen so that B * H * splits blocks
// fill the GPU about sixteen blocks per SM, with at least eight keys per group and split: a long cache
// at small B * H is spread over the whole chip instead of B * H blocks.
#include <algorithm>
#include <array>
#include <cmath>

#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kMaxLaneElems = 8;  // D <= 32 lanes * 8

template <typename T>
struct DecodeParams {
  using A = compute_t<T>;
  const T* q;   // (B, H, D)
  const T* k;   // (B, P, H, D)
  const T* v;   // (B, P, H, D)
  T* o;         // (B, H, D)
  A* part;      // (B * H, splits, D + 2): m, l, acc[D] of each split; unused with one split
  int64_t P, H, D;
  int64_t keys_per_split;
  int splits, G;  // lanes per key group
  A scale;
};

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T x[VEC];
};

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }

// VEC elements per load; MAXC loads per lane cover D <= 32 * VEC * MAXC.
template <typename T, int VEC>
__global__ void __launch_bounds__(kDecodeThreads) decode_split_kernel(DecodeParams<T> p) {
  using A = compute_t<T>;
  constexpr int MAXC = kMaxLaneElems / VEC;
  using PackT = Pack<T, VEC>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sm = reinterpret_cast<A*>(smem_raw);  // per group: m, l, acc[D]

  const int64_t bh = blockIdx.x;
  const int split = int(blockIdx.y);
  const int64_t b = bh / p.H, h = bh % p.H, D = p.D;
  const int G = p.G, lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int gpw = 32 / G;                        // groups per warp
  const int ngroups = kDecodeThreads / G;
  const int sub = lane % G, group = int(threadIdx.x) / G;
  const int64_t j0 = int64_t(split) * p.keys_per_split, j1 = min(p.P, j0 + p.keys_per_split);

  // Lane `sub` holds elements [c * VEC, c * VEC + VEC) for c = sub + G * i, i < MAXC.
  A qr[MAXC][VEC], acc[MAXC][VEC];
  const T* qrow = p.q + bh * D;
#pragma unroll
  for (int i = 0; i < MAXC; ++i) {
    const int64_t c = sub + int64_t(G) * i;
    const bool ok = c * VEC < D;
    PackT pk{};
    if (ok) pk = *reinterpret_cast<const PackT*>(qrow + c * VEC);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      qr[i][e] = ok ? to_compute(pk.x[e]) * p.scale : A(0);
      acc[i][e] = A(0);
    }
  }
  A m = -INFINITY, l = A(0);
  const int64_t row = p.H * D;  // elements from key j to key j + 1
  const T* kb = p.k + (b * p.P * p.H + h) * D;
  const T* vb = p.v + (b * p.P * p.H + h) * D;
  // The loop is uniform over a warp (every lane reaches the shuffles); a group past j1 sits out.
  for (int64_t jb = j0 + int64_t(warp) * gpw; jb < j1; jb += ngroups) {
    const int64_t j = jb + lane / G;
    const bool active = j < j1;
    PackT kp[MAXC], vp[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; ++i) {
      const int64_t c = sub + int64_t(G) * i;
      if (active && c * VEC < D) {
        kp[i] = *reinterpret_cast<const PackT*>(kb + j * row + c * VEC);
        vp[i] = *reinterpret_cast<const PackT*>(vb + j * row + c * VEC);
      } else {
        kp[i] = PackT{};
        vp[i] = PackT{};
      }
    }
    A s = A(0);
#pragma unroll
    for (int i = 0; i < MAXC; ++i)
#pragma unroll
      for (int e = 0; e < VEC; ++e) s += qr[i][e] * to_compute(kp[i].x[e]);
    for (int off = G / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (active) {
      const A mn = max(m, s);
      const A corr = d_exp(m - mn), pj = d_exp(s - mn);
      l = l * corr + pj;
#pragma unroll
      for (int i = 0; i < MAXC; ++i)
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[i][e] = acc[i][e] * corr + pj * to_compute(vp[i].x[e]);
      m = mn;
    }
  }

  // Merge the groups: each writes its (m, l, acc) to shared memory, then thread d combines column d.
  A* mine = sm + int64_t(group) * (D + 2);
  if (sub == 0) {
    mine[0] = m;
    mine[1] = l;
  }
#pragma unroll
  for (int i = 0; i < MAXC; ++i) {
    const int64_t c = sub + int64_t(G) * i;
#pragma unroll
    for (int e = 0; e < VEC; ++e)
      if (c * VEC + e < D) mine[2 + c * VEC + e] = acc[i][e];
  }
  __syncthreads();
  A M = -INFINITY;
  for (int g = 0; g < ngroups; ++g) M = max(M, sm[int64_t(g) * (D + 2)]);
  A L = A(0);
  for (int g = 0; g < ngroups; ++g) L += sm[int64_t(g) * (D + 2) + 1] * d_exp(sm[int64_t(g) * (D + 2)] - M);
  for (int64_t d = threadIdx.x; d < D; d += kDecodeThreads) {
    A o = A(0);
    for (int g = 0; g < ngroups; ++g) {
      const A* gs = sm + int64_t(g) * (D + 2);
      o += gs[2 + d] * d_exp(gs[0] - M);
    }
    if (p.splits == 1) {
      p.o[bh * D + d] = from_compute<T>(o / L);
    } else {
      A* out = p.part + (bh * p.splits + split) * (D + 2);
      out[2 + d] = o;
      if (d == 0) {
        out[0] = M;
        out[1] = L;
      }
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kDecodeThreads) decode_combine_kernel(DecodeParams<T> p) {
  using A = compute_t<T>;
  const int64_t bh = blockIdx.x, D = p.D;
  const A* parts = p.part + bh * p.splits * (D + 2);
  A M = -INFINITY;
  for (int s = 0; s < p.splits; ++s) M = max(M, parts[int64_t(s) * (D + 2)]);
  A L = A(0);
  for (int s = 0; s < p.splits; ++s) L += parts[int64_t(s) * (D + 2) + 1] * d_exp(parts[int64_t(s) * (D + 2)] - M);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    A o = A(0);
    for (int s = 0; s < p.splits; ++s) {
      const A* ps = parts + int64_t(s) * (D + 2);
      o += ps[2 + d] * d_exp(ps[0] - M);
    }
    p.o[bh * D + d] = from_compute<T>(o / L);
  }
}

int sm_count(int device) {
  static std::array<int, 64> cache{};
  COIL_INTERNAL_ASSERT(device >= 0 && device < int(cache.size()), "CUDA device index ", device);
  if (cache[size_t(device)] == 0) {
    int n = 0;
    COIL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    cache[size_t(device)] = std::max(1, n);
  }
  return cache[size_t(device)];
}

template <typename T, int VEC>
void launch_split(const DecodeParams<T>& p, int64_t BH, cudaStream_t stream) {
  const int ngroups = kDecodeThreads / p.G;
  const size_t smem = size_t(ngroups) * size_t(p.D + 2) * sizeof(compute_t<T>);
  decode_split_kernel<T, VEC><<<dim3(unsigned(BH), unsigned(p.splits)), kDecodeThreads, smem, stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("decode_split_kernel");
}

template <typename T>
void attention_decode_launch(const KernelArgs& a) {
  using A = compute_t<T>;
  check_arity(a, 3, 1);
  const Tensor &q = a.in[0], &k = a.in[1], &v = a.in[2], &o = a.out[0];
  for (const Tensor* t : {&q, &k, &v, &o}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->is_contiguous(), "attention_decode ", t->describe());
  }
  COIL_INTERNAL_ASSERT(q.dim() == 4 && q.size(1) == 1 && k.dim() == 4 && v.shape() == k.shape() &&
                           k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3) &&
                           o.shape() == q.shape(),
                       "attention_decode q ", q.describe(), ", k ", k.describe(), ", v ", v.describe());
  const int64_t B = q.size(0), H = q.size(2), D = q.size(3), P = k.size(1), BH = B * H;
  COIL_INTERNAL_ASSERT(D >= 1 && D <= 32 * kMaxLaneElems && P >= 1, "attention_decode D ", D, ", P ", P);
  COIL_INTERNAL_ASSERT(BH <= INT32_MAX, "attention_decode B * H = ", BH);
  if (BH == 0) return;
  LaunchContext ctx(q);

  // 128-bit loads when every row starts 16-byte aligned (D a multiple of the vector, aligned bases).
  constexpr int kVec = 16 / int(sizeof(T));
  const auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data<T>()) % 16 == 0; };
  const bool vec = D % kVec == 0 && aligned(q) && aligned(k) && aligned(v);
  const int width = vec ? kVec : 1;
  int G = 1;
  while (G < 32 && int64_t(G) * width < D) G *= 2;

  DecodeParams<T> p{q.data<T>(), k.data<T>(), v.data<T>(), o.data<T>(), nullptr, P, H, D, P, 1, G, A(a.attrs.scale)};
  const int64_t ngroups = kDecodeThreads / G;
  const int64_t target_blocks = int64_t(sm_count(q.device().index)) * 16;
  const int64_t max_splits = std::max<int64_t>(1, P / (ngroups * 8));  // >= 8 keys per group
  int64_t splits = std::min({max_splits, (target_blocks + BH - 1) / BH, int64_t(65535)});
  p.keys_per_split = (P + splits - 1) / splits;
  splits = (P + p.keys_per_split - 1) / p.keys_per_split;  // every split non-empty
  p.splits = int(splits);
  Tensor part;
  if (splits > 1) {
    part = Tensor::empty({BH, splits, D + 2}, std::is_same_v<A, double> ? DType::F64 : DType::F32, q.device());
    p.part = part.data<A>();
  }
  if (vec) launch_split<T, kVec>(p, BH, ctx.stream);
  else launch_split<T, 1>(p, BH, ctx.stream);
  if (splits > 1) {
    decode_combine_kernel<T><<<unsigned(BH), kDecodeThreads, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("decode_combine_kernel");
  }
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(AttentionDecode, attention_decode_launch);

}  // namespace coil::cuda
