// Front-end of the fused masked quadratic linear attention (ops LinAttn / LinAttnBackward): checks,
// allocation of y and the denominator row statistic, and the autograd node that calls the backward
// kernel. The layers (layers/linattn.cpp) build the cumulative decay and the feature choices around it.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

Tensor linattn(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& acs_in,
               int64_t power, bool sm_norm, double scale, Tensor* den_out) {
  check_floating("linattn", q_in, "q");
  // Under autocast the tiles run on bf16 tensor cores; acs stays fp32 (below).
  Tensor q = autocast_lower(q_in), k = autocast_lower(k_in), v = autocast_lower(v_in);
  check_same("linattn", q, "q", k, "k");
  check_same("linattn", q, "q", v, "v");
  COIL_CHECK(power == 1 || power == 2, "linattn: power must be 1 or 2, got ", power);
  COIL_CHECK(q.dim() == 4, "linattn: q must be (B, T, H, D), got ", shape_str(q.shape()));
  check_shape("linattn", k, "k", q.shape(), q, "q");
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2);
  COIL_CHECK(v.dim() == 4 && v.size(0) == B && v.size(1) == T && v.size(2) == H,
             "linattn: v must be (B, T, H, Dv) with (B, T, H) of q ", shape_str(q.shape()), ", got ",
             shape_str(v.shape()));
  const DType st = stat_dtype(q.dtype());
  Tensor acs;
  if (acs_in.defined()) {
    check_floating("linattn", acs_in, "acs");
    COIL_CHECK(acs_in.device() == q.device(), "linattn: device mismatch between acs ",
               acs_in.describe(), " and q ", q.describe());
    check_shape("linattn", acs_in, "acs", Shape{B, T, H}, q, "q");
    // The decay exponent stays in the statistics precision (spec 6.2: cumsums in fp32).
    acs = acs_in.to(st);
  }
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor ac = acs.defined() ? acs.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty(v.shape(), q.dtype(), q.device());
  Tensor den = Tensor::empty({B, H, T}, st, q.device());
  KernelArgs a = make_args(Op::LinAttn, {qc, kc, vc, ac}, {y, den});
  a.attrs.scale = scale;
  a.attrs.power = power;
  a.attrs.sm_norm = sm_norm;
  run(a, q.dtype());
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
           Tensor dacs = acs_s.defined() ? Tensor::empty(acs_s.shape(), acs_s.dtype(), qs.device()) : Tensor();
           KernelArgs b = make_args(Op::LinAttnBackward, {dy, sv[0], sv[1], sv[2], acs_s, sv[3], sv[4]},
                                    {dq, dk, dv, dacs});
           b.attrs.scale = scale;
           b.attrs.power = power;
           b.attrs.sm_norm = sm_norm;
           run(b, dy.dtype());
           Grads out = {dq, dk, dv};
           if (acs_s.defined()) out.push_back(dacs);
           return out;
         },
         saved);
  return y;
}

}  // namespace coil
