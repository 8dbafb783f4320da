// Model ops with fused forward and backward kernels: embedding, RMSNorm (alone or with the residual add
// before it), SwiGLU, softmax, RoPE, softmax attention, cross-entropy, causal depthwise conv1d. Each
// front-end flattens leading dims, checks shapes (messages name both tensors), and records a node that
// calls the backward kernel.
#include <cmath>

#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

Tensor embedding(const Tensor& table_in, const Tensor& ids) {
  check_floating("embedding", table_in, "table");
  // Under autocast the residual stream starts in bf16 (the table's cast is cached per guard).
  Tensor table = autocast_lower(table_in);
  check_defined("embedding", ids, "ids");
  COIL_CHECK(table.dim() == 2, "embedding: table must be (V, C), got ", shape_str(table.shape()));
  COIL_CHECK(ids.dtype() == DType::I32, "embedding: ids must be i32, got ", ids.describe());
  COIL_CHECK(ids.device() == table.device(), "embedding: ids ", ids.describe(), " and table ",
             table.describe(), " are on different devices");
  int64_t C = table.size(1);
  Tensor ids1 = ids.reshape({ids.numel()});
  Tensor out = Tensor::empty({ids.numel(), C}, table.dtype(), table.device());
  run(make_args(Op::Embedding, {table.detach().contiguous(), ids1}, {out}), table.dtype());
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Shape t_shape = table.shape();
  record("EmbeddingBackward", {table}, {out},
         [t_shape, C](const Grads& g, const Grads& s) {
           Tensor dy = g[0].contiguous();
           Tensor dt = Tensor::empty(t_shape, dy.dtype(), dy.device());
           run(make_args(Op::EmbeddingBackward, {dy, s[0]}, {dt}), dy.dtype());
           return Grads{dt};
         },
         {ids1});
  return out.view(out_shape);
}

Tensor rms_norm(const Tensor& x_in, const Tensor& w_in, double eps) {
  check_floating("rms_norm", x_in, "input");
  Tensor x = x_in, w = autocast_like(w_in, x_in);  // bf16 in, bf16 out (fp32 statistics)
  autocast_promote({&x, &w});
  check_same("rms_norm", x, "input", w, "weight");
  COIL_CHECK(x.dim() >= 1 && w.dim() == 1 && w.size(0) == x.size(-1), "rms_norm: weight ",
             shape_str(w.shape()), " does not match input ", shape_str(x.shape()),
             " (expected (", x.dim() ? x.size(-1) : 0, "))");
  int64_t C = x.size(-1);
  Tensor x2 = x.detach().reshape({-1, C}).contiguous();
  int64_t M = x2.size(0);
  Tensor y = Tensor::empty({M, C}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({M}, stat_dtype(x.dtype()), x.device());
  KernelArgs a = make_args(Op::RMSNorm, {x2, w.detach().contiguous()}, {y, rstd});
  a.attrs.eps = eps;
  run(a, x.dtype());
  Shape x_shape = x.shape();
  Tensor out = y.view(x_shape);
  record("RMSNormBackward", {x, w}, {out},
         [x_shape, M, C](const Grads& g, const Grads& s) {
           Tensor dy = g[0].reshape({M, C}).contiguous();
           Tensor dx = Tensor::empty({M, C}, dy.dtype(), dy.device());
           Tensor dw = Tensor::empty({C}, dy.dtype(), dy.device());
           run(make_args(Op::RMSNormBackward, {dy, s[0], s[1], s[2]}, {dx, dw}), dy.dtype());
           return Grads{dx.view(x_shape), dw};
         },
         {x2, w.contiguous(), rstd});
  return out;
}

std::pair<Tensor, Tensor> add_rms_norm(const Tensor& x_in, const Tensor& res_in, const Tensor& w_in, double eps) {
  check_floating("add_rms_norm", x_in, "input");
  Tensor x = x_in, res = res_in, w = autocast_like(w_in, x_in);
  autocast_promote({&x, &res, &w});
  check_same("add_rms_norm", x, "input", res, "residual");
  check_same("add_rms_norm", x, "input", w, "weight");
  COIL_CHECK(x.shape() == res.shape(), "add_rms_norm: residual ", shape_str(res.shape()),
             " does not match input ", shape_str(x.shape()));
  COIL_CHECK(x.dim() >= 1 && w.dim() == 1 && w.size(0) == x.size(-1), "add_rms_norm: weight ",
             shape_str(w.shape()), " does not match input ", shape_str(x.shape()),
             " (expected (", x.dim() ? x.size(-1) : 0, "))");
  int64_t C = x.size(-1);
  Tensor x2 = x.detach().reshape({-1, C}).contiguous();
  Tensor r2 = res.detach().reshape({-1, C}).contiguous();
  int64_t M = x2.size(0);
  Tensor h = Tensor::empty({M, C}, x.dtype(), x.device());
  Tensor y = Tensor::empty({M, C}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({M}, stat_dtype(x.dtype()), x.device());
  KernelArgs a = make_args(Op::AddRMSNorm, {x2, r2, w.detach().contiguous()}, {h, y, rstd});
  a.attrs.eps = eps;
  run(a, x.dtype());
  Shape x_shape = x.shape();
  Tensor h_out = h.view(x_shape), y_out = y.view(x_shape);
  record("AddRMSNormBackward", {x, res, w}, {h_out, y_out},
         [x_shape, M, C](const Grads& g, const Grads& s) {
           Tensor dh = g[0].reshape({M, C}).contiguous();
           Tensor dy = g[1].reshape({M, C}).contiguous();
           Tensor dx = Tensor::empty({M, C}, dy.dtype(), dy.device());
           Tensor dw = Tensor::empty({C}, dy.dtype(), dy.device());
           run(make_args(Op::AddRMSNormBackward, {dy, dh, s[0], s[1], s[2]}, {dx, dw}), dy.dtype());
           Tensor d = dx.view(x_shape);
           return Grads{d, d, dw};
         },
         {h, w.contiguous(), rstd});
  return {h_out, y_out};
}

Tensor swiglu(const Tensor& gate_in, const Tensor& up_in) {
  check_floating("swiglu", gate_in, "gate");
  Tensor gate = gate_in, up = up_in;
  autocast_promote({&gate, &up});
  check_same("swiglu", gate, "gate", up, "up");
  COIL_CHECK(gate.shape() == up.shape(), "swiglu: gate ", shape_str(gate.shape()), " and up ",
             shape_str(up.shape()), " differ in shape");
  Tensor g = gate.detach().contiguous(), u = up.detach().contiguous();
  Tensor y = Tensor::empty(g.shape(), g.dtype(), g.device());
  run(make_args(Op::SwiGLU, {g, u}, {y}), g.dtype());
  record("SwiGLUBackward", {gate, up}, {y},
         [](const Grads& gr, const Grads& s) {
           Tensor dy = gr[0].contiguous();
           Tensor dg = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
           Tensor du = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
           run(make_args(Op::SwiGLUBackward, {dy, s[0], s[1]}, {dg, du}), dy.dtype());
           return Grads{dg, du};
         },
         {g, u});
  return y;
}

Tensor softmax(const Tensor& x_in) {
  check_floating("softmax", x_in, "input");
  Tensor x = autocast_f32(x_in);
  COIL_CHECK(x.dim() >= 1, "softmax: needs at least 1 dim, got ", shape_str(x.shape()));
  int64_t n = x.size(-1);
  Tensor x2 = x.detach().reshape({-1, n}).contiguous();
  Tensor y = Tensor::empty(x2.shape(), x.dtype(), x.device());
  run(make_args(Op::Softmax, {x2}, {y}), x.dtype());
  Tensor out = y.view(x.shape());
  Shape x_shape = x.shape();
  record("SoftmaxBackward", {x}, {out},
         [x_shape, n](const Grads& g, const Grads& s) {
           Tensor dy = g[0].reshape({-1, n}).contiguous();
           Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
           run(make_args(Op::SoftmaxBackward, {dy, s[0]}, {dx}), dy.dtype());
           return Grads{dx.view(x_shape)};
         },
         {x2});  // the input, not y: the backward recomputes y in f32 (a bf16 y loses dx's cancellation)
  return out;
}

namespace {
Tensor rope_raw(const Tensor& x, int64_t pos_offset, double theta, bool bf16_positions, bool reverse) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  KernelArgs a = make_args(Op::Rope, {xc}, {y});
  a.attrs.pos_offset = pos_offset;
  a.attrs.theta = theta;
  a.attrs.reverse = reverse;
  a.attrs.bf16_positions = bf16_positions;
  run(a, xc.dtype());
  return y;
}
}  // namespace

Tensor rope(const Tensor& x, int64_t pos_offset, double theta, bool bf16_positions) {
  check_floating("rope", x, "input");
  COIL_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: input must be (B, T, H, D) with D even, got ",
             shape_str(x.shape()));
  Tensor y = rope_raw(x.detach(), pos_offset, theta, bf16_positions, false);
  record("RopeBackward", {x}, {y}, [pos_offset, theta, bf16_positions](const Grads& g, const Grads&) {
    return Grads{rope_raw(g[0], pos_offset, theta, bf16_positions, true)};
  });
  return y;
}

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, std::optional<double> scale,
                 bool causal, Tensor* lse_out) {
  check_floating("attention", q_in, "q");
  Tensor q = autocast_lower(q_in), k = autocast_lower(k_in), v = autocast_lower(v_in);
  check_same("attention", q, "q", k, "k");
  check_same("attention", q, "q", v, "v");
  COIL_CHECK(q.dim() == 4, "attention: q must be (B, Tq, H, D), got ", shape_str(q.shape()));
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  COIL_CHECK(k.dim() == 4 && k.size(0) == B && k.size(2) == H && k.size(3) == D, "attention: k has shape ",
             shape_str(k.shape()), " but (", B, ", Tk, ", H, ", ", D, ") was expected from q ",
             shape_str(q.shape()));
  check_shape("attention", v, "v", k.shape(), k, "k");
  const int64_t Tk = k.size(1);
  COIL_CHECK(causal ? Tk >= Tq : Tk >= 1, "attention: ", causal ? "causal" : "non-causal", " attention of q ",
             shape_str(q.shape()), " needs ", causal ? "at least as many keys as queries" : "a key",
             ", got k ", shape_str(k.shape()));
  const double s = scale.value_or(1.0 / std::sqrt(double(D)));
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor o = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({B, H, Tq}, stat_dtype(q.dtype()), q.device());  // (B, H, Tq)
  KernelArgs a = make_args(Op::Attention, {qc, kc, vc}, {o, lse});
  a.attrs.scale = s;
  a.attrs.causal = causal;
  run(a, q.dtype());
  std::vector<Tensor> outputs = {o};
  if (lse_out) outputs.push_back(lse);
  record("AttentionBackward", {q, k, v}, outputs,
         [s, causal](const Grads& g, const Grads& sv) {
           const Tensor &qs = sv[0], &ks = sv[1];
           Tensor dO = g[0].defined() ? g[0].contiguous() : Tensor::zeros(qs.shape(), qs.dtype(), qs.device());
           if (dO.dtype() != qs.dtype()) dO = dO.to(qs.dtype());
           Tensor dq = Tensor::empty(qs.shape(), qs.dtype(), qs.device());
           Tensor dk = Tensor::empty(ks.shape(), qs.dtype(), qs.device());
           Tensor dv = Tensor::empty(ks.shape(), qs.dtype(), qs.device());
           std::vector<Tensor> in = {dO, sv[0], sv[1], sv[2], sv[3], sv[4]};
           // lse's gradient, when it has one, goes in as the kernel's dlse (its dtype is lse's).
           if (g.size() > 1 && g[1].defined()) {
             Tensor dlse = g[1].dtype() == sv[4].dtype() ? g[1] : g[1].to(sv[4].dtype());
             in.push_back(dlse.contiguous());
           }
           KernelArgs b = make_args(Op::AttentionBackward, std::move(in), {dq, dk, dv});
           b.attrs.scale = s;
           b.attrs.causal = causal;
           run(b, qs.dtype());
           return Grads{dq, dk, dv};
         },
         {qc, kc, vc, o, lse});
  if (lse_out) *lse_out = lse.permute({0, 2, 1}).contiguous();  // (B, Tq, H), through autograd
  return o;
}

Tensor causal_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                        std::optional<double> scale) {
  check_floating("causal_attention", q_in, "q");
  check_defined("causal_attention", k_in, "k");
  check_defined("causal_attention", v_in, "v");
  check_shape("causal_attention", k_in, "k", q_in.shape(), q_in, "q");
  check_shape("causal_attention", v_in, "v", q_in.shape(), q_in, "q");
  return attention(q_in, k_in, v_in, scale, true);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_floating("cross_entropy", logits, "logits");
  check_defined("cross_entropy", targets, "targets");
  COIL_CHECK(targets.dtype() == DType::I32, "cross_entropy: targets must be i32, got ",
             targets.describe());
  COIL_CHECK(logits.dim() >= 1, "cross_entropy: logits need a vocab dim, got ", shape_str(logits.shape()));
  Shape expect(logits.shape().begin(), logits.shape().end() - 1);
  COIL_CHECK(targets.shape() == expect || (targets.dim() == 1 && targets.numel() == shape_numel(expect)),
             "cross_entropy: targets ", shape_str(targets.shape()), " do not match logits ",
             shape_str(logits.shape()), " (expected ", shape_str(expect), ")");
  COIL_CHECK(targets.device() == logits.device(), "cross_entropy: targets ", targets.describe(),
             " and logits ", logits.describe(), " are on different devices");
  int64_t V = logits.size(-1);
  Tensor l2 = logits.detach().reshape({-1, V}).contiguous();
  Tensor t1 = targets.reshape({targets.numel()}).contiguous();
  DType st = stat_dtype(logits.dtype());
  Tensor loss = Tensor::empty({}, st, logits.device());
  Tensor lse = Tensor::empty({l2.size(0)}, st, logits.device());
  KernelArgs a = make_args(Op::CrossEntropy, {l2, t1}, {loss, lse});
  a.attrs.ignore_index = ignore_index;
  run(a, logits.dtype());
  Shape l_shape = logits.shape();
  record("CrossEntropyBackward", {logits}, {loss},
         [l_shape, ignore_index](const Grads& g, const Grads& s) {
           Tensor dl = Tensor::empty(s[0].shape(), s[0].dtype(), s[0].device());
           KernelArgs b = make_args(Op::CrossEntropyBackward, {g[0].contiguous(), s[0], s[1], s[2]}, {dl});
           b.attrs.ignore_index = ignore_index;
           run(b, s[0].dtype());
           return Grads{dl.view(l_shape)};
         },
         {l2, t1, lse});
  return loss;
}

Tensor conv1d_causal(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  check_floating("conv1d_causal", x_in, "input");
  Tensor x = x_in, w = autocast_like(w_in, x_in), b = autocast_like(b_in, x_in);
  autocast_promote({&x, &w, &b});
  check_same("conv1d_causal", x, "input", w, "weight");
  check_same("conv1d_causal", x, "input", b, "bias");
  COIL_CHECK(x.dim() == 3, "conv1d_causal: input must be (B, T, C), got ", shape_str(x.shape()));
  int64_t C = x.size(2);
  COIL_CHECK(w.dim() == 2 && w.size(0) == C && w.size(1) >= 1, "conv1d_causal: weight ",
             shape_str(w.shape()), " does not match input ", shape_str(x.shape()), " (expected (", C,
             ", W))");
  COIL_CHECK(b.dim() == 1 && b.size(0) == C, "conv1d_causal: bias ", shape_str(b.shape()),
             " does not match input ", shape_str(x.shape()), " (expected (", C, "))");
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous(), bc = b.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  run(make_args(Op::Conv1d, {xc, wc, bc}, {y}), x.dtype());
  record("Conv1dBackward", {x, w, b}, {y},
         [](const Grads& g, const Grads& s) {
           Tensor dy = g[0].contiguous();
           Tensor dx = Tensor::empty(s[0].shape(), dy.dtype(), dy.device());
           Tensor dw = Tensor::empty(s[1].shape(), dy.dtype(), dy.device());
           Tensor db = Tensor::empty({s[1].size(0)}, dy.dtype(), dy.device());
           run(make_args(Op::Conv1dBackward, {dy, s[0], s[1]}, {dx, dw, db}), dy.dtype());
           return Grads{dx, dw, db};
         },
         {xc, wc});
  return y;
}

}  // namespace coil
