// Masked quadratic linear attention on CUDA (ops LinAttn / LinAttnBackward; the contract and the
// gradient formulas are those of kernels/cpu/linattn.cpp, the oracle).
//
// Two implementations:
//  * bf16 with D = Dv = 64 and s > 0: FlashAttention-style tiles on the tensor cores (linattn_tc.cuh):
//    query x 64-key tiles, mma.sync m16n8k16 bf16 with fp32 accumulation, the decay
//    exp(acs_i - acs_j) from the fp32 cumsum, causal tile skipping. The forward needs no running
//    max: a power-1/2 weight has no exponential to overflow and fp32 holds every realistic u^2 (the
//    row scale of spec 6.2 would cancel anyway). The backward is three kernels with no atomics:
//    row statistics (1/c_i and Delta_i), dQ plus the query side of dacs over each query's keys, then
//    dK, dV plus the key side of dacs over each key's queries (it adds to the dacs the dQ kernel wrote,
//    in stream order, so the result is deterministic).
//  * every other dtype / shape (f32, f64: the GPU oracles; bf16 with other head dims): one thread per
//    output element, plain loops in the compute type (fp32 for f32 / bf16, fp64 for f64).
// The exp form (power kLinAttnPowerExp, 2Mamba-E) is softmax attention with the additive decay
// acs_i - acs_j: den holds each row's log-sum-exp, the forward keeps a running row max (the tensor
// cores: online softmax; the simple kernel: a first pass for the max), and the backward's row
// statistics are the log-sum-exp and Delta_i, from which both gradient kernels recompute
// P_ij = exp(z_ij - lse_i); G_ij = P_ij (dO_i.v_j - Delta_i) is then du_ij and the decay gradient.
// q, k, v (inputs) and dq, dk, dv (outputs) may be strided views, as linattn_qkv passes them (core/ops.h:
// three views of one packed (B, T, 3, H, D) projection and of its gradient). The tensor-core kernels
// read and write such views in place through their token strides; every other case is staged through
// dense copies (kernels/staging.h).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/device_math.cuh"
#include "kernels/cuda/linattn_tc.cuh"
#include "kernels/staging.h"

namespace coil::cuda {
namespace {

inline constexpr double kEps = 1e-8;  // core/ops.h kLinAttnDenominatorEps (the CPU kernel's clamp)

struct Geo {
  int64_t B, T, H, D, Dv;
};

Geo geo_of(const Tensor& q, const Tensor& v) {
  return {q.size(0), q.size(1), q.size(2), q.size(3), v.size(3)};
}

// --- simple kernels ---------------------------------------------------------------------------------
// w_ij and its factors, recomputed by every thread that needs them.
template <typename T, typename C>
struct SimpleW {
  C u, L, w;
};
template <typename T, typename C>
__device__ __forceinline__ SimpleW<T, C> simple_w(const Geo& g, const T* q, const T* k, const C* acs,
                                                  int64_t b, int64_t h, int64_t i, int64_t j, C scale,
                                                  int power) {
  const T* qi = q + ((b * g.T + i) * g.H + h) * g.D;
  const T* kj = k + ((b * g.T + j) * g.H + h) * g.D;
  C dot = C(0);
  for (int64_t d = 0; d < g.D; ++d) dot += to_compute(qi[d]) * to_compute(kj[d]);
  SimpleW<T, C> r;
  r.u = scale * dot;
  r.L = acs ? m_exp(acs[(b * g.T + i) * g.H + h] - acs[(b * g.T + j) * g.H + h]) : C(1);
  r.w = (power == 2 ? r.u * r.u : r.u) * r.L;
  return r;
}

// The exp form's logit z_ij = s q_i.k_j + acs_i - acs_j.
template <typename T, typename C>
__device__ __forceinline__ C simple_z(const Geo& g, const T* q, const T* k, const C* acs, int64_t b, int64_t h,
                                      int64_t i, int64_t j, C scale) {
  const T* qi = q + ((b * g.T + i) * g.H + h) * g.D;
  const T* kj = k + ((b * g.T + j) * g.H + h) * g.D;
  C dot = C(0);
  for (int64_t d = 0; d < g.D; ++d) dot += to_compute(qi[d]) * to_compute(kj[d]);
  return scale * dot + (acs ? acs[(b * g.T + i) * g.H + h] - acs[(b * g.T + j) * g.H + h] : C(0));
}

// One thread per (b, h, i, e), e < Dv: y_i[e]; e == 0 also writes den_i.
template <typename T>
__global__ void simple_fwd_kernel(Geo g, const T* q, const T* k, const T* v, const compute_t<T>* acs,
                                  T* y, compute_t<T>* den, compute_t<T> scale, int power, bool sm_norm) {
  using C = compute_t<T>;
  const int64_t n = g.B * g.H * g.T * g.Dv;
  for (int64_t idx = grid_index(); idx < n; idx += grid_stride()) {
    const int64_t e = idx % g.Dv, i = (idx / g.Dv) % g.T, bh = idx / (g.Dv * g.T);
    const int64_t b = bh / g.H, h = bh % g.H;
    if (power == tc::kPowerExp) {
      C m = simple_z<T, C>(g, q, k, acs, b, h, i, 0, scale);
      for (int64_t j = 1; j <= i; ++j) m = fmax(m, simple_z<T, C>(g, q, k, acs, b, h, i, j, scale));
      C num = C(0), total = C(0);
      for (int64_t j = 0; j <= i; ++j) {
        const C w = m_exp(simple_z<T, C>(g, q, k, acs, b, h, i, j, scale) - m);
        total += w;
        num += w * to_compute(v[((b * g.T + j) * g.H + h) * g.Dv + e]);
      }
      y[((b * g.T + i) * g.H + h) * g.Dv + e] = from_compute<T>(num / total);
      if (e == 0) den[bh * g.T + i] = m + m_log(total);
      continue;
    }
    C num = C(0), total = C(0);
    for (int64_t j = 0; j <= i; ++j) {
      const auto w = simple_w<T, C>(g, q, k, acs, b, h, i, j, scale, power);
      total += w.w;
      num += w.w * to_compute(v[((b * g.T + j) * g.H + h) * g.Dv + e]);
    }
    const C c = sm_norm ? (total > C(kEps) ? total : C(kEps)) : C(1);
    y[((b * g.T + i) * g.H + h) * g.Dv + e] = from_compute<T>(num / c);
    if (e == 0) den[bh * g.T + i] = total;
  }
}

// Per query row: rc_i = 1 / c_i and dl_i = Delta_i where the clamp passes a gradient (0 elsewhere);
// rows past T (the tensor-core tiles' padding) get 0, so everything they touch vanishes.
// The exp form: rc_i = lse_i lse_mul (log2 e for the tensor cores' base-2 exponentials) and Delta_i.
template <typename T>
__global__ void row_stats_kernel(Geo g, int64_t Tpad, const T* dO, const T* y, const compute_t<T>* den,
                                 compute_t<T>* rc, compute_t<T>* dl, bool sm_norm, bool expo,
                                 compute_t<T> lse_mul) {
  using C = compute_t<T>;
  const int64_t n = g.B * g.H * Tpad;
  for (int64_t idx = grid_index(); idx < n; idx += grid_stride()) {
    const int64_t i = idx % Tpad, bh = idx / Tpad, b = bh / g.H, h = bh % g.H;
    if (i >= g.T) {
      rc[idx] = C(0);
      dl[idx] = C(0);
      continue;
    }
    const C total = den[bh * g.T + i];
    if (expo) {
      const T* dOi = dO + ((b * g.T + i) * g.H + h) * g.Dv;
      const T* yi = y + ((b * g.T + i) * g.H + h) * g.Dv;
      C delta = C(0);
      for (int64_t e = 0; e < g.Dv; ++e) delta += to_compute(dOi[e]) * to_compute(yi[e]);
      rc[idx] = total * lse_mul;
      dl[idx] = delta;
      continue;
    }
    if (!sm_norm) {
      rc[idx] = C(1);
      dl[idx] = C(0);
      continue;
    }
    const bool active = total > C(kEps);
    C delta = C(0);
    if (active) {
      const T* dOi = dO + ((b * g.T + i) * g.H + h) * g.Dv;
      const T* yi = y + ((b * g.T + i) * g.H + h) * g.Dv;
      for (int64_t e = 0; e < g.Dv; ++e) delta += to_compute(dOi[e]) * to_compute(yi[e]);
    }
    rc[idx] = C(1) / (active ? total : C(kEps));
    dl[idx] = delta;
  }
}

// One thread per (b, h, i, d), d < D: dq_i[d]; d == 0 also writes the query side of dacs_i.
template <typename T>
__global__ void simple_dq_kernel(Geo g, const T* dO, const T* q, const T* k, const T* v,
                                 const compute_t<T>* acs, const compute_t<T>* rc,
                                 const compute_t<T>* dl, T* dq, compute_t<T>* dacs, compute_t<T> scale,
                                 int power) {
  using C = compute_t<T>;
  const int64_t n = g.B * g.H * g.T * g.D;
  for (int64_t idx = grid_index(); idx < n; idx += grid_stride()) {
    const int64_t d = idx % g.D, i = (idx / g.D) % g.T, bh = idx / (g.D * g.T);
    const int64_t b = bh / g.H, h = bh % g.H;
    const C r = rc[bh * g.T + i], delta = dl[bh * g.T + i];
    const T* dOi = dO + ((b * g.T + i) * g.H + h) * g.Dv;
    C acc = C(0), gsum = C(0);
    if (power == tc::kPowerExp) {  // r holds lse_i
      for (int64_t j = 0; j <= i; ++j) {
        const C pij = m_exp(simple_z<T, C>(g, q, k, acs, b, h, i, j, scale) - r);
        const T* vj = v + ((b * g.T + j) * g.H + h) * g.Dv;
        C dp = C(0);
        for (int64_t e = 0; e < g.Dv; ++e) dp += to_compute(dOi[e]) * to_compute(vj[e]);
        const C gij = pij * (dp - delta);
        gsum += gij;
        acc += gij * to_compute(k[((b * g.T + j) * g.H + h) * g.D + d]);
      }
      dq[((b * g.T + i) * g.H + h) * g.D + d] = from_compute<T>(scale * acc);
      if (d == 0 && dacs) dacs[(b * g.T + i) * g.H + h] = gsum;
      continue;
    }
    for (int64_t j = 0; j <= i; ++j) {
      const auto w = simple_w<T, C>(g, q, k, acs, b, h, i, j, scale, power);
      const T* vj = v + ((b * g.T + j) * g.H + h) * g.Dv;
      C dp = C(0);
      for (int64_t e = 0; e < g.Dv; ++e) dp += to_compute(dOi[e]) * to_compute(vj[e]);
      const C dw = (dp - delta) * r;
      gsum += w.w * dw;
      const C du = (power == 2 ? C(2) * w.u : C(1)) * w.L * dw;
      acc += du * to_compute(k[((b * g.T + j) * g.H + h) * g.D + d]);
    }
    dq[((b * g.T + i) * g.H + h) * g.D + d] = from_compute<T>(scale * acc);
    if (d == 0 && dacs) dacs[(b * g.T + i) * g.H + h] = gsum;
  }
}

// One thread per (b, h, j, e), e < max(D, Dv): dk_j[e] and dv_j[e]; e == 0 adds the key side of dacs_j.
template <typename T>
__global__ void simple_dkdv_kernel(Geo g, const T* dO, const T* q, const T* k, const T* v,
                                   const compute_t<T>* acs, const compute_t<T>* rc,
                                   const compute_t<T>* dl, T* dk, T* dv, compute_t<T>* dacs,
                                   compute_t<T> scale, int power) {
  using C = compute_t<T>;
  const int64_t E = g.D > g.Dv ? g.D : g.Dv;
  const int64_t n = g.B * g.H * g.T * E;
  for (int64_t idx = grid_index(); idx < n; idx += grid_stride()) {
    const int64_t e = idx % E, j = (idx / E) % g.T, bh = idx / (E * g.T);
    const int64_t b = bh / g.H, h = bh % g.H;
    const T* vj = v + ((b * g.T + j) * g.H + h) * g.Dv;
    C ak = C(0), av = C(0), gsum = C(0);
    if (power == tc::kPowerExp) {
      for (int64_t i = j; i < g.T; ++i) {  // rc holds lse_i
        const C pij = m_exp(simple_z<T, C>(g, q, k, acs, b, h, i, j, scale) - rc[bh * g.T + i]);
        const T* dOi = dO + ((b * g.T + i) * g.H + h) * g.Dv;
        C dp = C(0);
        for (int64_t c = 0; c < g.Dv; ++c) dp += to_compute(dOi[c]) * to_compute(vj[c]);
        const C gij = pij * (dp - dl[bh * g.T + i]);
        gsum += gij;
        if (e < g.D) ak += gij * to_compute(q[((b * g.T + i) * g.H + h) * g.D + e]);
        if (e < g.Dv) av += pij * to_compute(dOi[e]);
      }
    } else {
      for (int64_t i = j; i < g.T; ++i) {
        const auto w = simple_w<T, C>(g, q, k, acs, b, h, i, j, scale, power);
        const T* dOi = dO + ((b * g.T + i) * g.H + h) * g.Dv;
        C dp = C(0);
        for (int64_t c = 0; c < g.Dv; ++c) dp += to_compute(dOi[c]) * to_compute(vj[c]);
        const C r = rc[bh * g.T + i];
        const C dw = (dp - dl[bh * g.T + i]) * r;
        gsum += w.w * dw;
        const C du = (power == 2 ? C(2) * w.u : C(1)) * w.L * dw;
        if (e < g.D) ak += du * to_compute(q[((b * g.T + i) * g.H + h) * g.D + e]);
        if (e < g.Dv) av += w.w * r * to_compute(dOi[e]);
      }
    }
    if (e < g.D) dk[((b * g.T + j) * g.H + h) * g.D + e] = from_compute<T>(scale * ak);
    if (e < g.Dv) dv[((b * g.T + j) * g.H + h) * g.Dv + e] = from_compute<T>(av);
    if (e == 0 && dacs) dacs[(b * g.T + j) * g.H + h] -= gsum;
  }
}

bool use_tensor_cores(DType t, const Geo& g, double scale) {
  return t == DType::BF16 && g.D == tc::kDim && g.Dv == tc::kDim && scale > 0.0;
}

// The decay in the tensor-core kernels' layout (tc::prep_decay), or an undefined tensor without decay.
Tensor tc_decay(const tc::Problem& p, const Tensor& acs, cudaStream_t stream) {
  if (!acs.defined()) return Tensor();
  Tensor a2 = Tensor::empty({p.B * p.H * tc::padded_length(p.T)}, DType::F32, acs.device());
  tc::prep_decay(p, acs.data<float>(), a2.data<float>(), stream);
  return a2;
}

template <typename T>
const compute_t<T>* acs_ptr(const Tensor& acs) {
  if (!acs.defined()) return nullptr;
  COIL_INTERNAL_ASSERT(acs.dtype() == dtype_of<compute_t<T>>(), "linattn: acs must be in the compute dtype, got ",
                       acs.describe());
  return acs.data<compute_t<T>>();
}

// Elements between consecutive tokens of a (B, T, H, 64) operand the tensor-core kernels can index in
// place (each head's 64 values dense, heads adjacent, batches T tokens apart, 16-byte aligned), or 0.
int64_t tc_token_stride(const Tensor& t) {
  const Shape& st = t.strides();
  if (st[3] != 1 || st[2] != t.size(3) || st[1] < t.size(2) * t.size(3) || st[1] % 8 != 0) return 0;
  if (t.size(0) > 1 && st[0] != t.size(1) * st[1]) return 0;
  if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) return 0;
  return st[1];
}
// The common token stride of q, k, v (or dq, dk, dv), or 0 when they differ or one has none.
int64_t tc_common_stride(const Tensor& a, const Tensor& b, const Tensor& c) {
  const int64_t ld = tc_token_stride(a);
  return ld != 0 && tc_token_stride(b) == ld && tc_token_stride(c) == ld ? ld : 0;
}

template <typename T>
void linattn_fwd(const KernelArgs& a) {
  check_arity(a, 4, 2);
  check_tensor<T>(a.in[0]);
  const Geo g = geo_of(a.in[0], a.in[2]);
  LaunchContext ctx(a.in[0]);
  const int power = int(a.attrs.power);
  COIL_INTERNAL_ASSERT(power == 1 || power == 2 || power == tc::kPowerExp, "linattn: power ", power);
  using C = compute_t<T>;
  if (g.B * g.H * g.T == 0) return;
  if constexpr (std::is_same_v<T, bf16_t>) {
    if (use_tensor_cores(dtype_of<T>(), g, a.attrs.scale)) {
      const int64_t ld = tc_common_stride(a.in[0], a.in[1], a.in[2]);
      const DenseStaging st = ld ? DenseStaging(a, {}, {}) : DenseStaging(a, {0, 1, 2}, {});
      const KernelArgs& b = st.args;
      tc::Problem p{g.B, g.T, g.H, a.attrs.scale, power, a.attrs.sm_norm};
      p.ld_in = ld ? ld : g.H * g.D;
      acs_ptr<T>(b.in[3]);  // checks its dtype
      const Tensor a2 = tc_decay(p, b.in[3], ctx.stream);
      tc::forward(p, b.in[0].data<T>(), b.in[1].data<T>(), b.in[2].data<T>(),
                  a2.defined() ? a2.data<float>() : nullptr, b.out[0].data<T>(), b.out[1].data<float>(),
                  ctx.stream);
      return;
    }
  }
  const DenseStaging st(a, {0, 1, 2}, {});
  const KernelArgs& b = st.args;
  simple_fwd_kernel<T><<<grid_for(g.B * g.H * g.T * g.Dv), kThreads, 0, ctx.stream>>>(
      g, b.in[0].data<T>(), b.in[1].data<T>(), b.in[2].data<T>(), acs_ptr<T>(b.in[3]),
      b.out[0].data<T>(), b.out[1].data<C>(), C(a.attrs.scale), power, a.attrs.sm_norm);
  COIL_CUDA_CHECK_LAUNCH("linattn simple_fwd_kernel");
}

template <typename T>
void linattn_bwd(const KernelArgs& a) {
  check_arity(a, 7, 4);
  check_tensor<T>(a.in[1]);
  const Geo g = geo_of(a.in[1], a.in[3]);
  LaunchContext ctx(a.in[1]);
  const int power = int(a.attrs.power);
  using C = compute_t<T>;
  if (g.B * g.H * g.T == 0) return;
  const bool tc_path = use_tensor_cores(dtype_of<T>(), g, a.attrs.scale);
  // The tensor-core path takes q, k, v and dq, dk, dv in place when each triple shares a token stride.
  const int64_t ld_in = tc_path ? tc_common_stride(a.in[1], a.in[2], a.in[3]) : 0;
  const int64_t ld_grad = tc_path ? tc_common_stride(a.out[0], a.out[1], a.out[2]) : 0;
  DenseStaging st = ld_in ? DenseStaging(a, {}, {}) : DenseStaging(a, {1, 2, 3}, {});
  if (!ld_grad) st = DenseStaging(st.args, {}, {0, 1, 2});
  const KernelArgs& b = st.args;
  const T *dO = b.in[0].data<T>(), *q = b.in[1].data<T>(), *k = b.in[2].data<T>(), *v = b.in[3].data<T>();
  const C* acs = acs_ptr<T>(b.in[4]);
  const T* y = b.in[5].data<T>();
  const C* den = b.in[6].data<C>();
  C* dacs = acs ? b.out[3].data<C>() : nullptr;
  // Row statistics, padded to whole tiles on the tensor-core path.
  const int64_t Tpad = tc_path ? tc::padded_length(g.T) : g.T;
  Tensor rc = Tensor::empty({g.B * g.H * Tpad}, dtype_of<C>(), a.in[1].device());
  Tensor dl = Tensor::empty({g.B * g.H * Tpad}, dtype_of<C>(), a.in[1].device());
  const bool expo = power == tc::kPowerExp;
  row_stats_kernel<T><<<grid_for(g.B * g.H * Tpad), kThreads, 0, ctx.stream>>>(
      g, Tpad, dO, y, den, rc.data<C>(), dl.data<C>(), a.attrs.sm_norm, expo, C(tc_path ? tc::kLog2e : 1.0f));
  COIL_CUDA_CHECK_LAUNCH("linattn row_stats_kernel");
  if constexpr (std::is_same_v<T, bf16_t>) {
    if (tc_path) {
      tc::Problem p{g.B, g.T, g.H, a.attrs.scale, power, a.attrs.sm_norm};
      p.ld_in = ld_in ? ld_in : g.H * g.D;
      p.ld_grad = ld_grad ? ld_grad : g.H * g.D;
      const Tensor a2 = tc_decay(p, b.in[4], ctx.stream);
      tc::backward(p, dO, q, k, v, a2.defined() ? a2.data<float>() : nullptr, rc.data<float>(),
                   dl.data<float>(), b.out[0].data<T>(), b.out[1].data<T>(), b.out[2].data<T>(), dacs,
                   ctx.stream);
      st.finish();
      return;
    }
  }
  const C s = C(a.attrs.scale);
  simple_dq_kernel<T><<<grid_for(g.B * g.H * g.T * g.D), kThreads, 0, ctx.stream>>>(
      g, dO, q, k, v, acs, rc.data<C>(), dl.data<C>(), b.out[0].data<T>(), dacs, s, power);
  COIL_CUDA_CHECK_LAUNCH("linattn simple_dq_kernel");
  const int64_t E = g.D > g.Dv ? g.D : g.Dv;
  simple_dkdv_kernel<T><<<grid_for(g.B * g.H * g.T * E), kThreads, 0, ctx.stream>>>(
      g, dO, q, k, v, acs, rc.data<C>(), dl.data<C>(), b.out[1].data<T>(), b.out[2].data<T>(), dacs, s,
      power);
  COIL_CUDA_CHECK_LAUNCH("linattn simple_dkdv_kernel");
  st.finish();
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(LinAttn, linattn_fwd);
COIL_CUDA_FLOAT_KERNELS(LinAttnBackward, linattn_bwd);

}  // namespace coil::cuda
