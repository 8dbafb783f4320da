// LinearAttentionMixer: parameters, the pipeline of spec section 2 (shared by the quadratic, chunked
// and recurrent forms and by the 2Mamba-E prefix path), state packing and the parameter count.
#include "layers/linear_mixer.h"

#include <cmath>

#include "core/ops.h"
#include "layers/prefix_attention.h"

namespace coil {

LinearAttentionMixer::Conv::Conv(int64_t channels, int64_t width, Generator& gen,
                                 const ParamOptions& opt) {
  const double bound = 1.0 / std::sqrt(double(width));  // spec section 1: U(-1/sqrt(w), 1/sqrt(w))
  weight = register_parameter(
      "weight", Tensor::uniform({channels, width}, gen, -bound, bound, opt.dtype, opt.device));
  bias = register_parameter("bias",
                            Tensor::uniform({channels}, gen, -bound, bound, opt.dtype, opt.device));
}

LinearAttentionMixer::LinearAttentionMixer(int64_t dim_, int64_t n_heads_, int64_t head_dim_,
                                           const LinearMixerOptions& lo, double norm_eps,
                                           Generator& gen, const ParamOptions& opt)
    : dim(dim_), n_heads(n_heads_), head_dim(head_dim_), options(lo) {
  validate_linear_options(lo);
  COIL_CHECK(dim > 0 && n_heads > 0 && head_dim > 0,
             "LinearAttentionMixer: expected positive sizes, got C=", dim, ", H=", n_heads, ", D=",
             head_dim);
  const int64_t H = n_heads, I = n_heads * head_dim;
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * I, false, gen, opt));
  if (lo.conv_width > 0)
    conv = register_module("conv", std::make_shared<Conv>(3 * I, lo.conv_width, gen, opt));
  if (has_dt()) W_dt = register_module("W_dt", std::make_shared<Linear>(dim, H, false, gen, opt));
  if (lo.a_mask == "softplus")
    W_A = register_module("W_A", std::make_shared<Linear>(dim, H, false, gen, opt));
  if (lo.a_mask == "original") {
    std::vector<double> v = Tensor::uniform({H}, gen, 1.0, 16.0, DType::F64).to_vector();
    for (double& x : v) x = std::log(x);  // A_log = log U[1, 16]
    A_log = register_parameter("A_log", Tensor::from_vector(v, {H}, opt.dtype, opt.device));
  }
  if (lo.d_residual) D = register_parameter("D", Tensor::ones({H, head_dim}, opt.dtype, opt.device));
  if (lo.z_gate) W_z = register_module("W_z", std::make_shared<Linear>(dim, I, true, gen, opt));
  if (lo.norm == "output")
    norm = register_module("norm", std::make_shared<RMSNorm>(I, norm_eps, opt));
  o = register_module("o", std::make_shared<Linear>(I, dim, false, gen, opt));
}

LinAttnOptions LinearAttentionMixer::math_options() const {
  LinAttnOptions m;
  m.power = options.power == "1" ? LinPower::One : LinPower::Two;
  m.sm_norm = options.norm == "sm";
  m.scale = 1.0 / std::sqrt(double(head_dim));
  return m;
}

Tensor LinearAttentionMixer::run(const Tensor& x, Form form, const MixerState* in,
                                 MixerState* out) const {
  COIL_CHECK(x.dim() == 3 && x.size(2) == dim, "LinearAttentionMixer: expected x (B, T, ", dim,
             "), got ", x.describe());
  const int64_t B = x.size(0), T = x.size(1), H = n_heads, Dh = head_dim, I = H * Dh;
  const bool stateful = in != nullptr || out != nullptr;
  const bool start = in == nullptr || in->empty();
  // Sequence shard of a gather-style sequence-parallel model (layers/mixer.h); stateful calls are the
  // chain style and decoding, which pass their state explicitly.
  const SequenceShardHooks* sh =
      !stateful && sequence_shard && sequence_shard->size > 1 ? sequence_shard.get() : nullptr;
  MixerState next;

  // 1-2. Projection and the causal conv over all 3I channels. A stateful call prepends the carry
  // (the last w-1 raw rows before this shard; zeros at the start, which is the conv's zero padding).
  Tensor X = qkv->forward(x);  // (B, T, 3I)
  if (conv) {
    const int64_t w = options.conv_width;
    if (sh && w > 1) {
      COIL_CHECK(T >= w - 1, "LinearAttentionMixer: a sequence shard of ", T,
                 " tokens is shorter than the conv halo of ", w - 1);
      Tensor halo = sh->previous_tail(X.narrow(1, T - (w - 1), w - 1).contiguous());  // (B, w-1, 3I)
      X = conv1d_causal(concat({halo, X}, 1), conv->weight, conv->bias).narrow(1, w - 1, T);
    } else if (stateful && w > 1) {
      Tensor carry = start ? Tensor::zeros({B, w - 1, 3 * I}, x.dtype(), x.device()) : in->get("conv");
      COIL_CHECK(carry.shape() == (Shape{B, w - 1, 3 * I}), "LinearAttentionMixer: conv carry ",
                 shape_str(carry.shape()), " does not match (B, w-1, 3I) = ",
                 shape_str(Shape{B, w - 1, 3 * I}));
      Tensor ext = concat({carry, X}, 1);                                  // (B, w-1+T, 3I)
      next.set("conv", ext.narrow(1, T, w - 1));                           // (B, w-1, 3I) raw
      X = conv1d_causal(ext, conv->weight, conv->bias).narrow(1, w - 1, T);  // (B, T, 3I)
    } else {
      X = conv1d_causal(X, conv->weight, conv->bias);                      // (B, T, 3I)
    }
  }
  // 3. Heads. When q, k, v reach the quadratic op unchanged (no activation, dt or D residual), the op
  // reads them straight from X; splitting here would copy each and, in the backward, zero-fill X's
  // shape three times and add the parts. 2Mamba-E takes the op whenever no state is carried.
  const bool qkv_direct = !sh && (options.power == "exp" ? !stateful : form == Form::Quadratic) &&
                          options.qk_activation == "none" && !options.value_dt && !D.defined();
  std::vector<Tensor> parts;
  Tensor q, k, v;
  if (!qkv_direct) {
    parts = split(X, {I, I, I}, 2);
    q = parts[0].reshape({B, T, H, Dh});  // (B, T, H, D)
    k = parts[1].reshape({B, T, H, Dh});  // (B, T, H, D)
    v = parts[2].reshape({B, T, H, Dh});  // (B, T, H, D)
  }
  // 4-5. dt and the log decay, both from x (not from the conv output).
  Tensor dt = W_dt ? softplus(W_dt->forward(x)) : Tensor();  // (B, T, H)
  Tensor a;                                                    // (B, T, H), <= 0
  if (options.a_mask == "softplus") a = neg(softplus(W_A->forward(x)));
  if (options.a_mask == "original") a = neg(exp(A_log)) * dt;
  // 6-8. D residual (before dt), value dt, activation on q and k.
  Tensor dres = D.defined() ? v * D : Tensor();  // (B, T, H, D)
  if (options.value_dt) v = v * dt.unsqueeze(3);
  if (options.qk_activation == "relu") {
    q = relu(q);
    k = relu(k);
  } else if (options.qk_activation == "silu") {
    q = silu(q);
    k = silu(k);
  }

  // 9-10. Mixing.
  Tensor y;  // (B, T, H, D)
  if (options.power == "exp" && sh) {
    // Sequence shard: every shard's K, V and local Acs gathered; the global Acs of shard j is its
    // local cumsum plus the total log decay of the shards before it.
    std::vector<Tensor> parts{k, v};
    if (a.defined()) parts.push_back(cumsum(a, 1));  // (B, T, H) local cumsum
    auto g = sh->all_gather(parts, q, &q);
    std::vector<Tensor> ks, vs, acss;
    Tensor base;  // (B, 1, H): total log decay of the shards before j
    for (int64_t j = 0; j <= sh->rank; ++j) {
      ks.push_back(g[size_t(j)][0]);
      vs.push_back(g[size_t(j)][1]);
      if (!a.defined()) continue;
      const Tensor& c = g[size_t(j)][2];
      acss.push_back(base.defined() ? c + base : c);
      base = acss.back().narrow(1, T - 1, 1);
    }
    auto join = [](const std::vector<Tensor>& xs) { return xs.size() == 1 ? xs[0] : concat(xs, 1); };
    Tensor acs_k = a.defined() ? join(acss) : Tensor();          // (B, pos0 + T, H)
    Tensor acs_q = a.defined() ? acss.back() : Tensor();         // (B, T, H)
    y = prefix_attention(q, join(ks), join(vs), 1.0 / std::sqrt(double(Dh)), acs_q, acs_k);
  } else if (options.power == "exp" && qkv_direct) {
    y = linattn_exp_quadratic_qkv(X, a, H, 1.0 / std::sqrt(double(Dh)));  // q, k, v read in place from X
  } else if (options.power == "exp") {
    // Softmax with additive log decay over every earlier token (the KV "prefix") and this shard; from
    // the sequence start, the fused op.
    Tensor k_all = k, v_all = v, acs_q, acs_k;
    if (a.defined() && (!start || out)) acs_q = cumsum(a, 1);  // (B, T, H), for the prefix and the state
    if (!start) {
      Tensor k_prev = in->get("k"), v_prev = in->get("v");
      COIL_CHECK(k_prev.dim() == 4 && k_prev.size(0) == B && k_prev.size(2) == H &&
                     k_prev.size(3) == Dh && v_prev.shape() == k_prev.shape(),
                 "LinearAttentionMixer: prefix k ", shape_str(k_prev.shape()), " / v ",
                 shape_str(v_prev.shape()), " do not match (B, P, H, D) with B=", B, ", H=", H,
                 ", D=", Dh);
      const int64_t P = k_prev.size(1);
      k_all = concat({k_prev, k}, 1);  // (B, P + T, H, D)
      v_all = concat({v_prev, v}, 1);
      if (a.defined()) {
        Tensor acs_prev = in->get("acs");  // (B, P, H)
        COIL_CHECK(acs_prev.shape() == (Shape{B, P, H}), "LinearAttentionMixer: prefix acs ",
                   shape_str(acs_prev.shape()),
                   " does not match (B, P, H) = ", shape_str(Shape{B, P, H}));
        if (P > 0) acs_q = acs_q + acs_prev.narrow(1, P - 1, 1);
        acs_k = concat({acs_prev, acs_q}, 1);  // (B, P + T, H)
      }
    }
    if (a.defined() && !acs_k.defined()) acs_k = acs_q;
    const double sm_scale = 1.0 / std::sqrt(double(Dh));
    y = start ? linattn_exp_quadratic(q, k, v, a, sm_scale) : prefix_attention(q, k_all, v_all, sm_scale, acs_q, acs_k);
    next.set("k", k_all);
    next.set("v", v_all);
    // Rebased so the newest cached token has Acs 0: only differences matter, and small magnitudes
    // near the present keep fp32 decoding of long contexts exact where the weights are large.
    if (acs_k.defined()) next.set("acs", acs_k - acs_k.narrow(1, acs_k.size(1) - 1, 1));
  } else {
    const LinAttnOptions m = math_options();
    LinAttnState st;
    if (!start) {
      st.S = in->get("S");
      if (m.sm_norm) st.z = in->get("z");
    }
    if (sh) {
      // Spec section 7, all-gather variant: each shard's zero-start final state S0 = sum_t
      // e^{Acs_T - Acs_t} k^_t v_t^T (z0 likewise) and total log decay; the incoming state is the
      // exclusive prefix S_in = sum_{j<r} (prod_{j<i<r} e^{la_i}) S0_j; then one scan from S_in.
      Tensor kh = linattn_features(scale(k, m.scale), m.power);  // (B, T, H, F)
      Tensor la;                                                 // (B, H) total log decay
      if (a.defined()) {
        Tensor acs = cumsum(a, 1);                               // (B, T, H)
        Tensor last = acs.narrow(1, T - 1, 1);                   // (B, 1, H)
        kh = kh * exp(last - acs).unsqueeze(3);
        la = last.squeeze(1);
      }
      Tensor S0 = matmul(kh.permute({0, 2, 3, 1}), v.permute({0, 2, 1, 3}));  // (B, H, F, D)
      std::vector<Tensor> parts{S0};
      if (m.sm_norm) parts.push_back(sum(kh, 1));                            // z0 (B, H, F)
      if (la.defined()) parts.push_back(la);                                 // (B, H)
      auto g = sh->all_gather(parts, q, &q);
      for (int64_t j = 0; j < sh->rank; ++j) {
        const auto& gj = g[size_t(j)];
        Tensor Sj = gj[0];
        Tensor zj = m.sm_norm ? gj[1] : Tensor();
        if (j == 0) {
          st.S = Sj;
          st.z = zj;
          continue;
        }
        if (la.defined()) {
          Tensor d = exp(gj.back());                           // (B, H)
          st.S = st.S * d.unsqueeze(2).unsqueeze(3);
          if (zj.defined()) st.z = st.z * d.unsqueeze(2);
        }
        st.S = st.S + Sj;
        if (zj.defined()) st.z = st.z + zj;
      }
      y = linattn_chunked(q, k, v, a, m, options.chunk_size, sh->rank > 0 ? &st : nullptr, nullptr);
      st = LinAttnState{};
    } else if (form == Form::Quadratic && qkv_direct) {
      y = linattn_quadratic_qkv(X, a, H, m);  // q, k, v read in place from X
    } else if (form == Form::Quadratic) {
      y = linattn_quadratic(q, k, v, a, m);
    } else if (form == Form::Chunked) {
      y = linattn_chunked(q, k, v, a, m, options.chunk_size, &st, &st);
    } else {
      std::vector<Tensor> ys;
      for (int64_t t = 0; t < T; ++t)
        ys.push_back(linattn_step(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1),
                                  a.defined() ? a.narrow(1, t, 1) : Tensor(), m, st));
      y = ys.size() == 1 ? ys[0] : concat(ys, 1);
    }
    if (st.S.defined()) next.set("S", st.S);
    if (st.z.defined()) next.set("z", st.z);
  }

  // 11-12. D residual, gate, merge heads, output norm, W_o.
  if (dres.defined()) y = y + dres;
  Tensor merged = y.reshape({B, T, I});  // (B, T, I)
  if (W_z) merged = merged * silu(W_z->forward(x));
  if (norm) merged = norm->forward(merged);
  if (out) *out = std::move(next);
  return o->forward(merged);  // (B, T, C)
}

Tensor LinearAttentionMixer::forward(const Tensor& x) const {
  const bool quadratic = options.form == "quadratic" ||
                         (options.form == "auto" && x.dim() == 3 && x.size(1) <= options.chunked_from);
  return run(x, quadratic ? Form::Quadratic : Form::Chunked, nullptr, nullptr);
}

Tensor LinearAttentionMixer::forward_stateful(const Tensor& x, const MixerState& in,
                                              MixerState* out) const {
  return run(x, Form::Chunked, &in, out);
}

Tensor LinearAttentionMixer::step(const Tensor& x, MixerState& state) const {
  COIL_CHECK(x.dim() == 3 && x.size(1) == 1,
             "LinearAttentionMixer::step: expected one token (B, 1, C), got ", x.describe());
  MixerState next;
  Tensor y = run(x, Form::Recurrent, &state, &next);
  state = std::move(next);
  return y;
}

int64_t LinearAttentionMixer::decode_state_values(int64_t context) const {
  const int64_t H = n_heads, Dh = head_dim;
  const int64_t conv_carry = options.conv_width > 1 ? (options.conv_width - 1) * 3 * H * Dh : 0;
  if (options.power == "exp")
    return context * H * (2 * Dh + (options.a_mask != "none" ? 1 : 0)) + conv_carry;
  const int64_t F = linattn_feature_dim(math_options().power, Dh);
  return H * F * Dh + (options.norm == "sm" ? H * F : 0) + conv_carry;
}

int64_t LinearAttentionMixer::symmetric_state_values_per_head(int64_t head_dim, int64_t conv_width) {
  const int64_t F = head_dim * (head_dim + 1) / 2;
  return F * head_dim + F + (conv_width > 1 ? (conv_width - 1) * 3 * head_dim : 0);
}

int64_t LinearAttentionMixer::count_parameters(int64_t dim, int64_t n_heads, int64_t head_dim,
                                               const LinearMixerOptions& o) {
  const int64_t H = n_heads, I = n_heads * head_dim;
  int64_t n = Linear::count_parameters(dim, 3 * I, false) + Linear::count_parameters(I, dim, false);
  if (o.conv_width > 0) n += 3 * I * o.conv_width + 3 * I;
  if (o.value_dt || o.a_mask == "original") n += Linear::count_parameters(dim, H, false);
  if (o.a_mask == "softplus") n += Linear::count_parameters(dim, H, false);
  if (o.a_mask == "original") n += H;
  if (o.d_residual) n += H * head_dim;
  if (o.z_gate) n += Linear::count_parameters(dim, I, true);
  if (o.norm == "output") n += I;
  return n;
}

}  // namespace coil
