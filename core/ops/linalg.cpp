// matmul (batched, broadcast batch dims) and linear. The kernel takes (batch, rows, cols) operands and
// a transpose flag per operand, so transposed views (as in every backward) need no copy.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

namespace {

// View t (Bt, R, C) as a kernel operand: contiguous as is, or a transposed contiguous layout passed
// with trans = true as (Bt, C, R). Anything else is copied.
Tensor as_operand(const Tensor& t, bool* trans) {
  *trans = false;
  if (t.is_contiguous()) return t;
  Tensor tt = t.transpose(-1, -2);
  if (tt.is_contiguous()) {
    *trans = true;
    return tt;
  }
  return t.contiguous();
}

// out (Bt, M, N) = a (Ba, M, K) @ b (Bb, K, N); Ba, Bb in {1, Bt}. No autograd.
Tensor matmul3(const Tensor& a, const Tensor& b, int64_t bt) {
  bool ta, tb;
  Tensor ao = as_operand(a, &ta), bo = as_operand(b, &tb);
  Tensor out = Tensor::empty({bt, a.size(1), b.size(2)}, a.dtype(), a.device());
  KernelArgs k = make_args(Op::Matmul, {ao, bo}, {out});
  k.attrs.trans_a = ta;
  k.attrs.trans_b = tb;
  run(k, a.dtype());
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  check_floating("matmul", a_in, "lhs");
  check_floating("matmul", b_in, "rhs");
  Tensor a = autocast_lower(a_in), b = autocast_lower(b_in);
  check_same("matmul", a, "lhs", b, "rhs");
  COIL_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands need at least 2 dims, got ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  COIL_CHECK(b.size(-2) == K, "matmul: inner dimensions differ: ", shape_str(a.shape()), " @ ",
             shape_str(b.shape()));
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(ba, bb);
  } catch (const Error&) {
    COIL_FAIL("matmul: batch dims of ", shape_str(a.shape()), " and ", shape_str(b.shape()),
              " cannot be broadcast");
  }
  int64_t bt = shape_numel(batch);
  Tensor y;
  {
    NoGradGuard ng;
    Tensor ad = a.detach(), bd = b.detach();
    if (shape_numel(bb) == 1 && bt > 0) {
      // b is one matrix: fold a's batch into its rows (one big GEMM).
      // A 2-D a keeps its strides (unsqueeze is a view), so a transposed a (every weight-gradient
      // GEMM, g^T x) reaches the kernel as trans_a instead of being copied.
      Tensor a2 = ad.dim() == 2 ? ad.unsqueeze(0) : ad.reshape({1, bt * M, K});
      y = matmul3(a2, bd.reshape({1, K, N}), 1);
    } else {
      Shape fa = batch, fb = batch;
      fa.insert(fa.end(), {M, K});
      fb.insert(fb.end(), {K, N});
      Tensor a3 = shape_numel(ba) == 1 ? ad.reshape({1, M, K}) : ad.expand(fa).reshape({bt, M, K});
      Tensor b3 = shape_numel(bb) == 1 ? bd.reshape({1, K, N}) : bd.expand(fb).reshape({bt, K, N});
      y = matmul3(a3, b3, bt);
    }
    Shape out_shape = batch;
    out_shape.insert(out_shape.end(), {M, N});
    y = y.view(out_shape);
  }
  bool ga = a.requires_grad(), gb = b.requires_grad();
  record("MatmulBackward", {a, b}, {y},
         [ga, gb](const Grads& g, const Grads& s) {
           const Tensor &A = s[0], &B = s[1], &G = g[0];
           Tensor da, db;
           if (ga) da = sum_to(matmul(G, B.transpose(-1, -2)), A.shape());
           if (gb) {
             if (B.dim() == 2) {  // sum over every row of the folded batch in one GEMM
               int64_t K = A.size(-1), N = G.size(-1);
               db = matmul(A.reshape({-1, K}).t(), G.reshape({-1, N}));
             } else {
               db = sum_to(matmul(A.transpose(-1, -2), G), B.shape());
             }
           }
           return Grads{da, db};
         },
         {a, b});
  return y;
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  check_floating("linear", x_in, "input");
  check_floating("linear", w_in, "weight");
  Tensor x = autocast_lower(x_in), w = autocast_lower(w_in), b = autocast_lower(b_in);
  check_same("linear", x, "input", w, "weight");
  COIL_CHECK(w.dim() == 2, "linear: weight must be (N, K), got ", shape_str(w.shape()));
  COIL_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", shape_str(x.shape()),
             " does not match weight ", shape_str(w.shape()), " (last dim of the input must equal ",
             w.size(1), ")");
  if (b.defined()) {
    check_same("linear", x, "input", b, "bias");
    COIL_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear: bias ", shape_str(b.shape()),
               " does not match weight ", shape_str(w.shape()));
  }
  int64_t K = w.size(1), N = w.size(0);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(N);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor x2 = x.detach().reshape({-1, K});
  {
    std::vector<Tensor> in{x2, w.detach().contiguous()};
    if (b.defined()) in.push_back(b.detach().contiguous());
    run(make_args(Op::Linear, in, {y.view({-1, N})}), x.dtype());
  }
  bool gx = x.requires_grad(), gw = w.requires_grad();
  Shape x_shape = x.shape();
  record("LinearBackward", {x, w, b}, {y},
         [gx, gw, x_shape, K, N](const Grads& g, const Grads& s) {
           Tensor g2 = g[0].reshape({-1, N});
           Tensor dx, dw, db;
           if (gx) dx = matmul(g2, s[1]).view(x_shape);         // (M, N) @ (N, K)
           if (gw) dw = matmul(g2.t(), s[0]);                   // (N, M) @ (M, K)
           if (s.size() > 2 && s[2].defined()) db = sum(g2, 0); // (N)
           return Grads{dx, dw, db};
         },
         {x2, w, b});
  return y;
}

}  // namespace coil
