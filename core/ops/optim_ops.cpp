// Multi-tensor AdamW front-end: the per-tensor adamw_step's checks on every quadruple, then one
// AdamWMulti op over all of them (the CUDA kernel packs them into a few launches; the CPU runs each
// quadruple as AdamW does).
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

void adamw_step_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                      const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, const AdamWParams& p) {
  COIL_CHECK(grads.size() == params.size() && ms.size() == params.size() && vs.size() == params.size(),
             "adamw_multi: ", params.size(), " params but ", grads.size(), " grads, ", ms.size(),
             " exp_avg and ", vs.size(), " exp_avg_sq");
  COIL_CHECK(p.step >= 1, "adamw_multi: step is 1-based, got ", p.step);
  if (params.empty()) return;
  std::vector<Tensor> in;
  in.reserve(4 * params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& param = params[i];
    check_floating("adamw_multi", param, "param");
    check_same("adamw_multi", params[0], "first param", param, "param");
    check_same("adamw_multi", param, "param", grads[i], "grad");
    check_same("adamw_multi", param, "param", ms[i], "exp_avg");
    check_same("adamw_multi", param, "param", vs[i], "exp_avg_sq");
    for (const Tensor* t : {&grads[i], &ms[i], &vs[i]})
      check_shape("adamw_multi", *t, "state", param.shape(), param, "param");
    for (const Tensor* t : {&param, &grads[i], &ms[i], &vs[i]})
      COIL_CHECK(t->is_contiguous(), "adamw_multi: tensors must be contiguous, got ", t->describe());
    in.insert(in.end(), {param.detach(), grads[i].detach(), ms[i], vs[i]});
  }
  NoGradGuard ng;
  KernelArgs a = make_args(Op::AdamWMulti, std::move(in), {});
  set_adamw_attrs(a, p);
  run(a, params[0].dtype());
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].bump_version();
    ms[i].bump_version();
    vs[i].bump_version();
  }
}

}  // namespace coil
