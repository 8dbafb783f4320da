// concat and split. split returns narrow views (their backward pads with zeros); concat's backward
// hands each input its slice of the gradient.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

Tensor concat(const std::vector<Tensor>& xs_in, int64_t dim) {
  COIL_CHECK(!xs_in.empty(), "concat: no tensors given");
  std::vector<Tensor> xs = xs_in;
  if (autocast_enabled()) {
    std::vector<Tensor*> ptrs;
    for (Tensor& x : xs) ptrs.push_back(&x);
    autocast_promote(ptrs.data(), ptrs.size());
  }
  const Tensor& x0 = xs[0];
  check_floating("concat", x0, "input 0");
  dim = wrap_dim("concat", dim, x0.dim());
  Shape out_shape = x0.shape();
  out_shape[dim] = 0;
  std::vector<int64_t> sizes;
  std::vector<Tensor> in;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check_same("concat", x0, "input 0", x, "another input");
    bool ok = x.dim() == x0.dim();
    for (int64_t d = 0; ok && d < x.dim(); ++d) ok = d == dim || x.size(d) == x0.size(d);
    COIL_CHECK(ok, "concat: input ", i, " has shape ", shape_str(x.shape()), " but input 0 has ",
               shape_str(x0.shape()), " (only dim ", dim, " may differ)");
    out_shape[dim] += x.size(dim);
    sizes.push_back(x.size(dim));
    in.push_back(x.detach());
  }
  Tensor y = Tensor::empty(out_shape, x0.dtype(), x0.device());
  KernelArgs a = make_args(Op::Concat, in, {y});
  a.attrs.dim = dim;
  run(a, x0.dtype());
  record("ConcatBackward", xs, {y}, [sizes, dim](const Grads& g, const Grads&) {
    Grads out;
    int64_t off = 0;
    for (int64_t n : sizes) {
      out.push_back(g[0].narrow(dim, off, n));
      off += n;
    }
    return out;
  });
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined("split", x, "input");
  dim = wrap_dim("split", dim, x.dim());
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  COIL_CHECK(total == x.size(dim), "split: sizes ", shape_str(sizes), " sum to ", total, " but dim ",
             dim, " of ", shape_str(x.shape()), " is ", x.size(dim));
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t n : sizes) {
    out.push_back(x.narrow(dim, off, n));
    off += n;
  }
  return out;
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                const AdamWParams& p) {
  check_floating("adamw", param, "param");
  check_same("adamw", param, "param", grad, "grad");
  check_same("adamw", param, "param", m, "exp_avg");
  check_same("adamw", param, "param", v, "exp_avg_sq");
  for (const Tensor* t : {&grad, &m, &v})
    check_shape("adamw", *t, "state", param.shape(), param, "param");
  for (const Tensor* t : {&param, &grad, &m, &v})
    COIL_CHECK(t->is_contiguous(), "adamw: tensors must be contiguous, got ", t->describe());
  COIL_CHECK(p.step >= 1, "adamw: step is 1-based, got ", p.step);
  NoGradGuard ng;
  KernelArgs a = make_args(Op::AdamW, {param.detach(), grad.detach(), m, v}, {});
  set_adamw_attrs(a, p);
  run(a, param.dtype());
  param.bump_version();
  m.bump_version();
  v.bump_version();
}

}  // namespace coil
