// AdamW: group bookkeeping around the fused multi-tensor adamw_step_multi op.
#include "trainer/adamw.h"

#include <algorithm>

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
  // One adamw_step_multi per group and (device, dtype, bias-correction step): the same values as one
  // adamw_step per tensor, in a few launches on CUDA (a 2Mamba-small step's 183 tensors in 3;
  // docs/PERFORMANCE.md has the bench/step_ops_bench.cpp figures against one launch per tensor).
  struct Bucket {
    Device device;
    DType dtype;
    int64_t step;
    std::vector<Tensor> p, g, m, v;
  };
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    ParamGroup& g = groups_[gi];
    AdamWParams hp = group_params(gi);
    std::vector<Bucket> buckets;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      COIL_CHECK(grad.shape() == p.shape(), "AdamW: gradient ", grad.describe(),
                 " does not match parameter ", p.describe(), " (group '", g.name, "', index ", i,
                 ")");
      AdamWParamState& s = g.state[i];
      const int64_t step = ++s.step;
      auto it = std::find_if(buckets.begin(), buckets.end(), [&](const Bucket& b) {
        return b.device == p.device() && b.dtype == p.dtype() && b.step == step;
      });
      if (it == buckets.end())
        it = buckets.insert(buckets.end(), Bucket{p.device(), p.dtype(), step, {}, {}, {}, {}});
      it->p.push_back(p);
      it->g.push_back(grad);
      it->m.push_back(s.m);
      it->v.push_back(s.v);
    }
    for (const Bucket& b : buckets) {
      hp.step = b.step;
      adamw_step_multi(b.p, b.g, b.m, b.v, hp);
    }
  }
  ++step_count_;
}

void AdamW::zero_grad() {
  for (ParamGroup& g : groups_)
    for (Tensor& p : g.params) p.zero_grad();
}

}  // namespace coil
