// Mamba-1 mixer (spec/models.md section 8, mamba_ssm Mamba semantics; S6 selective scan):
//   [x | z] = h W_in (C -> 2 d_inner), x = silu(causal_dwconv(x)) (with bias, width d_conv),
//   [dt_low | B | C] = x W_x (no bias), dt = softplus(dt_low W_dt + b_dt), A = -exp(A_log) (d_inner, N),
//   h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t, y_t = h_t C_t + D x_t, out = (y * silu(z)) W_out.
// Init: A_log = log(1..N) per row (S4D-real), D = 1, dt_proj weight U(+-dt_rank^-0.5) and bias
// softplus^{-1}(dt), dt ~ exp U[log 1e-3, log 1e-1]. forward runs the fused selective scan (op
// SelectiveScan, exact: chunk_size only sets the composed chunked form, used where the op is not).
// MixerState: "ssm" (B, d_inner, d_state) and "conv" (B, d_conv - 1, d_inner), the raw pre-conv x rows.
#pragma once

#include <functional>
#include <memory>

#include "layers/config.h"
#include "layers/linear.h"
#include "layers/mixer.h"
#include "layers/ssm_scan.h"

namespace coil {

// Throws coil::Error naming the first bad field of o.
void validate_mamba1_options(const Mamba1Options& o);

class Mamba1 : public Mixer {
 public:
  Mamba1(int64_t dim, const Mamba1Options& options, Generator& gen, const ParamOptions& opt = {});
  // x (B, T, C) -> (B, T, C), fused selective scan from a zero state.
  Tensor forward(const Tensor& x) const override;
  Tensor forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const override;
  Tensor step(const Tensor& x, MixerState& state) const override;
  int64_t decode_state_values(int64_t /*context*/) const override {
    return d_inner * d_state + (d_conv - 1) * d_inner;
  }
  // Any form; kChunked runs the fused op (the composed chunked scan for d_state > 32 on CUDA),
  // kQuadratic the composed scan with one chunk covering the whole input.
  Tensor forward_form(const Tensor& x, ScanForm form, const MixerState& in, MixerState* out) const;
  static int64_t dt_rank_of(int64_t dim, const Mamba1Options& options) {
    return options.dt_rank > 0 ? options.dt_rank : (dim + 15) / 16;
  }
  static int64_t count_parameters(int64_t dim, const Mamba1Options& options);

  int64_t dim, d_inner, d_state, d_conv, dt_rank, chunk_size;
  std::shared_ptr<Linear> in_proj;   // weight (2 d_inner, C): [x | z]
  Tensor conv_weight;                // (d_inner, d_conv)
  Tensor conv_bias;                  // (d_inner)
  std::shared_ptr<Linear> x_proj;    // weight (dt_rank + 2 N, d_inner): [dt_low | B | C]
  std::shared_ptr<Linear> dt_proj;   // weight (d_inner, dt_rank), bias (d_inner)
  Tensor A_log;                      // (d_inner, N)
  Tensor D;                          // (d_inner)
  std::shared_ptr<Linear> out_proj;  // weight (C, d_inner)
  // Tensor parallel (Mamba1Options::tp_shards > 1; set by parallel/): d_inner is this rank's share of
  // the channels, so x_proj's [dt_low | B | C] is a partial sum; this sums it over the tp group
  // (forward and backward). Null: the single-rank model.
  std::function<Tensor(const Tensor&)> x_proj_sum;
};

}  // namespace coil
