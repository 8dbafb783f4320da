// AdamW: group bookkeeping around the fused adamw_step op.
#include "trainer/adamw.h"

#include "core/autograd/grad_mode.h"
#include "core/error.h"

namespace coil {

AdamW::AdamW(const AdamWOptions& options) : options_(options) {}

AdamW::AdamW(const std::vector<Tensor>& params, const AdamWOptions& options) : options_(options) {
  add_param_group(params);
}

size_t AdamW::add_param_group(const std::vector<Tensor>& params, const ParamGroupOptions& options,
                              const std::string& name) {
  ParamGroup g;
  g.name = name.empty() ? "group" + std::to_string(groups_.size()) : name;
  g.options = options;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    COIL_CHECK(p.defined(), "AdamW: parameter ", i, " of group '", g.name, "' is undefined");
    COIL_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, "AdamW: parameter ", i,
               " of group '", g.name, "' must be f32 or f64 (master weights), got ", p.describe());
    for (const ParamGroup& other : groups_)
      for (const Tensor& q : other.params)
        COIL_CHECK(!q.same(p), "AdamW: parameter ", i, " of group '", g.name,
                   "' is already in group '", other.name, "'");
    for (size_t j = 0; j < i; ++j)
      COIL_CHECK(!params[j].same(p), "AdamW: parameter ", i, " of group '", g.name,
                 "' repeats parameter ", j);
    g.params.push_back(p);
    g.state.push_back({Tensor::zeros(p.shape(), p.dtype(), p.device()),
                       Tensor::zeros(p.shape(), p.dtype(), p.device()), 0});
  }
  groups_.push_back(std::move(g));
  return groups_.size() - 1;
}

AdamWParams AdamW::group_params(size_t gi) const {
  const ParamGroupOptions& o = groups_.at(gi).options;
  AdamWParams p;
  p.lr = o.lr ? *o.lr : options_.lr * o.lr_scale;
  p.beta1 = o.beta1.value_or(options_.beta1);
  p.beta2 = o.beta2.value_or(options_.beta2);
  p.eps = o.eps.value_or(options_.eps);
  p.weight_decay = o.weight_decay.value_or(options_.weight_decay);
  p.step = step_count_ + 1;
  return p;
}

void AdamW::step() {
  NoGradGuard no_grad;
  // One adamw_step per tensor. adamw_step_multi gives the same values in a few launches, but its
  // CUDA kernel (192 blocks of one 64K-element chunk each per launch) ran a 2Mamba-small step's
  // update in 6.9 ms against 3.8 ms one by one (bench/step_ops_bench.cpp, 2026-11-24, H100): too
  // few threads in flight for the memory system, so it stays off until its geometry is reworked.
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    ParamGroup& g = groups_[gi];
    AdamWParams hp = group_params(gi);
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      COIL_CHECK(grad.shape() == p.shape(), "AdamW: gradient ", grad.describe(),
                 " does not match parameter ", p.describe(), " (group '", g.name, "', index ", i,
                 ")");
      AdamWParamState& s = g.state[i];
      hp.step = ++s.step;
      adamw_step(p, grad, s.m, s.v, hp);
    }
  }
  ++step_count_;
}

void AdamW::zero_grad() {
  for (ParamGroup& g : groups_)
    for (Tensor& p : g.params) p.zero_grad();
}

}  // namespace coil
