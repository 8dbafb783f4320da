// AdamW with decoupled weight decay (Loshchilov & Hutter; PyTorch's torch.optim.AdamW semantics), the
// fused in-place coil::adamw_step on every parameter (through adamw_step_multi, a few launches a step). Parameters live in groups; a group may override the
// optimizer-wide options (its own lr or a multiplier of the scheduled lr, weight decay, betas, eps).
// State: m and v per parameter (zeros, the parameter's dtype and device) and the number of updates
// each parameter received (its bias-correction step; a parameter without a gradient is skipped and
// its count does not advance, as in PyTorch).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace coil {

struct AdamWOptions {
  double lr = 1e-3;  // the base lr; a schedule sets it each step with set_lr
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// Unset fields fall back to the optimizer's options. lr: a fixed lr that ignores set_lr; otherwise
// the group uses base lr * lr_scale.
struct ParamGroupOptions {
  std::optional<double> lr;
  double lr_scale = 1.0;
  std::optional<double> weight_decay, beta1, beta2, eps;
};

struct AdamWParamState {
  Tensor m;          // first moment, the parameter's shape and dtype
  Tensor v;          // second moment, the parameter's shape and dtype
  int64_t step = 0;  // updates applied to this parameter so far
};

struct ParamGroup {
  std::string name;
  std::vector<Tensor> params;
  ParamGroupOptions options;
  std::vector<AdamWParamState> state;  // one per param
};

class AdamW {
 public:
  explicit AdamW(const AdamWOptions& options = {});
  // One group holding every parameter with the default options.
  AdamW(const std::vector<Tensor>& params, const AdamWOptions& options);

  // Adds a group; a parameter may belong to one group only. Returns the group index.
  size_t add_param_group(const std::vector<Tensor>& params, const ParamGroupOptions& options = {},
                         const std::string& name = "");

  // Update every parameter that has a gradient, then count the step.
  void step();
  // Drop every parameter's gradient.
  void zero_grad();

  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  const AdamWOptions& options() const { return options_; }
  // The hyper-parameters group g uses on the next step (step field: the optimizer's next step).
  AdamWParams group_params(size_t g) const;

  // Checkpoint access: the step counter and each parameter's moments (writable in place).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const { return groups_.at(g); }
  ParamGroup& group(size_t g) { return groups_.at(g); }
  AdamWParamState& state(size_t g, size_t i) { return groups_.at(g).state.at(i); }
  const AdamWParamState& state(size_t g, size_t i) const { return groups_.at(g).state.at(i); }

 private:
  AdamWOptions options_;
  std::vector<ParamGroup> groups_;
  int64_t step_count_ = 0;
};

}  // namespace coil
