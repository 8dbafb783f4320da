// SingleCommunicator and the along-a-dimension helpers shared by every implementation.
#include "parallel/communicator.h"

#include "core/autograd/grad_mode.h"

namespace coil {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

std::shared_ptr<Work> Communicator::all_reduce_async(const Tensor& t, ReduceOp op) {
  all_reduce(t, op);
  return std::make_shared<CompletedWork>();
}

namespace detail {
void check_buffer(const Communicator& c, const char* op, const Tensor& t, const char* what) {
  COIL_CHECK(t.defined(), op, " on ", c.name(), ": the ", what, " tensor is undefined");
  COIL_CHECK(t.is_contiguous(), op, " on ", c.name(), ": the ", what,
             " tensor must be contiguous, got ", t.describe(), " with strides ",
             shape_str(t.strides()));
}
void check_reducible(const Communicator& c, const char* op, const Tensor& t, ReduceOp rop) {
  COIL_CHECK(rop != ReduceOp::Avg || is_floating(t.dtype()), op, " on ", c.name(),
             ": avg needs a floating tensor, got ", t.describe());
}
}  // namespace detail

void SingleCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  detail::check_buffer(*this, "all_reduce", t, "input");
  detail::check_reducible(*this, "all_reduce", t, op);
}

void SingleCommunicator::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  detail::check_buffer(*this, "reduce_scatter", input, "input");
  detail::check_buffer(*this, "reduce_scatter", output, "output");
  detail::check_reducible(*this, "reduce_scatter", input, op);
  COIL_CHECK(input.numel() == output.numel() && input.dtype() == output.dtype(),
             "reduce_scatter on ", name(), ": input ", input.describe(), " and output ",
             output.describe(), " must match for a group of 1");
  if (input.data_ptr() != output.data_ptr()) Tensor(output).copy_(input.view(output.shape()));
}

void SingleCommunicator::all_gather(const Tensor& input, const Tensor& output) {
  detail::check_buffer(*this, "all_gather", input, "input");
  detail::check_buffer(*this, "all_gather", output, "output");
  COIL_CHECK(input.numel() == output.numel() && input.dtype() == output.dtype(),
             "all_gather on ", name(), ": input ", input.describe(), " and output ",
             output.describe(), " must match for a group of 1");
  if (input.data_ptr() != output.data_ptr()) Tensor(output).copy_(input.view(output.shape()));
}

void SingleCommunicator::broadcast(const Tensor& t, int root) {
  detail::check_buffer(*this, "broadcast", t, "input");
  COIL_CHECK(root == 0, "broadcast on ", name(), ": root ", root, " is not a rank of a group of 1");
}

void SingleCommunicator::send(const Tensor&, int dst, int) {
  COIL_FAIL("send on ", name(), ": a group of 1 has no peer (dst ", dst, ")");
}
void SingleCommunicator::recv(const Tensor&, int src, int) {
  COIL_FAIL("recv on ", name(), ": a group of 1 has no peer (src ", src, ")");
}

CommPtr SingleCommunicator::split(int, int, const std::string& label) {
  return std::make_shared<SingleCommunicator>(label);
}

// --- along a dimension ---------------------------------------------------------------------------------
namespace {
int64_t checked_dim(const Communicator& c, const char* op, const Tensor& x, int64_t dim) {
  COIL_CHECK(x.defined(), op, " on ", c.name(), ": undefined input");
  const int64_t nd = x.dim();
  COIL_CHECK(dim >= -nd && dim < nd, op, " on ", c.name(), ": dim ", dim, " out of range for ",
             x.describe());
  return dim < 0 ? dim + nd : dim;
}
}  // namespace

Tensor all_gather_dim(Communicator& c, const Tensor& x, int64_t dim) {
  NoGradGuard ng;
  dim = checked_dim(c, "all_gather", x, dim);
  const int P = c.size();
  Tensor in = x.detach().contiguous();
  Shape bshape = x.shape();
  bshape.insert(bshape.begin(), P);
  Tensor buf = Tensor::empty(bshape, x.dtype(), x.device());  // (P, *x.shape)
  c.all_gather(in, buf);
  if (dim == 0) return buf.view([&] {
    Shape s = x.shape();
    s[0] *= P;
    return s;
  }());
  Shape oshape = x.shape();
  const int64_t n = oshape[dim];
  oshape[dim] *= P;
  Tensor out = Tensor::empty(oshape, x.dtype(), x.device());
  for (int r = 0; r < P; ++r) out.narrow(dim, r * n, n).copy_(buf.narrow(0, r, 1).squeeze(0));
  return out;
}

Tensor reduce_scatter_dim(Communicator& c, const Tensor& x, int64_t dim, ReduceOp op) {
  NoGradGuard ng;
  dim = checked_dim(c, "reduce_scatter", x, dim);
  const int P = c.size();
  const int64_t N = x.size(dim);
  COIL_CHECK(N % P == 0, "reduce_scatter on ", c.name(), ": dim ", dim, " of ", x.describe(),
             " (", N, ") does not divide by the group size ", P);
  const int64_t n = N / P;
  Shape oshape = x.shape();
  oshape[dim] = n;
  Tensor buf;
  if (dim == 0) {
    buf = x.detach().contiguous();
  } else {
    Shape bshape = oshape;
    bshape.insert(bshape.begin(), P);
    buf = Tensor::empty(bshape, x.dtype(), x.device());  // (P, *oshape)
    for (int r = 0; r < P; ++r) buf.narrow(0, r, 1).squeeze(0).copy_(x.detach().narrow(dim, r * n, n));
  }
  Tensor out = Tensor::empty(oshape, x.dtype(), x.device());
  c.reduce_scatter(buf, out, op);
  return out;
}

Tensor take_shard(const Communicator& c, const Tensor& x, int64_t dim) {
  NoGradGuard ng;
  dim = checked_dim(c, "take_shard", x, dim);
  const int P = c.size();
  const int64_t N = x.size(dim);
  COIL_CHECK(N % P == 0, "take_shard on ", c.name(), ": dim ", dim, " of ", x.describe(), " (", N,
             ") does not divide by the group size ", P);
  return x.detach().narrow(dim, c.rank() * (N / P), N / P).clone();
}

Tensor all_reduced(Communicator& c, const Tensor& x, ReduceOp op) {
  NoGradGuard ng;
  Tensor out = x.detach().clone();
  c.all_reduce(out, op);
  return out;
}

}  // namespace coil
