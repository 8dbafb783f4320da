// Front-end of the chunked linear attention with state in / out (ops LinAttnChunked /
// LinAttnChunkedBackward): checks, the precision of each input, allocation of y, the final state, the
// chunk-entry states the backward reads and the denominator statistic, and the autograd node. The
// layer (layers/linattn_chunked.cpp, linattn_chunked) builds its LinAttnState around it.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

namespace {

// t in dtype st on q's device with the expected shape, or undefined.
Tensor stat_operand(const Tensor& t, const char* what, const Tensor& q, DType st, const Shape& shape) {
  if (!t.defined()) return Tensor();
  check_floating("linattn_chunked", t, what);
  COIL_CHECK(t.device() == q.device(), "linattn_chunked: device mismatch between ", what, " ", t.describe(),
             " and q ", q.describe());
  Tensor c = t.to(st);
  check_shape("linattn_chunked", c, what, shape, q, "q");
  return c;
}

}  // namespace

Tensor linattn_chunked_op(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& a_in,
                          const Tensor& S0_in, const Tensor& z0_in, int64_t power, bool sm_norm, double scale,
                          int64_t chunk, Tensor* S_out, Tensor* z_out) {
  check_floating("linattn_chunked", q_in, "q");
  // Under autocast q, k, v run in bf16 (tensor-core GEMMs); the decay, the states and every
  // statistic stay fp32 (spec 6.2).
  Tensor q = autocast_lower(q_in), k = autocast_lower(k_in), v = autocast_lower(v_in);
  check_same("linattn_chunked", q, "q", k, "k");
  check_same("linattn_chunked", q, "q", v, "v");
  COIL_CHECK(power == 1 || power == 2, "linattn_chunked: power must be 1 or 2, got ", power);
  COIL_CHECK(chunk > 0, "linattn_chunked: chunk length must be positive, got ", chunk);
  COIL_CHECK(q.dim() == 4 && q.size(1) > 0, "linattn_chunked: q must be (B, T, H, D) with T > 0, got ",
             shape_str(q.shape()));
  check_shape("linattn_chunked", k, "k", q.shape(), q, "q");
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
  COIL_CHECK(v.dim() == 4 && v.size(0) == B && v.size(1) == T && v.size(2) == H,
             "linattn_chunked: v must be (B, T, H, Dv) with (B, T, H) of q ", shape_str(q.shape()), ", got ",
             shape_str(v.shape()));
  const int64_t Dv = v.size(3), F = linattn_chunked_features(power, D), nc = (T + chunk - 1) / chunk;
  const DType st = stat_dtype(q.dtype());
  const Tensor a = stat_operand(a_in, "a", q, st, Shape{B, T, H});
  const Tensor S0 = stat_operand(S0_in, "S0", q, st, Shape{B, H, F, Dv});
  COIL_CHECK(sm_norm || !z0_in.defined(), "linattn_chunked: z0 is given but sm_norm is off (no denominator)");
  const Tensor z0 = stat_operand(z0_in, "z0", q, st, Shape{B, H, F});
  COIL_CHECK(z0.defined() == (sm_norm && S0.defined()),
             "linattn_chunked: with sm_norm an incoming state needs both S0 and z0");

  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor ac = a.defined() ? a.detach().contiguous() : Tensor();
  Tensor S0c = S0.defined() ? S0.detach().contiguous() : Tensor();
  Tensor z0c = z0.defined() ? z0.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({B, T, H, Dv}, q.dtype(), q.device());
  Tensor S = Tensor::empty({B, H, F, Dv}, st, q.device());
  Tensor z = sm_norm ? Tensor::empty({B, H, F}, st, q.device()) : Tensor();
  Tensor Sc = Tensor::empty({nc, B, H, F, Dv}, st, q.device());
  Tensor zc = sm_norm ? Tensor::empty({nc, B, H, F}, st, q.device()) : Tensor();
  Tensor den = sm_norm ? Tensor::empty({B, H, T}, st, q.device()) : Tensor();
  KernelArgs fa = make_args(Op::LinAttnChunked, {qc, kc, vc, ac, S0c, z0c}, {y, S, z, Sc, zc, den});
  fa.attrs.power = power;
  fa.attrs.sm_norm = sm_norm;
  fa.attrs.scale = scale;
  fa.attrs.dim = chunk;
  run(fa, q.dtype());

  std::vector<Tensor> inputs = {q, k, v};
  if (a.defined()) inputs.push_back(a);
  if (S0.defined()) inputs.push_back(S0);
  if (z0.defined()) inputs.push_back(z0);
  std::vector<Tensor> outputs = {y, S};
  if (sm_norm) outputs.push_back(z);
  const bool has_a = a.defined(), has_S0 = S0.defined();
  record("LinAttnChunkedBackward", inputs, outputs,
         [=](const Grads& g, const Grads& sv) {
           const Tensor &qs = sv[0], &ks = sv[1], &vs = sv[2], &as = sv[3];
           const DType sdt = sv[5].dtype();
           Tensor dy = g[0].contiguous();
           Tensor dS = g[1].to(sdt).contiguous();
           Tensor dz = sm_norm ? g[2].to(sdt).contiguous() : Tensor();
           Tensor dq = Tensor::empty(qs.shape(), qs.dtype(), qs.device());
           Tensor dk = Tensor::empty(ks.shape(), ks.dtype(), ks.device());
           Tensor dv = Tensor::empty(vs.shape(), vs.dtype(), vs.device());
           Tensor da = has_a ? Tensor::empty(as.shape(), as.dtype(), qs.device()) : Tensor();
           Tensor dS0 = Tensor::empty(dS.shape(), sdt, qs.device());
           Tensor dz0 = sm_norm ? Tensor::empty(dz.shape(), sdt, qs.device()) : Tensor();
           KernelArgs ba = make_args(Op::LinAttnChunkedBackward,
                                     {dy, dS, dz, qs, ks, vs, as, sv[4], sv[5], sv[6], sv[7]},
                                     {dq, dk, dv, da, dS0, dz0});
           ba.attrs.power = power;
           ba.attrs.sm_norm = sm_norm;
           ba.attrs.scale = scale;
           ba.attrs.dim = chunk;
           run(ba, qs.dtype());
           Grads out = {dq, dk, dv};
           if (has_a) out.push_back(da);
           if (has_S0) {
             out.push_back(dS0);
             if (sm_norm) out.push_back(dz0);
           }
           return out;
         },
         {qc, kc, vc, ac, y, Sc, zc, den});
  // Last: the outputs may alias the incoming state's variables.
  if (S_out) *S_out = S;
  if (z_out) *z_out = z;
  return y;
}

}  // namespace coil
