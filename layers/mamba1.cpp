// Mamba-1: mamba_ssm's init (S4D-real A, dt_proj), the projections and the three scan forms (forward
// and forward_stateful run the fused selective_scan op; the composed forms stay as references).
#include "layers/mamba1.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"

namespace coil {

namespace {
constexpr double kDtMin = 1e-3, kDtMax = 1e-1;  // dt ~ exp U[log dt_min, log dt_max]
constexpr double kDtFloor = 1e-4;               // mamba_ssm dt_init_floor
}  // namespace

void validate_mamba1_options(const Mamba1Options& o) {
  COIL_CHECK(o.d_state > 0, "mamba1: d_state must be positive, got ", o.d_state);
  COIL_CHECK(o.d_conv >= 2, "mamba1: d_conv must be >= 2, got ", o.d_conv);
  COIL_CHECK(o.expand > 0, "mamba1: expand must be positive, got ", o.expand);
  COIL_CHECK(o.dt_rank >= 0, "mamba1: dt_rank must be >= 0 (0 = ceil(d_model / 16)), got ", o.dt_rank);
  COIL_CHECK(o.chunk_size > 0, "mamba1: chunk_size must be positive, got ", o.chunk_size);
}

Mamba1::Mamba1(int64_t dim_, const Mamba1Options& o, Generator& gen, const ParamOptions& opt)
    : dim(dim_), d_inner(o.expand * dim_ / std::max<int64_t>(o.tp_shards, 1)), d_state(o.d_state),
      d_conv(o.d_conv), dt_rank(dt_rank_of(dim_, o)), chunk_size(o.chunk_size) {
  validate_mamba1_options(o);
  COIL_CHECK(o.tp_shards >= 1 && (o.expand * dim_) % o.tp_shards == 0,
             "mamba1: d_inner = expand * d_model = ", o.expand * dim_, " does not split into tp_shards = ",
             o.tp_shards);
  in_proj = register_module("in_proj", std::make_shared<Linear>(dim, 2 * d_inner, false, gen, opt));
  const double cb = 1.0 / std::sqrt(double(d_conv));  // PyTorch Conv1d default, fan_in = d_conv
  conv_weight = register_parameter(
      "conv_weight", Tensor::uniform({d_inner, d_conv}, gen, -cb, cb, opt.dtype, opt.device));
  conv_bias = register_parameter("conv_bias",
                                 Tensor::uniform({d_inner}, gen, -cb, cb, opt.dtype, opt.device));
  x_proj = register_module(
      "x_proj", std::make_shared<Linear>(d_inner, dt_rank + 2 * d_state, false, gen, opt));
  dt_proj = register_module("dt_proj", std::make_shared<Linear>(dt_rank, d_inner, true, gen, opt));
  {
    // mamba_ssm re-initialises dt_proj ("random" dt_init, dt_scale 1): weight U(+-dt_rank^-0.5),
    // bias = softplus^{-1}(dt) so that softplus(bias) lies in [dt_min, dt_max].
    NoGradGuard no_grad;
    const double wb = 1.0 / std::sqrt(double(dt_rank));
    dt_proj->weight.copy_(Tensor::uniform({d_inner, dt_rank}, gen, -wb, wb, DType::F64));
    std::vector<double> u = Tensor::uniform({d_inner}, gen, 0.0, 1.0, DType::F64).to_vector();
    for (double& x : u) {
      const double dt = std::max(kDtFloor, std::exp(x * (std::log(kDtMax) - std::log(kDtMin)) +
                                                    std::log(kDtMin)));
      x = dt + std::log(-std::expm1(-dt));
    }
    dt_proj->bias.copy_(Tensor::from_vector(u, {d_inner}, DType::F64));
  }
  std::vector<double> a(size_t(d_inner * d_state));
  for (int64_t d = 0; d < d_inner; ++d)
    for (int64_t n = 0; n < d_state; ++n) a[size_t(d * d_state + n)] = std::log(double(n + 1));
  A_log = register_parameter("A_log",
                             Tensor::from_vector(a, {d_inner, d_state}, opt.dtype, opt.device));
  D = register_parameter("D", Tensor::ones({d_inner}, opt.dtype, opt.device));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d_inner, dim, false, gen, opt));
}

int64_t Mamba1::count_parameters(int64_t dim, const Mamba1Options& o) {
  const int64_t di = o.expand * dim, R = dt_rank_of(dim, o), N = o.d_state;
  return Linear::count_parameters(dim, 2 * di, false) + di * (o.d_conv + 1) +
         Linear::count_parameters(di, R + 2 * N, false) + Linear::count_parameters(R, di, true) +
         di * N + di + Linear::count_parameters(di, dim, false);
}

Tensor Mamba1::forward(const Tensor& x) const {
  return forward_form(x, ScanForm::kChunked, MixerState{}, nullptr);
}

Tensor Mamba1::forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const {
  return forward_form(x, ScanForm::kChunked, in, out);
}

Tensor Mamba1::step(const Tensor& x, MixerState& state) const {
  COIL_CHECK(x.dim() == 3 && x.size(1) == 1, "Mamba1::step: expected one token (B, 1, C), got ",
             x.describe());
  MixerState next;
  Tensor y = forward_form(x, ScanForm::kRecurrent, state, &next);
  state = std::move(next);
  return y;
}

Tensor Mamba1::forward_form(const Tensor& x, ScanForm form, const MixerState& in,
                            MixerState* out) const {
  COIL_CHECK(x.dim() == 3 && x.size(2) == dim, "Mamba1: expected x (B, T, ", dim, "), got ",
             x.describe());
  const int64_t T = x.size(1), N = d_state;
  std::vector<Tensor> xz = split(in_proj->forward(x), {d_inner, d_inner}, 2);  // 2 x (B, T, d_inner)
  Tensor conv_out;
  Tensor u = silu(causal_conv_with_carry(xz[0], conv_weight, conv_bias,
                                         in.empty() ? Tensor() : in.get("conv"),
                                         out ? &conv_out : nullptr));      // (B, T, d_inner)
  Tensor xp = x_proj->forward(u);                                          // (B, T, R + 2 N)
  std::vector<Tensor> dbc = split(x_proj_sum ? x_proj_sum(xp) : xp, {dt_rank, N, N}, 2);
  Tensor dt = softplus(dt_proj->forward(dbc[0]));                          // (B, T, d_inner)
  Tensor A = neg(exp(A_log));                                              // (d_inner, N)
  Tensor h = in.empty() ? Tensor() : in.get("ssm");                        // (B, d_inner, N)
  Tensor y;                                                                // (B, T, d_inner)
  if (form == ScanForm::kRecurrent) {
    auto at = [](const Tensor& t, int64_t i) { return t.narrow(1, i, 1).squeeze(1); };
    std::vector<Tensor> ys;
    for (int64_t t = 0; t < T; ++t)
      ys.push_back(selective_scan_step(at(u, t), at(dt, t), A, at(dbc[1], t), at(dbc[2], t), h)
                       .unsqueeze(1));
    y = T == 1 ? ys[0] : concat(ys, 1);
  } else if (form == ScanForm::kChunked && (!u.device().is_cuda() || N <= 32)) {
    // The fused scan (exact at any length, so chunk_size no longer matters here); its CUDA kernel
    // holds a channel's states in one warp, so a larger d_state takes the composed form below.
    y = selective_scan(u, dt, A, dbc[1], dbc[2], h, out ? &h : nullptr);
  } else {
    // The composed form: the one-chunk reference of the tests (kQuadratic), or chunk_size chunks.
    const int64_t chunk = form == ScanForm::kQuadratic ? T : chunk_size;
    y = selective_scan_chunked(u, dt, A, dbc[1], dbc[2], chunk, h, out ? &h : nullptr);
  }
  y = (y + u * D) * silu(xz[1]);
  if (out) {
    out->entries.clear();
    out->set("ssm", h);
    out->set("conv", conv_out);
  }
  return out_proj->forward(y);                                             // (B, T, C)
}

}  // namespace coil
