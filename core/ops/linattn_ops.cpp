// Front-end of the fused masked quadratic linear attention (ops LinAttn / LinAttnBackward): checks,
// allocation of y and the denominator row statistic, and the autograd node that calls the backward
// kernel; linattn_qkv runs the same kernels on views of one packed projection. The layers
// (layers/linattn.cpp) build the cumulative decay and the feature choices around it.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

namespace {

// acs checked against q's (B, T, H) and converted to the statistics precision (spec 6.2: cumsums in
// fp32), or undefined.
Tensor decay_operand(const char* who, const Tensor& acs_in, const Tensor& q, int64_t B, int64_t T, int64_t H) {
  if (!acs_in.defined()) return Tensor();
  check_floating(who, acs_in, "acs");
  COIL_CHECK(acs_in.device() == q.device(), who, ": device mismatch between acs ", acs_in.describe(),
             " and q ", q.describe());
  check_shape(who, acs_in, "acs", Shape{B, T, H}, q, "q");
  return acs_in.to(stat_dtype(q.dtype()));
}

// power 1, 2 or kLinAttnPowerExp; the softmax of the exp form is normalised by definition.
void check_power(const char* who, int64_t power, bool sm_norm) {
  COIL_CHECK(power == 1 || power == 2 || power == kLinAttnPowerExp, who, ": power must be 1, 2 or ",
             kLinAttnPowerExp, " (exp), got ", power);
  COIL_CHECK(power != kLinAttnPowerExp || sm_norm, who,
             ": power exp (softmax weights) needs sm_norm = true, got sm_norm = false");
}

// y (B, T, H, Dv) and den (B, H, T) from the kernel's operands (q, k, v dense or strided views).
Tensor forward_kernel(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& acs, int64_t power,
                      bool sm_norm, double scale, Tensor& den) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2);
  Tensor y = Tensor::empty({B, T, H, v.size(3)}, q.dtype(), q.device());
  den = Tensor::empty({B, H, T}, stat_dtype(q.dtype()), q.device());
  KernelArgs a = make_args(Op::LinAttn, {q, k, v, acs}, {y, den});
  a.attrs.scale = scale;
  a.attrs.power = power;
  a.attrs.sm_norm = sm_norm;
  run(a, q.dtype());
  return y;
}

// The backward kernel: writes dq, dk, dv (dense or views) and returns dacs (undefined without acs).
Tensor backward_kernel(const Tensor& dy, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& acs,
                       const Tensor& y, const Tensor& den, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                       int64_t power, bool sm_norm, double scale) {
  Tensor dacs = acs.defined() ? Tensor::empty(acs.shape(), acs.dtype(), q.device()) : Tensor();
  KernelArgs b = make_args(Op::LinAttnBackward, {dy, q, k, v, acs, y, den}, {dq, dk, dv, dacs});
  b.attrs.scale = scale;
  b.attrs.power = power;
  b.attrs.sm_norm = sm_norm;
  run(b, dy.dtype());
  return dacs;
}

}  // namespace

Tensor linattn(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& acs_in,
               int64_t power, bool sm_norm, double scale, Tensor* den_out) {
  check_floating("linattn", q_in, "q");
  // Under autocast the tiles run on bf16 tensor cores; acs stays fp32 (decay_operand).
  Tensor q = autocast_lower(q_in), k = autocast_lower(k_in), v = autocast_lower(v_in);
  check_same("linattn", q, "q", k, "k");
  check_same("linattn", q, "q", v, "v");
  check_power("linattn", power, sm_norm);
  COIL_CHECK(q.dim() == 4, "linattn: q must be (B, T, H, D), got ", shape_str(q.shape()));
  check_shape("linattn", k, "k", q.shape(), q, "q");
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2);
  COIL_CHECK(v.dim() == 4 && v.size(0) == B && v.size(1) == T && v.size(2) == H,
             "linattn: v must be (B, T, H, Dv) with (B, T, H) of q ", shape_str(q.shape()), ", got ",
             shape_str(v.shape()));
  const Tensor acs = decay_operand("linattn", acs_in, q, B, T, H);
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor ac = acs.defined() ? acs.detach().contiguous() : Tensor();
  Tensor den;
  Tensor y = forward_kernel(qc, kc, vc, ac, power, sm_norm, scale, den);
  if (den_out) *den_out = den;

  std::vector<Tensor> inputs = {q, k, v};
  std::vector<Tensor> saved = {qc, kc, vc, y, den};
  if (acs.defined()) {
    inputs.push_back(acs);
    saved.push_back(ac);
  }
  record("LinAttnBackward", inputs, {y},
         [scale, power, sm_norm](const Grads& g, const Grads& sv) {
           Tensor dy = g[0].contiguous();
           const Tensor& qs = sv[0];
           Tensor acs_s = sv.size() > 5 ? sv[5] : Tensor();
           Tensor dq = Tensor::empty(qs.shape(), qs.dtype(), qs.device());
           Tensor dk = Tensor::empty(qs.shape(), qs.dtype(), qs.device());
           Tensor dv = Tensor::empty(sv[2].shape(), qs.dtype(), qs.device());
           Tensor dacs = backward_kernel(dy, sv[0], sv[1], sv[2], acs_s, sv[3], sv[4], dq, dk, dv, power,
                                         sm_norm, scale);
           Grads out = {dq, dk, dv};
           if (acs_s.defined()) out.push_back(dacs);
           return out;
         },
         saved);
  return y;
}

Tensor linattn_qkv(const Tensor& qkv_in, const Tensor& acs_in, int64_t n_heads, int64_t power, bool sm_norm,
                   double scale, Tensor* den_out) {
  check_floating("linattn_qkv", qkv_in, "qkv");
  Tensor qkv = autocast_lower(qkv_in);
  check_power("linattn_qkv", power, sm_norm);
  COIL_CHECK(n_heads > 0 && qkv.dim() == 3 && qkv.size(2) % (3 * n_heads) == 0 && qkv.size(2) > 0,
             "linattn_qkv: qkv must be (B, T, 3 H D) with H = ", n_heads, ", got ", shape_str(qkv.shape()));
  const int64_t B = qkv.size(0), T = qkv.size(1), H = n_heads, D = qkv.size(2) / (3 * H);
  // q, k, v: views of the packed rows, (B, T, H, D) with tokens 3 H D apart; the kernels read them in
  // place (tensor cores) or stage them (kernels/staging.h).
  Tensor packed = qkv.detach().contiguous().view({B, T, 3 * H, D});
  auto part = [H](const Tensor& t, int64_t i) { return t.narrow(2, i * H, H); };
  const Tensor acs = decay_operand("linattn_qkv", acs_in, packed, B, T, H);
  Tensor ac = acs.defined() ? acs.detach().contiguous() : Tensor();
  Tensor den;
  Tensor y = forward_kernel(part(packed, 0), part(packed, 1), part(packed, 2), ac, power, sm_norm, scale, den);
  if (den_out) *den_out = den;

  std::vector<Tensor> inputs = {qkv};
  std::vector<Tensor> saved = {packed, y, den};
  if (acs.defined()) {
    inputs.push_back(acs);
    saved.push_back(ac);
  }
  record("LinAttnQkvBackward", inputs, {y},
         [scale, power, sm_norm, part](const Grads& g, const Grads& sv) {
           Tensor dy = g[0].contiguous();
           const Tensor& ps = sv[0];
           Tensor acs_s = sv.size() > 3 ? sv[3] : Tensor();
           // One packed gradient, its three parts written by the kernel: no zero fill, no adds.
           Tensor dpacked = Tensor::empty(ps.shape(), ps.dtype(), ps.device());
           Tensor dacs = backward_kernel(dy, part(ps, 0), part(ps, 1), part(ps, 2), acs_s, sv[1], sv[2],
                                         part(dpacked, 0), part(dpacked, 1), part(dpacked, 2), power, sm_norm,
                                         scale);
           Grads out = {dpacked.view({ps.size(0), ps.size(1), ps.size(2) * ps.size(3)})};
           if (acs_s.defined()) out.push_back(dacs);
           return out;
         },
         saved);
  return y;
}

}  // namespace coil
