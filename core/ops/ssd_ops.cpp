// Front-end of the fused Mamba-2 SSD (ops SsdChunked / SsdChunkedBackward): checks, the precision of
// each input, allocation of y, the final state and the chunk-entry states, and the autograd node that
// calls the backward kernel. layers/ssm_scan.cpp routes ssd_chunked here and keeps the composed form
// (ssd_chunked_composed) the tests compare it with.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

Tensor ssd_scan(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& a_in, int64_t chunk,
                const Tensor& s0_in, Tensor* s_out) {
  check_floating("ssd_scan", q_in, "q");
  check_floating("ssd_scan", k_in, "k");
  check_floating("ssd_scan", v_in, "v");
  check_floating("ssd_scan", a_in, "a");
  // Under autocast the streamed inputs (q, k, v) and y are bf16; the log decay, its cumsum, the
  // states and every accumulation stay fp32.
  Tensor q = autocast_lower(q_in), k = autocast_lower(k_in), v = autocast_lower(v_in);
  check_same("ssd_scan", v, "v", q, "q");
  check_same("ssd_scan", v, "v", k, "k");
  COIL_CHECK(chunk > 0, "ssd_scan: chunk must be positive, got ", chunk);
  COIL_CHECK(v.dim() == 4 && v.size(2) > 0, "ssd_scan: v must be (B, H, T, P) with T > 0, got ",
             shape_str(v.shape()));
  const int64_t B = v.size(0), H = v.size(1), T = v.size(2), P = v.size(3);
  COIL_CHECK(q.dim() == 4 && q.size(0) == B && (q.size(1) == 1 || q.size(1) == H) && q.size(2) == T,
             "ssd_scan: q must be (B, G, T, N) with G in {1, H} for v ", shape_str(v.shape()), ", got ",
             shape_str(q.shape()));
  const int64_t N = q.size(3);
  check_shape("ssd_scan", k, "k", q.shape(), q, "q");
  const DType st = stat_dtype(v.dtype());
  COIL_CHECK(a_in.device() == v.device(), "ssd_scan: device mismatch between a ", a_in.describe(), " and v ",
             v.describe());
  Tensor a = a_in.to(st);
  check_shape("ssd_scan", a, "a", Shape{B, H, T}, v, "v");
  Tensor s0;
  if (s0_in.defined()) {
    check_floating("ssd_scan", s0_in, "s0");
    COIL_CHECK(s0_in.device() == v.device(), "ssd_scan: device mismatch between s0 ", s0_in.describe(),
               " and v ", v.describe());
    s0 = s0_in.to(st);
    check_shape("ssd_scan", s0, "s0", Shape{B, H, P, N}, q, "q and v");
  }
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor ac = a.detach().contiguous(), s0c = s0.defined() ? s0.detach().contiguous() : Tensor();
  const int64_t nc = (T + chunk - 1) / chunk;
  Tensor y = Tensor::empty(v.shape(), v.dtype(), v.device());
  Tensor sT = Tensor::empty({B, H, P, N}, st, v.device());
  Tensor sc = Tensor::empty({B, H, nc, P, N}, st, v.device());
  KernelArgs fa = make_args(Op::SsdChunked, {qc, kc, vc, ac, s0c}, {y, sT, sc});
  fa.attrs.dim = chunk;
  run(fa, v.dtype());

  std::vector<Tensor> inputs = {q, k, v, a};
  if (s0.defined()) inputs.push_back(s0);
  const bool has_s0 = s0.defined();
  record("SsdChunkedBackward", inputs, {y, sT},
         [has_s0, chunk](const Grads& g, const Grads& sv) {
           const Tensor &qs = sv[0], &ks = sv[1], &vs = sv[2], &as = sv[3], &scs = sv[4];
           // Either output may have received no gradient (undefined = zero); the kernel takes an
           // undefined dsT as zero.
           Tensor dy = g[0].defined() ? g[0].to(vs.dtype()).contiguous()
                                      : Tensor::zeros(vs.shape(), vs.dtype(), vs.device());
           Tensor dsT = g[1].defined() ? g[1].to(as.dtype()).contiguous() : Tensor();
           const int64_t Bn = vs.size(0), Hn = vs.size(1), Pn = vs.size(3), Nn = qs.size(3);
           Tensor dq = Tensor::empty(qs.shape(), qs.dtype(), qs.device());
           Tensor dk = Tensor::empty(ks.shape(), ks.dtype(), ks.device());
           Tensor dv = Tensor::empty(vs.shape(), vs.dtype(), vs.device());
           Tensor da = Tensor::empty(as.shape(), as.dtype(), as.device());
           Tensor ds0 = Tensor::empty({Bn, Hn, Pn, Nn}, as.dtype(), as.device());
           KernelArgs ba = make_args(Op::SsdChunkedBackward, {dy, dsT, qs, ks, vs, as, scs}, {dq, dk, dv, da, ds0});
           ba.attrs.dim = chunk;
           run(ba, vs.dtype());
           Grads out = {dq, dk, dv, da};
           if (has_s0) out.push_back(ds0);
           return out;
         },
         {qc, kc, vc, ac, sc});
  // Last: s_out may alias s0_in.
  if (s_out) *s_out = sT;
  return y;
}

}  // namespace coil
