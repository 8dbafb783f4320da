// Front-end of the fused Mamba-1 selective scan (ops SelectiveScan / SelectiveScanBackward): checks,
// the precision of each input, allocation of y, the final state and the chunk-entry states, and the
// autograd node that calls the backward kernel. layers/mamba1.cpp builds u, dt, A, B, C around it;
// layers/ssm_scan.h keeps the composed forms the tests compare it with.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

namespace {

// t in dtype st on u's device, checked and converted (a differentiable cast when it changes dtype).
Tensor stat_input(const Tensor& t, const char* what, const Tensor& u, DType st) {
  check_floating("selective_scan", t, what);
  COIL_CHECK(t.device() == u.device(), "selective_scan: device mismatch between ", what, " ", t.describe(),
             " and u ", u.describe());
  return t.to(st);
}

}  // namespace

Tensor selective_scan(const Tensor& u_in, const Tensor& dt_in, const Tensor& A_in, const Tensor& Bm_in,
                      const Tensor& Cm_in, const Tensor& h0_in, Tensor* h_out) {
  check_floating("selective_scan", u_in, "u");
  check_floating("selective_scan", Bm_in, "B");
  check_floating("selective_scan", Cm_in, "C");
  // Under autocast the streamed inputs (u, B, C) and y are bf16; the decay exponent dt A, the state
  // and the accumulation stay fp32, as for the decay of the fused linear attention.
  Tensor u = autocast_lower(u_in), Bm = autocast_lower(Bm_in), Cm = autocast_lower(Cm_in);
  check_same("selective_scan", u, "u", Bm, "B");
  check_same("selective_scan", u, "u", Cm, "C");
  COIL_CHECK(u.dim() == 3 && u.size(1) > 0, "selective_scan: u must be (B, T, D) with T > 0, got ",
             shape_str(u.shape()));
  const int64_t B = u.size(0), T = u.size(1), D = u.size(2);
  const DType st = stat_dtype(u.dtype());
  Tensor dt = stat_input(dt_in, "dt", u, st);
  Tensor A = stat_input(A_in, "A", u, st);
  check_shape("selective_scan", dt, "dt", u.shape(), u, "u");
  COIL_CHECK(A.dim() == 2 && A.size(0) == D, "selective_scan: A must be (D, N) with D = ", D, " of u ",
             shape_str(u.shape()), ", got ", shape_str(A.shape()));
  const int64_t N = A.size(1);
  check_shape("selective_scan", Bm, "B", Shape{B, T, N}, A, "u and A");
  check_shape("selective_scan", Cm, "C", Shape{B, T, N}, A, "u and A");
  Tensor h0;
  if (h0_in.defined()) {
    h0 = stat_input(h0_in, "h0", u, st);
    check_shape("selective_scan", h0, "h0", Shape{B, D, N}, u, "u and A");
  }
  Tensor uc = u.detach().contiguous(), dtc = dt.detach().contiguous(), Ac = A.detach().contiguous();
  Tensor Bc = Bm.detach().contiguous(), Cc = Cm.detach().contiguous();
  Tensor h0c = h0.defined() ? h0.detach().contiguous() : Tensor();
  const int64_t nc = (T + kSelectiveScanChunk - 1) / kSelectiveScanChunk;
  Tensor y = Tensor::empty(u.shape(), u.dtype(), u.device());
  Tensor hT = Tensor::empty({B, D, N}, st, u.device());
  Tensor hc = Tensor::empty({B, nc, D, N}, st, u.device());
  run(make_args(Op::SelectiveScan, {uc, dtc, Ac, Bc, Cc, h0c}, {y, hT, hc}), u.dtype());

  std::vector<Tensor> inputs = {u, dt, A, Bm, Cm};
  if (h0.defined()) inputs.push_back(h0);
  const bool has_h0 = h0.defined();
  record("SelectiveScanBackward", inputs, {y, hT},
         [has_h0](const Grads& g, const Grads& sv) {
           const Tensor &us = sv[0], &dts = sv[1], &As = sv[2], &hcs = sv[5];
           // Either output may have received no gradient (undefined = zero); the kernel takes an
           // undefined dhT as zero.
           Tensor dy = g[0].defined() ? g[0].contiguous() : Tensor::zeros(us.shape(), us.dtype(), us.device());
           Tensor dhT = g[1].defined() ? g[1].to(dts.dtype()).contiguous() : Tensor();
           const int64_t Bn = us.size(0), Dn = us.size(2), Nn = As.size(1);
           Tensor du = Tensor::empty(us.shape(), us.dtype(), us.device());
           Tensor ddt = Tensor::empty(dts.shape(), dts.dtype(), us.device());
           Tensor dA = Tensor::empty(As.shape(), As.dtype(), us.device());
           Tensor dB = Tensor::empty(sv[3].shape(), us.dtype(), us.device());
           Tensor dC = Tensor::empty(sv[4].shape(), us.dtype(), us.device());
           Tensor dh0 = Tensor::empty({Bn, Dn, Nn}, dts.dtype(), us.device());
           run(make_args(Op::SelectiveScanBackward, {dy, dhT, us, dts, As, sv[3], sv[4], hcs},
                         {du, ddt, dA, dB, dC, dh0}),
               us.dtype());
           Grads out = {du, ddt, dA, dB, dC};
           if (has_h0) out.push_back(dh0);
           return out;
         },
         {uc, dtc, Ac, Bc, Cc, hc});
  // Last: h_out may alias h0_in.
  if (h_out) *h_out = hT;
  return y;
}

}  // namespace coil
