// Reductions (sum, mean, max over one dim), cumsum, sum_to and sum_squares. Kernels reduce one dim of
// a contiguous input and keep it as size 1; the front-end squeezes it unless keepdim.
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

namespace {

Tensor reduce_dim(Op op, const Tensor& x_in, int64_t dim) {
  Tensor x = x_in.contiguous();
  Shape out_shape = x.shape();
  out_shape[dim] = 1;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  KernelArgs a = make_args(op, {x}, {y});
  a.attrs.dim = dim;
  run(a, x.dtype());
  return y;
}

}  // namespace

Tensor sum(const Tensor& x_in, int64_t dim, bool keepdim) {
  check_floating("sum", x_in, "input");
  Tensor x = autocast_f32(x_in);
  dim = wrap_dim("sum", dim, x.dim());
  Tensor y = reduce_dim(Op::Sum, x, dim);
  Shape in_shape = x.shape();
  record("SumBackward", {x}, {y}, [in_shape](const Grads& g, const Grads&) {
    return Grads{g[0].expand(in_shape)};
  });
  return keepdim ? y : y.squeeze(dim);
}

Tensor sum(const Tensor& x) {
  check_floating("sum", x, "input");
  return sum(x.reshape({x.numel()}), 0, false);
}

Tensor mean(const Tensor& x_in, int64_t dim, bool keepdim) {
  check_floating("mean", x_in, "input");
  Tensor x = autocast_f32(x_in);
  dim = wrap_dim("mean", dim, x.dim());
  Tensor y = reduce_dim(Op::Mean, x, dim);
  Shape in_shape = x.shape();
  double inv_n = 1.0 / double(x.shape()[dim]);
  record("MeanBackward", {x}, {y}, [in_shape, inv_n](const Grads& g, const Grads&) {
    return Grads{scale(g[0], inv_n).expand(in_shape)};
  });
  return keepdim ? y : y.squeeze(dim);
}

Tensor mean(const Tensor& x) {
  check_floating("mean", x, "input");
  return mean(x.reshape({x.numel()}), 0, false);
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  check_floating("max", x, "input");
  dim = wrap_dim("max", dim, x.dim());
  COIL_CHECK(x.shape()[dim] > 0, "max: empty dim ", dim, " in ", shape_str(x.shape()));
  Tensor y = reduce_dim(Op::Max, x, dim);
  record("MaxBackward",
         {x}, {y},
         [dim](const Grads& g, const Grads& s) {
           Tensor dy = g[0].contiguous();
           Tensor dx = Tensor::empty(s[0].shape(), dy.dtype(), dy.device());
           KernelArgs a = make_args(Op::MaxBackward, {dy, s[0], s[1]}, {dx});
           a.attrs.dim = dim;
           run(a, dy.dtype());
           return Grads{dx};
         },
         {x.contiguous(), y});
  return keepdim ? y : y.squeeze(dim);
}

Tensor cumsum(const Tensor& x_arg, int64_t dim, bool reverse) {
  check_floating("cumsum", x_arg, "input");
  dim = wrap_dim("cumsum", dim, x_arg.dim());
  Tensor x_in = autocast_f32(x_arg);  // cumulative log decays: fp32 under autocast (spec 6.2)
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  KernelArgs a = make_args(Op::Cumsum, {x}, {y});
  a.attrs.dim = dim;
  a.attrs.reverse = reverse;
  run(a, x.dtype());
  record("CumsumBackward", {x_in}, {y}, [dim, reverse](const Grads& g, const Grads&) {
    return Grads{cumsum(g[0], dim, !reverse)};
  });
  return y;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  COIL_CHECK(x.dim() >= int64_t(shape.size()), "sum_to: cannot reduce ", shape_str(x.shape()), " to ",
             shape_str(shape));
  Tensor y = x;
  int64_t lead = x.dim() - int64_t(shape.size());
  for (int64_t i = 0; i < lead; ++i) y = sum(y, 0, false);
  for (int64_t i = 0; i < int64_t(shape.size()); ++i) {
    if (shape[i] == y.shape()[i]) continue;
    COIL_CHECK(shape[i] == 1, "sum_to: cannot reduce ", shape_str(x.shape()), " to ", shape_str(shape));
    y = sum(y, i, true);
  }
  return y;
}

Tensor sum_squares(const Tensor& x_in) {
  check_floating("sum_squares", x_in, "input");
  Tensor x = x_in.detach().contiguous();
  Tensor y = Tensor::empty({}, stat_dtype(x.dtype()), x.device());
  run(make_args(Op::SumSquares, {x}, {y}), x.dtype());
  return y;
}

}  // namespace coil
