// The kernel table and dispatch.
#include "core/registry.h"

namespace coil {

Registry& Registry::instance() {
  static Registry r;
  return r;
}

void Registry::add(Backend b, Op op, DType t, KernelFn fn) {
  COIL_INTERNAL_ASSERT(table_[int(b)][int(op)][int(t)] == nullptr, "kernel registered twice: ",
                       op_name(op), " ", backend_name(b), " ", dtype_name(t));
  table_[int(b)][int(op)][int(t)] = fn;
}

bool Registry::supports(Backend b, Op op, DType t) const {
  return table_[int(b)][int(op)][int(t)] != nullptr;
}

KernelFn Registry::lookup(Backend b, Op op, DType t) const {
  KernelFn fn = table_[int(b)][int(op)][int(t)];
  if (fn) return fn;
  std::string have;
  for (DType d : dtypes(b, op)) have += std::string(have.empty() ? "" : ", ") + dtype_name(d);
  COIL_FAIL("op '", op_name(op), "' has no kernel for backend ", backend_name(b), " and dtype ",
            dtype_name(t), " (", backend_name(b), " supports: ", have.empty() ? "none" : have, ")");
}

std::vector<DType> Registry::dtypes(Backend b, Op op) const {
  std::vector<DType> out;
  for (int t = 0; t < kNumDTypes; ++t)
    if (table_[int(b)][int(op)][t]) out.push_back(DType(t));
  return out;
}

void dispatch(Op op, DType t, const KernelArgs& args) {
  const Tensor& first = args.in.empty() ? args.out.at(0) : args.in.at(0);
  Backend b = first.device().type;
  for (const Tensor& x : args.in)
    if (x.defined())
      COIL_CHECK(x.device() == first.device(), "op '", op_name(op), "': inputs on different devices (",
                 first.device(), " and ", x.device(), ")");
  Registry::instance().lookup(b, op, t)(args);
}

}  // namespace coil
