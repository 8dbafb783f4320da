// SSD and selective-scan forms (see ssm_scan.h for the math): ssd_chunked runs the fused op
// (core/ops/ssd_ops.cpp); the others, and ssd_chunked_composed, are compositions of autograd ops.
#include "layers/ssm_scan.h"

#include <algorithm>
#include <vector>

#include "core/ops.h"

namespace coil {

namespace {

// Large enough that exp(x + kMasked) is exactly 0 for any log-decay difference x a model can reach,
// small enough to stay finite in f32 / bf16 (whose max is ~3.4e38).
constexpr double kMasked = -1e30;

void check_ssd(const char* where, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a) {
  const bool ok = q.dim() == 4 && k.shape() == q.shape() && v.dim() == 4 && a.dim() == 3 &&
                  q.size(0) == v.size(0) && (q.size(1) == 1 || q.size(1) == v.size(1)) &&
                  q.size(2) == v.size(2) && a.shape() == (Shape{v.size(0), v.size(1), v.size(2)});
  COIL_CHECK(ok, where, ": expected q, k (B, G, T, N) with G in {1, H}, v (B, H, T, P), a (B, H, T); got q ",
             shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()), ", a ",
             shape_str(a.shape()));
}

void check_state(const char* where, const Tensor& s, const Shape& want) {
  COIL_CHECK(!s.defined() || s.shape() == want, where, ": state ", shape_str(s.shape()),
             " does not match the expected ", shape_str(want));
}

// Zero rows appended along dim so that its size becomes `to` (no-op when already there).
Tensor pad_to(const Tensor& x, int64_t dim, int64_t to) {
  const int64_t n = to - x.size(dim);
  if (n == 0) return x;
  Shape s = x.shape();
  s[size_t(dim)] = n;
  return concat({x, Tensor::zeros(s, x.dtype(), x.device())}, dim);
}

}  // namespace

Tensor causal_log_mask(int64_t rows, int64_t cols, int64_t diag, DType dtype, Device device) {
  std::vector<double> m(size_t(rows * cols), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (j > i + diag) m[size_t(i * cols + j)] = kMasked;
  return Tensor::from_vector(m, {rows, cols}, dtype, device);
}

Tensor causal_conv_with_carry(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& carry_in,
                              Tensor* carry_out) {
  COIL_CHECK(x.dim() == 3 && w.dim() == 2, "causal_conv_with_carry: expected x (B, T, C) and w (C, W), got x ",
             shape_str(x.shape()), ", w ", shape_str(w.shape()));
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), K = w.size(1) - 1;
  check_state("causal_conv_with_carry", carry_in, {B, K, C});
  if (K == 0 || (!carry_in.defined() && !carry_out)) {
    if (carry_out) *carry_out = Tensor();
    return conv1d_causal(x, w, b);
  }
  // Zero rows before the start are exactly the conv's own causal padding, so prepending the carry and
  // dropping its K outputs gives the continuation of the sequence.
  Tensor prev = carry_in.defined() ? carry_in : Tensor::zeros({B, K, C}, x.dtype(), x.device());
  Tensor ext = concat({prev, x}, 1);                                        // (B, K + T, C)
  if (carry_out) *carry_out = ext.narrow(1, T, K);                           // (B, K, C)
  return conv1d_causal(ext, w, b).narrow(1, K, T);                          // (B, T, C)
}

Tensor ssd_quadratic(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a) {
  check_ssd("ssd_quadratic", q, k, v, a);
  const int64_t T = v.size(2);
  Tensor acs = cumsum(a, -1);                                               // (B, H, T)
  Tensor decay = exp(acs.unsqueeze(-1) - acs.unsqueeze(-2) +
                     causal_log_mask(T, T, 0, v.dtype(), v.device()));      // (B, H, T, T)
  Tensor scores = matmul(q, k.transpose(-1, -2));                           // (B, G, T, T)
  return matmul(scores * decay, v);                                         // (B, H, T, P)
}

Tensor ssd_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, int64_t chunk,
                   const Tensor& s0, Tensor* s_out) {
  check_ssd("ssd_chunked", q, k, v, a);
  COIL_CHECK(chunk > 0, "ssd_chunked: chunk must be positive, got ", chunk);
  check_state("ssd_chunked", s0, {v.size(0), v.size(1), v.size(3), q.size(3)});
  return ssd_scan(q, k, v, a, chunk, s0, s_out);
}

Tensor ssd_chunked_composed(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& a_in,
                            int64_t chunk, const Tensor& s0, Tensor* s_out) {
  check_ssd("ssd_chunked_composed", q_in, k_in, v_in, a_in);
  COIL_CHECK(chunk > 0, "ssd_chunked_composed: chunk must be positive, got ", chunk);
  const int64_t B = v_in.size(0), H = v_in.size(1), T = v_in.size(2), P = v_in.size(3);
  const int64_t G = q_in.size(1), N = q_in.size(3);
  check_state("ssd_chunked_composed", s0, {B, H, P, N});
  const int64_t L = std::min(chunk, T), nc = (T + L - 1) / L, Tp = nc * L;
  // Padding tokens have k = v = 0 and a = 0: they leave the state untouched and their outputs are cut.
  Tensor q = pad_to(q_in, 2, Tp).reshape({B, G, nc, L, N});
  Tensor k = pad_to(k_in, 2, Tp).reshape({B, G, nc, L, N});
  Tensor v = pad_to(v_in, 2, Tp).reshape({B, H, nc, L, P});
  Tensor a = pad_to(a_in, 2, Tp).reshape({B, H, nc, L});
  const DType dt = v.dtype();
  const Device dev = v.device();

  Tensor b = cumsum(a, -1);                                                  // (B, H, nc, L) local
  Tensor decay = exp(b.unsqueeze(-1) - b.unsqueeze(-2) + causal_log_mask(L, L, 0, dt, dev));
  Tensor y = matmul(matmul(q, k.transpose(-1, -2)) * decay, v);             // (B, H, nc, L, P)
  if (nc == 1 && !s0.defined() && !s_out) return y.reshape({B, H, Tp, P}).narrow(2, 0, T);

  // Each chunk's contribution to the state at its end, from a zero start.
  Tensor b_last = b.narrow(-1, L - 1, 1);                                    // (B, H, nc, 1)
  Tensor v_w = v * exp(b_last - b).unsqueeze(-1);                            // (B, H, nc, L, P)
  Tensor local = matmul(v_w.transpose(-1, -2), k);                           // (B, H, nc, P, N)
  // State entering chunk r (r = nc: the final state): e^{E_r} s0 + sum_{c<r} e^{E_r - E_{c+1}} local_c
  // with E_r the sum of the totals of chunks before r.
  Tensor e_incl = cumsum(b_last.squeeze(-1), -1);                            // (B, H, nc): E_{c+1}
  Tensor e_excl = concat({Tensor::zeros({B, H, 1}, dt, dev), e_incl}, -1);   // (B, H, nc + 1): E_r
  Tensor pass = exp(e_excl.unsqueeze(-1) - e_incl.unsqueeze(-2) +
                    causal_log_mask(nc + 1, nc, -1, dt, dev));               // (B, H, nc + 1, nc)
  Tensor states = matmul(pass, local.reshape({B, H, nc, P * N}));            // (B, H, nc + 1, P N)
  if (s0.defined()) states = states + exp(e_excl).unsqueeze(-1) * s0.reshape({B, H, 1, P * N});
  if (nc > 1 || s0.defined()) {
    Tensor s_in = states.narrow(2, 0, nc).reshape({B, H, nc, P, N});
    y = y + exp(b).unsqueeze(-1) * matmul(q, s_in.transpose(-1, -2));        // (B, H, nc, L, P)
  }
  // Written last: s_out may alias s0.
  if (s_out) *s_out = states.narrow(2, nc, 1).reshape({B, H, P, N});
  return y.reshape({B, H, Tp, P}).narrow(2, 0, T);
}

Tensor ssd_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a, Tensor& s) {
  const int64_t B = v.size(0), H = v.size(1), P = v.size(2), N = q.size(-1);
  COIL_CHECK(q.dim() == 3 && k.shape() == q.shape() && v.dim() == 3 &&
                 (q.size(1) == 1 || q.size(1) == H) && a.shape() == (Shape{B, H}),
             "ssd_step: expected q, k (B, G, N), v (B, H, P), a (B, H); got q ", shape_str(q.shape()),
             ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()), ", a ", shape_str(a.shape()));
  check_state("ssd_step", s, {B, H, P, N});
  Tensor input = v.unsqueeze(-1) * k.unsqueeze(-2);                          // (B, H, P, N)
  s = s.defined() ? exp(a).unsqueeze(-1).unsqueeze(-1) * s + input : input;
  return matmul(s, q.unsqueeze(-1)).squeeze(-1);                             // (B, H, P)
}

Tensor selective_scan_chunked(const Tensor& u, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                              const Tensor& Cm, int64_t chunk, const Tensor& h0, Tensor* h_out) {
  COIL_CHECK(u.dim() == 3 && dt.shape() == u.shape() && A.dim() == 2 && A.size(0) == u.size(2) &&
                 Bm.shape() == (Shape{u.size(0), u.size(1), A.size(1)}) && Cm.shape() == Bm.shape(),
             "selective_scan_chunked: expected u, dt (B, T, D), A (D, N), B, C (B, T, N); got u ",
             shape_str(u.shape()), ", dt ", shape_str(dt.shape()), ", A ", shape_str(A.shape()),
             ", B ", shape_str(Bm.shape()), ", C ", shape_str(Cm.shape()));
  COIL_CHECK(chunk > 0, "selective_scan_chunked: chunk must be positive, got ", chunk);
  const int64_t T = u.size(1), D = u.size(2), N = A.size(1);
  check_state("selective_scan_chunked", h0, {u.size(0), D, N});
  Tensor h = h0;
  std::vector<Tensor> ys;
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t L = std::min(chunk, T - t0);
    Tensor dtc = dt.narrow(1, t0, L);                                        // (B, L, D)
    Tensor b = cumsum(dtc.unsqueeze(-1) * A, 1);                             // (B, L, D, N)
    Tensor mask = causal_log_mask(L, L, 0, u.dtype(), u.device()).reshape({L, L, 1, 1});
    Tensor decay = exp(b.unsqueeze(2) - b.unsqueeze(1) + mask);              // (B, L_i, L_j, D, N)
    Tensor input = (dtc * u.narrow(1, t0, L)).unsqueeze(-1) *
                   Bm.narrow(1, t0, L).unsqueeze(2);                         // (B, L, D, N)
    Tensor hs = sum(decay * input.unsqueeze(1), 2);                          // (B, L, D, N)
    if (h.defined()) hs = hs + exp(b) * h.unsqueeze(1);
    ys.push_back(sum(hs * Cm.narrow(1, t0, L).unsqueeze(2), -1));            // (B, L, D)
    if (t0 + L < T || h_out) h = hs.narrow(1, L - 1, 1).squeeze(1);           // (B, D, N)
  }
  if (h_out) *h_out = h;  // last: h_out may alias h0
  return ys.size() == 1 ? ys[0] : concat(ys, 1);
}

Tensor selective_scan_step(const Tensor& u, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                           const Tensor& Cm, Tensor& h) {
  COIL_CHECK(u.dim() == 2 && dt.shape() == u.shape() && A.dim() == 2 && A.size(0) == u.size(1) &&
                 Bm.shape() == (Shape{u.size(0), A.size(1)}) && Cm.shape() == Bm.shape(),
             "selective_scan_step: expected u, dt (B, D), A (D, N), B, C (B, N); got u ",
             shape_str(u.shape()), ", dt ", shape_str(dt.shape()), ", A ", shape_str(A.shape()),
             ", B ", shape_str(Bm.shape()), ", C ", shape_str(Cm.shape()));
  check_state("selective_scan_step", h, {u.size(0), u.size(1), A.size(1)});
  Tensor input = (dt * u).unsqueeze(-1) * Bm.unsqueeze(1);                   // (B, D, N)
  h = h.defined() ? exp(dt.unsqueeze(-1) * A) * h + input : input;
  return sum(h * Cm.unsqueeze(1), -1);                                       // (B, D)
}

}  // namespace coil
