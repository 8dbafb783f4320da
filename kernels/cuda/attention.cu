// Softmax attention on CUDA (causal or not, Tq queries over Tk keys), matching
// kernels/cpu/attention.cpp (contract in attention.h).
// bf16 goes to cuDNN's fused attention (cudnn_sdpa.cpp) when it takes the call; everything else runs
// the native kernels here: correctness first, one warp per (b, h, row), each lane holding D/32 elements
// of the row in registers, scores reduced across the warp, online softmax (FlashAttention-style running
// max and sum) in the compute type (fp32 for f32 / bf16, fp64 for f64). The backward needs no atomics:
// dQ walks a query's keys, dK and dV walk a key's queries, so every result is deterministic.
#include <cmath>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

inline constexpr int kWarp = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr int kWarpsPerBlock = 4;  // 128 threads: one row per warp, small blocks balance causal rows
inline constexpr int kMaxPerLane = 8;     // elements of a row per lane: head dims up to 256
inline constexpr int64_t kMaxHeadDim = int64_t(kWarp) * kMaxPerLane;

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }

// Sum over the warp, the same value in every lane (fixed butterfly order: deterministic).
template <typename C>
__device__ __forceinline__ C warp_sum(C v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// The (b, h, row) of this warp; false for the tail warps past the last row.
struct RowOf {
  int64_t b, h, i;
};
__device__ __forceinline__ bool warp_row(int64_t B, int64_t T, int64_t H, RowOf* r) {
  const int64_t w = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (w >= B * H * T) return false;
  r->i = w % T;
  const int64_t bh = w / T;
  r->b = bh / H;
  r->h = bh % H;
  return true;
}

// A row of a (B, T, H, D) tensor held across the warp: lane l has elements l, l + 32, ...
template <int NPL, typename C>
struct Row {
  C x[NPL];
  template <typename E>
  __device__ __forceinline__ void load(const E* p, int64_t D, int lane) {
#pragma unroll
    for (int r = 0; r < NPL; ++r) {
      const int64_t d = int64_t(r) * kWarp + lane;
      x[r] = d < D ? to_compute(p[d]) : C(0);
    }
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int r = 0; r < NPL; ++r) x[r] = C(0);
  }
  // This lane's part of the dot product with a row in memory.
  template <typename E>
  __device__ __forceinline__ C dot(const E* p, int64_t D, int lane) const {
    C s = C(0);
#pragma unroll
    for (int r = 0; r < NPL; ++r) {
      const int64_t d = int64_t(r) * kWarp + lane;
      if (d < D) s += x[r] * to_compute(p[d]);
    }
    return s;
  }
  // x = x * a + b * row
  template <typename E>
  __device__ __forceinline__ void scale_add(C a, C b, const E* p, int64_t D, int lane) {
#pragma unroll
    for (int r = 0; r < NPL; ++r) {
      const int64_t d = int64_t(r) * kWarp + lane;
      if (d < D) x[r] = x[r] * a + b * to_compute(p[d]);
    }
  }
  template <typename E>
  __device__ __forceinline__ void store(E* p, C a, int64_t D, int lane) const {
#pragma unroll
    for (int r = 0; r < NPL; ++r) {
      const int64_t d = int64_t(r) * kWarp + lane;
      if (d < D) p[d] = from_compute<E>(x[r] * a);
    }
  }
};

// --- forward ------------------------------------------------------------------------------------------
// Query i (of Tq) sits at position P + i among the Tk keys, P = Tk - Tq; causal: it sees keys
// j <= P + i, else all of them.
struct Layout {
  int64_t B, Tq, Tk, H, D;
  bool causal;
  __device__ __forceinline__ int64_t last_key(int64_t i) const { return causal ? Tk - Tq + i : Tk - 1; }
  __device__ __forceinline__ int64_t first_query(int64_t j) const {
    return causal && j > Tk - Tq ? j - (Tk - Tq) : 0;
  }
  // Position 0 of (b, h) in a (B, Tq, H, D) / (B, Tk, H, D) tensor.
  __device__ __forceinline__ int64_t q_head(int64_t b, int64_t h) const { return (b * Tq * H + h) * D; }
  __device__ __forceinline__ int64_t k_head(int64_t b, int64_t h) const { return (b * Tk * H + h) * D; }
};

template <typename E>
struct FwdParams {
  const E* q;           // (B, Tq, H, D)
  const E* k;           // (B, Tk, H, D)
  const E* v;           // (B, Tk, H, D)
  E* o;                 // (B, Tq, H, D)
  compute_t<E>* lse;    // (B, H, Tq)
  Layout s;
  compute_t<E> scale;
};

// o_i = sum_{j visible} exp(s_ij - lse_i) v_j with s_ij = scale q_i.k_j, by an online softmax over j.
template <int NPL, typename E>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock) attention_fwd_kernel(FwdParams<E> p) {
  using C = compute_t<E>;
  RowOf r;
  if (!warp_row(p.s.B, p.s.Tq, p.s.H, &r)) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t step = p.s.H * p.s.D;  // from position t to t + 1
  const int64_t qh = p.s.q_head(r.b, r.h), kh = p.s.k_head(r.b, r.h);
  Row<NPL, C> q, acc;
  q.load(p.q + qh + r.i * step, p.s.D, lane);
  acc.zero();
  C m = C(-INFINITY), l = C(0);
  const int64_t last = p.s.last_key(r.i);
  for (int64_t j = 0; j <= last; ++j) {
    const C s = p.scale * warp_sum(q.dot(p.k + kh + j * step, p.s.D, lane));
    const C m_new = s > m ? s : m;
    const C corr = m_exp(m - m_new), e = m_exp(s - m_new);  // corr = 0 on the first key
    l = l * corr + e;
    acc.scale_add(corr, e, p.v + kh + j * step, p.s.D, lane);
    m = m_new;
  }
  acc.store(p.o + qh + r.i * step, C(1) / l, p.s.D, lane);
  if (lane == 0) p.lse[(r.b * p.s.H + r.h) * p.s.Tq + r.i] = m + m_log(l);
}

// --- backward -----------------------------------------------------------------------------------------
template <typename E>
struct BwdParams {
  const E* dO;                // (B, Tq, H, D)
  const E* q;                 // (B, Tq, H, D)
  const E* k;                 // (B, Tk, H, D)
  const E* v;                 // (B, Tk, H, D)
  const E* o;                 // (B, Tq, H, D)
  const compute_t<E>* lse;    // (B, H, Tq)
  const compute_t<E>* dlse;   // (B, H, Tq) or null: lse's incoming gradient
  compute_t<E>* delta;        // (B, H, Tq): Delta_i = dO_i . o_i - dlse_i, written by the first kernel
  E* dq;                      // (B, Tq, H, D)
  E* dk;                      // (B, Tk, H, D)
  E* dv;                      // (B, Tk, H, D)
  Layout s;
  compute_t<E> scale;
};

// Delta_i = dO_i . o_i - dlse_i (d lse_i / d s_ij = P_ij, so lse's gradient enters every
// dS_ij = P_ij (dP_ij - Delta_i) as minus Delta). For bf16, o holds the output rounded to bf16, and
// that rounding, multiplied by dO, is the largest error of dK at small head dims (2x a naive bf16
// implementation at D = 4); there dO_i . o_i = sum_j P_ij dO_i.v_j is recomputed in fp32 instead (the
// same value in exact arithmetic, one more pass over the keys).
template <int NPL, typename E>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock) attention_delta_kernel(BwdParams<E> p) {
  using C = compute_t<E>;
  RowOf r;
  if (!warp_row(p.s.B, p.s.Tq, p.s.H, &r)) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t step = p.s.H * p.s.D, qh = p.s.q_head(r.b, r.h), kh = p.s.k_head(r.b, r.h);
  const int64_t stat = (r.b * p.s.H + r.h) * p.s.Tq + r.i;
  Row<NPL, C> dO;
  dO.load(p.dO + qh + r.i * step, p.s.D, lane);
  C d = C(0);
  if constexpr (std::is_same_v<E, bf16_t>) {
    Row<NPL, C> q;
    q.load(p.q + qh + r.i * step, p.s.D, lane);
    const C l = p.lse[stat];
    const int64_t last = p.s.last_key(r.i);
    for (int64_t j = 0; j <= last; ++j) {
      const C qk = q.dot(p.k + kh + j * step, p.s.D, lane);
      const C dov = dO.dot(p.v + kh + j * step, p.s.D, lane);
      d += m_exp(p.scale * warp_sum(qk) - l) * warp_sum(dov);
    }
  } else {
    d = warp_sum(dO.dot(p.o + qh + r.i * step, p.s.D, lane));
  }
  if (p.dlse) d -= p.dlse[stat];
  if (lane == 0) p.delta[stat] = d;
}

// dq_i = scale sum_{j visible} P_ij (dO_i.v_j - Delta_i) k_j, with P_ij = exp(s_ij - lse_i).
template <int NPL, typename E>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock) attention_dq_kernel(BwdParams<E> p) {
  using C = compute_t<E>;
  RowOf r;
  if (!warp_row(p.s.B, p.s.Tq, p.s.H, &r)) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t step = p.s.H * p.s.D, qh = p.s.q_head(r.b, r.h), kh = p.s.k_head(r.b, r.h);
  const int64_t stat = (r.b * p.s.H + r.h) * p.s.Tq + r.i;
  Row<NPL, C> q, dO, acc;
  q.load(p.q + qh + r.i * step, p.s.D, lane);
  dO.load(p.dO + qh + r.i * step, p.s.D, lane);
  acc.zero();
  const C l = p.lse[stat], delta = p.delta[stat];
  const int64_t last = p.s.last_key(r.i);
  for (int64_t j = 0; j <= last; ++j) {
    const C qk = q.dot(p.k + kh + j * step, p.s.D, lane);
    const C dov = dO.dot(p.v + kh + j * step, p.s.D, lane);
    const C pij = m_exp(p.scale * warp_sum(qk) - l);
    acc.scale_add(C(1), pij * (warp_sum(dov) - delta), p.k + kh + j * step, p.s.D, lane);
  }
  acc.store(p.dq + qh + r.i * step, p.scale, p.s.D, lane);
}

// dv_j = sum_{i sees j} P_ij dO_i;  dk_j = scale sum_{i sees j} P_ij (dO_i.v_j - Delta_i) q_i.
template <int NPL, typename E>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock) attention_dkdv_kernel(BwdParams<E> p) {
  using C = compute_t<E>;
  RowOf r;  // r.i is the key position j here
  if (!warp_row(p.s.B, p.s.Tk, p.s.H, &r)) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t step = p.s.H * p.s.D, qh = p.s.q_head(r.b, r.h), kh = p.s.k_head(r.b, r.h);
  const int64_t stats = (r.b * p.s.H + r.h) * p.s.Tq;
  Row<NPL, C> k, v, dk, dv;
  k.load(p.k + kh + r.i * step, p.s.D, lane);
  v.load(p.v + kh + r.i * step, p.s.D, lane);
  dk.zero();
  dv.zero();
  for (int64_t i = p.s.first_query(r.i); i < p.s.Tq; ++i) {
    const C qk = k.dot(p.q + qh + i * step, p.s.D, lane);
    const C dov = v.dot(p.dO + qh + i * step, p.s.D, lane);
    const C pij = m_exp(p.scale * warp_sum(qk) - p.lse[stats + i]);
    dv.scale_add(C(1), pij, p.dO + qh + i * step, p.s.D, lane);
    dk.scale_add(C(1), pij * (warp_sum(dov) - p.delta[stats + i]), p.q + qh + i * step, p.s.D, lane);
  }
  dk.store(p.dk + kh + r.i * step, p.scale, p.s.D, lane);
  dv.store(p.dv + kh + r.i * step, C(1), p.s.D, lane);
}

// --- launchers ----------------------------------------------------------------------------------------
// Calls f.template operator()<NPL>() with the fewest elements per lane that hold a row of D.
template <typename F>
void with_per_lane(int64_t D, F&& f) {
  if (D <= kWarp) f.template operator()<1>();
  else if (D <= 2 * kWarp) f.template operator()<2>();
  else if (D <= 4 * kWarp) f.template operator()<4>();
  else f.template operator()<kMaxPerLane>();
}

unsigned row_blocks(int64_t rows) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  COIL_CHECK(blocks <= int64_t(0x7fffffff), "CUDA attention: ", rows, " rows exceed one launch");
  return unsigned(blocks);
}

template <typename E>
void check_bthd(const Tensor& t, const Shape& shape) {
  check_tensor<E>(t);
  COIL_INTERNAL_ASSERT(t.shape() == shape && t.is_contiguous(), "attention wants contiguous ",
                       shape_str(shape), ", got ", t.describe());
}

template <typename E>
void check_stat(const Tensor& t, int64_t B, int64_t H, int64_t T, const char* what) {
  COIL_INTERNAL_ASSERT(t.device().is_cuda() && t.dtype() == dtype_of<compute_t<E>>() &&
                           t.shape() == Shape({B, H, T}) && t.is_contiguous(),
                       "attention ", what, " must be contiguous (", B, ", ", H, ", ", T, ") ",
                       dtype_name(dtype_of<compute_t<E>>()), ", got ", t.describe());
}

// The layout of q (B, Tq, H, D) over k, v (B, Tk, H, D), checked.
template <typename E>
Layout layout_of(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  COIL_INTERNAL_ASSERT(q.dim() == 4 && k.dim() == 4, "attention wants (B, T, H, D), got q ", q.describe(),
                       ", k ", k.describe());
  const Layout s{q.size(0), q.size(1), k.size(1), q.size(2), q.size(3), causal};
  check_bthd<E>(q, q.shape());
  check_bthd<E>(k, {s.B, s.Tk, s.H, s.D});
  check_bthd<E>(v, k.shape());
  COIL_INTERNAL_ASSERT(causal ? s.Tk >= s.Tq : s.Tk >= 1, "attention: q ", q.describe(), ", k ",
                       k.describe(), causal ? " (causal wants Tk >= Tq)" : "");
  COIL_CHECK(s.D <= kMaxHeadDim, "CUDA attention: head dim ", s.D, " is over the supported ", kMaxHeadDim);
  return s;
}

template <typename E>
void attention_launch(const KernelArgs& a) {
  check_arity(a, 3, 2);
  const Tensor &q = a.in[0], &k = a.in[1], &v = a.in[2], &o = a.out[0], &lse = a.out[1];
  const Layout s = layout_of<E>(q, k, v, a.attrs.causal);
  check_bthd<E>(o, q.shape());
  check_stat<E>(lse, s.B, s.H, s.Tq, "lse");
  if (q.numel() == 0) return;
  if constexpr (std::is_same_v<E, bf16_t>)
    if (cudnn_sdpa_forward(q, k, v, o, lse, a.attrs.scale, s.causal)) return;
  FwdParams<E> p{q.data<E>(), k.data<E>(), v.data<E>(), o.data<E>(), lse.data<compute_t<E>>(),
                 s, compute_t<E>(a.attrs.scale)};
  LaunchContext ctx(q);
  with_per_lane(s.D, [&]<int NPL>() {
    attention_fwd_kernel<NPL, E><<<row_blocks(s.B * s.H * s.Tq), kWarp * kWarpsPerBlock, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("attention_fwd_kernel");
  });
}

// y[b, t, h, d] = alpha * w[b, h, t] * x[b, t, h, d] (+ y when accumulating); w null: 1. bf16, f32 math.
__global__ void rows_axpy_kernel(int64_t n, int64_t T, int64_t H, int64_t D, const bf16_t* x, const float* w,
                                 float alpha, bf16_t* y, bool accumulate) {
  for (int64_t e = grid_index(); e < n; e += grid_stride()) {
    float v = alpha * __bfloat162float(x[e]);
    if (w) {
      const int64_t h = (e / D) % H, t = (e / (D * H)) % T, b = e / (D * H * T);
      v *= w[(b * H + h) * T + t];
    }
    y[e] = float_to_bf16_rne(accumulate ? __bfloat162float(y[e]) + v : v);
  }
}

void rows_axpy(const Tensor& x, const Tensor* w, float alpha, const Tensor& y, bool accumulate) {
  LaunchContext ctx(y);
  const int64_t n = x.numel();
  rows_axpy_kernel<<<grid_for(n), kThreads, 0, ctx.stream>>>(n, x.size(1), x.size(2), x.size(3), x.data<bf16_t>(),
                                                             w ? w->data<float>() : nullptr, alpha,
                                                             y.data<bf16_t>(), accumulate);
  COIL_CUDA_CHECK_LAUNCH("attention rows_axpy_kernel");
}

// The bf16 backward with lse's gradient on cuDNN, whose SDPA graph takes no dlse: with P the softmax
// probabilities, dS = P (dP - Delta) + P dlse, so the gradients are cuDNN's plain backward plus
//   dq_i += scale dlse_i sum_j P_ij k_j   (a cuDNN forward with v = k: its output is P K)
//   dk_j += scale sum_i P_ij dlse_i q_i   (the dV of a cuDNN backward given dO = dlse q: dV = P^T dO)
// (one forward and one backward more; the second backward's dq, dk are thrown away). False, having
// touched nothing, when cuDNN does not take the shape's forward and backward (the native kernels then
// run the call).
bool cudnn_backward_with_dlse(const Tensor& dO, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                              const Tensor& lse, const Tensor& dlse, const Tensor& dq, const Tensor& dk,
                              const Tensor& dv, double scale, const Layout& s) {
  const AttentionShape plain{s.B, s.Tq, s.Tk, s.H, s.D, s.causal, false};
  const int dev = q.device().index;
  if (bf16_attention_impl(dev, plain, false) != AttentionImpl::CuDNN ||
      bf16_attention_impl(dev, plain, true) != AttentionImpl::CuDNN)
    return false;
  if (!cudnn_sdpa_backward(dO, q, k, v, o, lse, nullptr, dq, dk, dv, scale, s.causal)) return false;
  Tensor pk = Tensor::empty(q.shape(), DType::BF16, q.device());
  Tensor lse2 = Tensor::empty(lse.shape(), DType::F32, q.device());
  COIL_CHECK(cudnn_sdpa_forward(q, k, k, pk, lse2, scale, s.causal),
             "CUDA attention: cuDNN took the backward but not the forward of P K (dlse)");
  rows_axpy(pk, &dlse, float(scale), dq, true);
  Tensor xq = Tensor::empty(q.shape(), DType::BF16, q.device());
  rows_axpy(q, &dlse, 1.0f, xq, false);
  Tensor dq2 = Tensor::empty(q.shape(), DType::BF16, q.device());
  Tensor dk2 = Tensor::empty(k.shape(), DType::BF16, q.device());
  Tensor dv2 = Tensor::empty(k.shape(), DType::BF16, q.device());
  COIL_CHECK(cudnn_sdpa_backward(xq, q, k, v, o, lse, nullptr, dq2, dk2, dv2, scale, s.causal),
             "CUDA attention: cuDNN took the first backward but not P^T (dlse q)");
  rows_axpy(dv2, nullptr, float(scale), dk, true);
  return true;
}

template <typename E>
void attention_backward_launch(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT((a.in.size() == 6 || a.in.size() == 7) && a.out.size() == 3, op_name(a.op), " got ",
                       a.in.size(), " inputs and ", a.out.size(), " outputs, expected 6 or 7 and 3");
  const Tensor &dO = a.in[0], &q = a.in[1], &k = a.in[2], &v = a.in[3], &o = a.in[4], &lse = a.in[5];
  const Tensor* dlse = a.in.size() == 7 ? &a.in[6] : nullptr;
  const Tensor &dq = a.out[0], &dk = a.out[1], &dv = a.out[2];
  const Layout s = layout_of<E>(q, k, v, a.attrs.causal);
  for (const Tensor* t : {&dO, &o, &dq}) check_bthd<E>(*t, q.shape());
  for (const Tensor* t : {&dk, &dv}) check_bthd<E>(*t, k.shape());
  check_stat<E>(lse, s.B, s.H, s.Tq, "lse");
  if (dlse) check_stat<E>(*dlse, s.B, s.H, s.Tq, "dlse");
  if (q.numel() == 0 && k.numel() == 0) return;
  if constexpr (std::is_same_v<E, bf16_t>) {
    if (dlse ? cudnn_backward_with_dlse(dO, q, k, v, o, lse, *dlse, dq, dk, dv, a.attrs.scale, s)
             : cudnn_sdpa_backward(dO, q, k, v, o, lse, nullptr, dq, dk, dv, a.attrs.scale, s.causal))
      return;
  }
  LaunchContext ctx(q);
  Tensor delta = Tensor::empty({s.B, s.H, s.Tq}, dtype_of<compute_t<E>>(), q.device());  // (B, H, Tq)
  BwdParams<E> p{dO.data<E>(), q.data<E>(),  k.data<E>(),  v.data<E>(),  o.data<E>(),
                 lse.data<compute_t<E>>(), dlse ? dlse->data<compute_t<E>>() : nullptr,
                 delta.data<compute_t<E>>(), dq.data<E>(), dk.data<E>(), dv.data<E>(), s,
                 compute_t<E>(a.attrs.scale)};
  with_per_lane(s.D, [&]<int NPL>() {
    if (s.Tq > 0) {
      const unsigned q_blocks = row_blocks(s.B * s.H * s.Tq);
      attention_delta_kernel<NPL, E><<<q_blocks, kWarp * kWarpsPerBlock, 0, ctx.stream>>>(p);
      COIL_CUDA_CHECK_LAUNCH("attention_delta_kernel");
      attention_dq_kernel<NPL, E><<<q_blocks, kWarp * kWarpsPerBlock, 0, ctx.stream>>>(p);
      COIL_CUDA_CHECK_LAUNCH("attention_dq_kernel");
    }
    attention_dkdv_kernel<NPL, E><<<row_blocks(s.B * s.H * s.Tk), kWarp * kWarpsPerBlock, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("attention_dkdv_kernel");
  });
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Attention, attention_launch);
COIL_CUDA_FLOAT_KERNELS(AttentionBackward, attention_backward_launch);

}  // namespace coil::cuda
