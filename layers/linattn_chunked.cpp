// linattn_chunked: spec section 7. Per chunk c of length L <= C (the last may be shorter), with the
// local cumsum b_t of a inside the chunk and B_c = b_last:
//   num_i = sum_{j in c, j<=i} w_ij e^{b_i-b_j} v_j + e^{b_i} q^_i.S_{c-1}
//   den_i = sum_{j in c, j<=i} w_ij e^{b_i-b_j}     + e^{b_i} q^_i.z_{c-1}
//   S_c = e^{B_c} S_{c-1} + sum_j e^{B_c-b_j} k^_j v_j^T,  z_c likewise with k^_j
// w_ij = u_ij or u_ij^2 with u = q.(s k); q^ = phi(q), k^ = phi(s k). Every exponent is <= 0.
// linattn_chunked runs the fused op core/ops.h linattn_chunked_op (one CPU / CUDA kernel pair, not a
// host loop of small ops); linattn_chunked_composed keeps the same algorithm composed of autograd ops,
// the independent reference the tests compare the op with.
#include <algorithm>

#include "core/ops.h"
#include "layers/linattn.h"

namespace coil {

using namespace linattn_detail;

Tensor linattn_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                       const LinAttnOptions& opt, int64_t chunk, const LinAttnState* in,
                       LinAttnState* out) {
  check_inputs("linattn_chunked", q, k, v, a);
  COIL_CHECK(chunk > 0, "linattn_chunked: chunk size must be positive, got ", chunk);
  if (in) check_state("linattn_chunked", *in, q, v, opt);
  // An empty sequence passes the incoming state through (the composed form handles it).
  if (q.size(1) == 0) return linattn_chunked_composed(q, k, v, a, opt, chunk, in, out);
  const bool has_in = in && in->S.defined();
  Tensor S, z;
  Tensor y = linattn_chunked_op(q, k, v, a, has_in ? in->S : Tensor(), has_in && opt.sm_norm ? in->z : Tensor(),
                                opt.power == LinPower::Two ? 2 : 1, opt.sm_norm, opt.scale, chunk, &S, &z);
  if (out) {
    out->S = S;
    out->z = opt.sm_norm ? z : Tensor();
  }
  return y;
}

namespace linattn_detail {

Tensor linattn_chunked_composed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                                const LinAttnOptions& opt, int64_t chunk, const LinAttnState* in,
                                LinAttnState* out) {
  check_inputs("linattn_chunked", q, k, v, a);
  COIL_CHECK(chunk > 0, "linattn_chunked: chunk size must be positive, got ", chunk);
  if (in) check_state("linattn_chunked", *in, q, v, opt);
  const int64_t T = q.size(1);
  const bool decay = a.defined(), sm = opt.sm_norm;
  Tensor qh = q.permute({0, 2, 1, 3}).contiguous();                     // (B, H, T, D)
  Tensor kh = scale(k, opt.scale).permute({0, 2, 1, 3}).contiguous();   // (B, H, T, D), s k
  Tensor vh = v.permute({0, 2, 1, 3}).contiguous();                     // (B, H, T, Dv)
  Tensor pq = linattn_features(qh, opt.power);                          // (B, H, T, F) q^
  Tensor pk = linattn_features(kh, opt.power);                          // (B, H, T, F) k^
  Tensor ah = decay ? a.permute({0, 2, 1}).contiguous() : Tensor();     // (B, H, T)

  Tensor S = in ? in->S : Tensor();  // (B, H, F, Dv) or undefined (zero)
  Tensor z = in ? in->z : Tensor();  // (B, H, F)
  std::vector<Tensor> ys;
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    const int64_t L = std::min(chunk, T - c0);
    const bool last = c0 + L >= T;
    Tensor qc = qh.narrow(2, c0, L), kc = kh.narrow(2, c0, L), vc = vh.narrow(2, c0, L);
    Tensor pqc = pq.narrow(2, c0, L), pkc = pk.narrow(2, c0, L);  // (B, H, L, F)
    Tensor w = matmul(qc, kc.transpose(-1, -2));                    // (B, H, L, L) u_ij
    if (opt.power == LinPower::Two) w = square(w);
    Tensor b, eb;  // local cumsum (B, H, L) and e^{b_i} (B, H, L, 1)
    if (decay) {
      b = cumsum(ah.narrow(2, c0, L), -1);
      w = w * exp(b.unsqueeze(3) - b.unsqueeze(2) + causal_additive_mask(L, q));
      eb = exp(b).unsqueeze(3);
    } else {
      w = w * causal_unit_mask(L, q);
    }
    Tensor num = matmul(w, vc);                                     // (B, H, L, Dv)
    Tensor den = sm ? sum(w, -1, true) : Tensor();                  // (B, H, L, 1)
    if (S.defined()) {
      Tensor qS = matmul(pqc, S);                                   // (B, H, L, Dv)
      num = num + (decay ? qS * eb : qS);
      if (sm) {
        Tensor qz = matmul(pqc, z.unsqueeze(3));                    // (B, H, L, 1)
        den = den + (decay ? qz * eb : qz);
      }
    }
    ys.push_back(sm ? num / clamp_denominator(den) : num);
    if (last && !out) break;
    // State update: keys weighted by their decay to the chunk end, e^{B_c - b_j} (<= 1).
    Tensor kw = pkc;                                                // (B, H, L, F)
    Tensor eB;                                                      // e^{B_c} (B, H, 1)
    if (decay) {
      Tensor Bc = b.narrow(2, L - 1, 1);                            // (B, H, 1)
      kw = pkc * exp(Bc - b).unsqueeze(3);
      eB = exp(Bc);
    }
    Tensor S_new = matmul(kw.transpose(-1, -2), vc);                // (B, H, F, Dv)
    Tensor z_new = sm ? sum(kw, 2) : Tensor();                      // (B, H, F)
    if (S.defined()) {
      S_new = S_new + (decay ? S * eB.unsqueeze(3) : S);
      if (sm) z_new = z_new + (decay ? z * eB : z);
    }
    S = S_new;
    z = z_new;
  }
  if (out) {
    out->S = S;  // T == 0 leaves the incoming state
    out->z = sm ? z : Tensor();
  }
  Tensor y = ys.empty() ? vh : (ys.size() == 1 ? ys[0] : concat(ys, 2));  // (B, H, T, Dv)
  return y.permute({0, 2, 1, 3});                                      // (B, T, H, Dv)
}

}  // namespace linattn_detail

}  // namespace coil
