// prefix_attention: scores, additive causal mask, softmax, weighted sum, all as autograd ops.
#include "layers/prefix_attention.h"

#include "core/ops.h"

namespace coil {

Tensor prefix_attention(const Tensor& q, const Tensor& k, const Tensor& v, double sm_scale,
                        const Tensor& acs_q, const Tensor& acs_k) {
  COIL_CHECK(q.dim() == 4 && k.dim() == 4 && v.shape() == k.shape() && q.size(0) == k.size(0) &&
                 q.size(2) == k.size(2) && q.size(3) == k.size(3) && k.size(1) >= q.size(1),
             "prefix_attention: q ", shape_str(q.shape()), " and k ", shape_str(k.shape()), " / v ",
             shape_str(v.shape()), " do not fit (expected (B, Tq, H, D) and (B, Tk >= Tq, H, D))");
  const int64_t Tq = q.size(1), Tk = k.size(1), P = Tk - Tq;
  Tensor qh = q.permute({0, 2, 1, 3});                                   // (B, H, Tq, D)
  Tensor kh = k.permute({0, 2, 1, 3});                                   // (B, H, Tk, D)
  Tensor vh = v.permute({0, 2, 1, 3});                                   // (B, H, Tk, D)
  Tensor s = scale(matmul(qh, kh.transpose(-1, -2)), sm_scale);            // (B, H, Tq, Tk)
  if (acs_q.defined()) {
    COIL_CHECK(acs_k.defined() && acs_q.shape() == (Shape{q.size(0), Tq, q.size(2)}) &&
                   acs_k.shape() == (Shape{k.size(0), Tk, k.size(2)}),
               "prefix_attention: acs_q ", shape_str(acs_q.shape()), " / acs_k ",
               shape_str(acs_k.shape()), " do not match q ", shape_str(q.shape()), " and k ",
               shape_str(k.shape()));
    s = s + acs_q.permute({0, 2, 1}).unsqueeze(3) - acs_k.permute({0, 2, 1}).unsqueeze(2);
  }
  // Additive mask: a large negative number (not -inf) keeps masked exp() at exactly 0 without NaNs.
  std::vector<double> mask(size_t(Tq * Tk), 0.0);
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = P + i + 1; j < Tk; ++j) mask[size_t(i * Tk + j)] = -1e30;
  s = s + Tensor::from_vector(mask, {Tq, Tk}, q.dtype(), q.device());
  Tensor y = matmul(softmax(s), vh);                                     // (B, H, Tq, D)
  return y.permute({0, 2, 1, 3});                                        // (B, Tq, H, D)
}

}  // namespace coil
