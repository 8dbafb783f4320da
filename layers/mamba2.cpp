// Mamba-2: mamba_ssm's init (dt_bias, A_log, D, conv), the projection split and the three scan forms.
#include "layers/mamba2.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops.h"

namespace coil {

namespace {
constexpr double kNormEps = 1e-5;                       // RMSNormGated eps (mamba_ssm default)
constexpr double kDtMin = 1e-3, kDtMax = 1e-1;          // dt ~ exp U[log dt_min, log dt_max]
constexpr double kDtFloor = 1e-4;                       // mamba_ssm dt_init_floor
constexpr double kALo = 1.0, kAHi = 16.0;               // A_log = log U[1, 16]

// softplus^{-1}(dt) for dt drawn log-uniformly in [dt_min, dt_max] (mamba_ssm's dt_bias init).
Tensor init_dt_bias(int64_t n, Generator& gen, const ParamOptions& opt) {
  std::vector<double> u = Tensor::uniform({n}, gen, 0.0, 1.0, DType::F64).to_vector();
  for (double& x : u) {
    const double dt = std::max(kDtFloor, std::exp(x * (std::log(kDtMax) - std::log(kDtMin)) +
                                                  std::log(kDtMin)));
    x = dt + std::log(-std::expm1(-dt));
  }
  return Tensor::from_vector(u, {n}, opt.dtype, opt.device);
}
}  // namespace

Mamba2Options mamba2_preset(const std::string& name) {
  Mamba2Options o;
  if (name == "mamba2") return o;
  if (name == "mamba2-paper") {
    o.n_ssm_heads = 1;
    o.d_conv = 2;
    o.expand = 1;
    return o;
  }
  COIL_FAIL("unknown Mamba-2 preset '", name, "' (expected mamba2 or mamba2-paper)");
}

void validate_mamba2_options(const Mamba2Options& o, int64_t d_model) {
  COIL_CHECK(o.d_state > 0, "mamba2: d_state must be positive, got ", o.d_state);
  COIL_CHECK(o.head_dim > 0, "mamba2: head_dim must be positive, got ", o.head_dim);
  COIL_CHECK(o.d_conv >= 2, "mamba2: d_conv must be >= 2, got ", o.d_conv);
  COIL_CHECK(o.expand > 0, "mamba2: expand must be positive, got ", o.expand);
  COIL_CHECK(o.n_ssm_heads >= 0, "mamba2: n_ssm_heads must be >= 0 (0 = all), got ", o.n_ssm_heads);
  COIL_CHECK(o.chunk_size > 0, "mamba2: chunk_size must be positive, got ", o.chunk_size);
  COIL_CHECK(o.tp_shards >= 1, "mamba2: tp_shards must be >= 1, got ", o.tp_shards);
  const int64_t d_inner = o.expand * d_model;
  if (o.n_ssm_heads == 0)
    COIL_CHECK(d_inner % o.head_dim == 0, "mamba2: d_inner = expand * d_model = ", d_inner,
               " must be a multiple of head_dim ", o.head_dim);
  else
    COIL_CHECK(o.n_ssm_heads * o.head_dim <= d_inner, "mamba2: n_ssm_heads * head_dim = ",
               o.n_ssm_heads * o.head_dim, " exceeds d_inner = expand * d_model = ", d_inner);
  if (o.tp_shards > 1) {
    const int64_t d_ssm = o.n_ssm_heads > 0 ? o.n_ssm_heads * o.head_dim : d_inner;
    COIL_CHECK((d_ssm / o.head_dim) % o.tp_shards == 0 && (d_inner - d_ssm) % o.tp_shards == 0,
               "mamba2: ", d_ssm / o.head_dim, " SSM heads and a gated branch of ", d_inner - d_ssm,
               " channels do not divide by tp = ", o.tp_shards);
  }
}

Mamba2::Mamba2(int64_t dim_, const Mamba2Options& o, Generator& gen, const ParamOptions& opt)
    : dim(dim_), d_inner(o.expand * dim_ / o.tp_shards), head_dim(o.head_dim), d_state(o.d_state),
      d_conv(o.d_conv), chunk_size(o.chunk_size) {
  validate_mamba2_options(o, dim_);
  d_ssm = (o.n_ssm_heads > 0 ? o.n_ssm_heads * head_dim : o.expand * dim_) / o.tp_shards;
  n_heads = d_ssm / head_dim;
  d_mlp = d_inner - d_ssm;
  conv_dim = d_ssm + 2 * d_state;
  // Registration (and init draw) order follows mamba_ssm: in_proj, conv1d, dt_bias, A_log, D, norm,
  // out_proj.
  in_proj = register_module("in_proj", std::make_shared<Linear>(
                                           dim, 2 * d_inner + 2 * d_state + n_heads, false, gen, opt));
  const double cb = 1.0 / std::sqrt(double(d_conv));  // PyTorch Conv1d default, fan_in = d_conv
  conv_weight = register_parameter(
      "conv_weight", Tensor::uniform({conv_dim, d_conv}, gen, -cb, cb, opt.dtype, opt.device));
  conv_bias = register_parameter("conv_bias",
                                 Tensor::uniform({conv_dim}, gen, -cb, cb, opt.dtype, opt.device));
  dt_bias = register_parameter("dt_bias", init_dt_bias(n_heads, gen, opt));
  A_log = register_parameter(
      "A_log", log(Tensor::uniform({n_heads}, gen, kALo, kAHi, opt.dtype, opt.device)));
  D = register_parameter("D", Tensor::ones({n_heads}, opt.dtype, opt.device));
  norm_weight = register_parameter("norm_weight", Tensor::ones({d_ssm}, opt.dtype, opt.device));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d_inner, dim, false, gen, opt));
}

int64_t Mamba2::count_parameters(int64_t dim, const Mamba2Options& o) {
  const int64_t d_inner = o.expand * dim;
  const int64_t d_ssm = o.n_ssm_heads > 0 ? o.n_ssm_heads * o.head_dim : d_inner;
  const int64_t H = d_ssm / o.head_dim, conv_dim = d_ssm + 2 * o.d_state;
  return Linear::count_parameters(dim, 2 * d_inner + 2 * o.d_state + H, false) +
         conv_dim * (o.d_conv + 1) + 3 * H + d_ssm + Linear::count_parameters(d_inner, dim, false);
}

Tensor Mamba2::forward(const Tensor& x) const {
  return forward_form(x, ScanForm::kChunked, MixerState{}, nullptr);
}

Tensor Mamba2::forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const {
  return forward_form(x, ScanForm::kChunked, in, out);
}

Tensor Mamba2::step(const Tensor& x, MixerState& state) const {
  COIL_CHECK(x.dim() == 3 && x.size(1) == 1, "Mamba2::step: expected one token (B, 1, C), got ",
             x.describe());
  MixerState next;
  Tensor y = forward_form(x, ScanForm::kRecurrent, state, &next);
  state = std::move(next);
  return y;
}

Tensor Mamba2::forward_form(const Tensor& x, ScanForm form, const MixerState& in,
                            MixerState* out) const {
  COIL_CHECK(x.dim() == 3 && x.size(2) == dim, "Mamba2: expected x (B, T, ", dim, "), got ",
             x.describe());
  COIL_CHECK(form != ScanForm::kQuadratic || (in.empty() && !out),
             "Mamba2: the quadratic form runs from a zero state only (no state in or out)");
  const int64_t B = x.size(0), T = x.size(1), H = n_heads, P = head_dim, N = d_state;
  std::vector<Tensor> parts = split(in_proj->forward(x), {d_mlp, d_mlp, d_ssm, conv_dim, H}, 2);
  const Tensor &z0 = parts[0], &x0 = parts[1], &z = parts[2], &dt_raw = parts[4];

  // Sequence shard of a gather-style sequence-parallel model (layers/mixer.h): the conv halo is the
  // previous shard's last d_conv - 1 raw rows, the scan's incoming state the prefix of section 7.
  const SequenceShardHooks* sh = form == ScanForm::kChunked && in.empty() && !out && sequence_shard &&
                                         sequence_shard->size > 1
                                     ? sequence_shard.get()
                                     : nullptr;
  Tensor carry_in = in.empty() ? Tensor() : in.get("conv");
  if (sh) {
    COIL_CHECK(T >= d_conv - 1, "Mamba2: a sequence shard of ", T,
               " tokens is shorter than the conv halo of ", d_conv - 1);
    carry_in = sh->previous_tail(parts[3].narrow(1, T - (d_conv - 1), d_conv - 1).contiguous());
  }
  Tensor conv_out;
  Tensor xbc = silu(causal_conv_with_carry(parts[3], conv_weight, conv_bias, carry_in,
                                           out ? &conv_out : nullptr));           // (B, T, conv_dim)
  std::vector<Tensor> xbc_parts = split(xbc, {d_ssm, N, N}, 2);
  Tensor xs = xbc_parts[0].reshape({B, T, H, P});                                  // (B, T, H, P)
  Tensor dt = softplus(dt_raw + dt_bias);                                          // (B, T, H)
  Tensor a = (dt * neg(exp(A_log))).permute({0, 2, 1});                            // (B, H, T)
  Tensor v = (xs * dt.unsqueeze(-1)).permute({0, 2, 1, 3});                        // (B, H, T, P)
  Tensor k = xbc_parts[1].unsqueeze(1);                                            // (B, 1, T, N)
  Tensor q = xbc_parts[2].unsqueeze(1);                                            // (B, 1, T, N)

  Tensor s = in.empty() ? Tensor() : in.get("ssm");                                // (B, H, P, N)
  Tensor y;                                                                        // (B, H, T, P)
  if (form == ScanForm::kQuadratic) {
    y = ssd_quadratic(q, k, v, a);
  } else if (sh) {
    // Zero-start final state S0 = sum_t e^{Acs_T - Acs_t} v_t k_t^T and total log decay per shard,
    // all-gathered; S_in = sum_{j<r} (prod_{j<i<r} e^{la_i}) S0_j.
    Tensor acs = cumsum(a, 2);                                                     // (B, H, T)
    Tensor last = acs.narrow(2, T - 1, 1);                                         // (B, H, 1)
    Tensor vw = v * exp(last - acs).unsqueeze(-1);                                 // (B, H, T, P)
    Tensor S0 = matmul(vw.transpose(-1, -2), k.expand({B, H, T, N}));             // (B, H, P, N)
    auto g = sh->all_gather({S0, last.squeeze(2)}, q, &q);                          // S0, la (B, H)
    Tensor s_in;
    for (int64_t j = 0; j < sh->rank; ++j) {
      const Tensor& Sj = g[size_t(j)][0];
      s_in = j == 0 ? Sj : s_in * exp(g[size_t(j)][1]).unsqueeze(2).unsqueeze(3) + Sj;
    }
    y = ssd_chunked(q, k, v, a, chunk_size, s_in, nullptr);
  } else if (form == ScanForm::kChunked) {
    y = ssd_chunked(q, k, v, a, chunk_size, s, out ? &s : nullptr);
  } else {
    auto at = [](const Tensor& u, int64_t t) { return u.narrow(2, t, 1).squeeze(2); };
    std::vector<Tensor> ys;
    for (int64_t t = 0; t < T; ++t)
      ys.push_back(ssd_step(at(q, t), at(k, t), at(v, t), at(a, t), s).unsqueeze(2));
    y = T == 1 ? ys[0] : concat(ys, 2);
  }
  y = y.permute({0, 2, 1, 3}) + xs * D.unsqueeze(-1);                              // (B, T, H, P)
  // RMSNormGated (norm_before_gate = False): normalise y * silu(z) over each head's P channels.
  Tensor g = y * silu(z.reshape({B, T, H, P}));
  g = rms_norm(g, Tensor::ones({P}, g.dtype(), g.device()), kNormEps) * norm_weight.reshape({H, P});
  Tensor mixed = g.reshape({B, T, d_ssm});                                         // (B, T, d_ssm)
  if (d_mlp > 0) mixed = concat({swiglu(z0, x0), mixed}, 2);                       // (B, T, d_inner)
  if (out) {
    out->entries.clear();
    out->set("ssm", s);
    out->set("conv", conv_out);
  }
  return out_proj->forward(mixed);                                                 // (B, T, C)
}

}  // namespace coil
