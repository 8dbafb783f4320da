// Per-backend kernel registry: (backend, op, dtype) -> kernel. dtype is the dtype of the op's first
// floating input (for Embedding: the table; for Fill and Copy: the output). Looking up a pair with
// no kernel throws coil::Error naming the op, backend and dtype; supports() asks without throwing.
// Backends register at static-initialisation time through COIL_REGISTER_KERNEL (the kernel libraries
// are linked whole-archive so their registrations are kept).
#pragma once

#include <vector>

#include "core/op_list.h"
#include "core/tensor.h"

namespace coil {

// Attributes of an op call. Each op documents (op_list.h) which fields it reads.
struct OpAttrs {
  int64_t dim = 0;
  bool reverse = false;
  bool trans_a = false, trans_b = false;
  double alpha = 1.0, beta = 0.0;
  double eps = 0.0;
  double theta = 10000.0;
  bool bf16_positions = false;  // rope: positions rounded to bf16 (the paper's training code)
  int64_t pos_offset = 0;
  double scale = 1.0;
  bool causal = true;    // attention: bottom-right aligned causal mask, else every key visible
  int64_t power = 1;     // linattn: 1 or 2
  bool sm_norm = false;  // linattn: divide by the clamped denominator
  int64_t ignore_index = -100;
  // AdamW
  double lr = 0.0, beta1 = 0.9, beta2 = 0.999, weight_decay = 0.0;
  int64_t step = 0;
};

struct KernelArgs {
  Op op;
  std::vector<Tensor> in;
  std::vector<Tensor> out;
  OpAttrs attrs;
};

using KernelFn = void (*)(const KernelArgs&);

using Backend = DeviceType;  // one backend per device type
inline const char* backend_name(Backend b) { return b == Backend::CPU ? "cpu" : "cuda"; }

class Registry {
 public:
  static Registry& instance();
  void add(Backend b, Op op, DType t, KernelFn fn);
  bool supports(Backend b, Op op, DType t) const;
  KernelFn lookup(Backend b, Op op, DType t) const;  // throws coil::Error when missing
  std::vector<DType> dtypes(Backend b, Op op) const;

 private:
  KernelFn table_[kNumDeviceTypes][kNumOps][kNumDTypes] = {};
};

inline bool supports(Backend b, Op op, DType t) { return Registry::instance().supports(b, op, t); }

// Run a kernel on the backend of args' first tensor (out[0] when there are no inputs).
void dispatch(Op op, DType t, const KernelArgs& args);

struct KernelRegistrar {
  KernelRegistrar(Backend b, Op op, DType t, KernelFn fn) { Registry::instance().add(b, op, t, fn); }
};

}  // namespace coil

#define COIL_REGISTER_CAT2(a, b) a##b
#define COIL_REGISTER_CAT(a, b) COIL_REGISTER_CAT2(a, b)
// COIL_REGISTER_KERNEL(CPU, Exp, F32, my_fn);
#define COIL_REGISTER_KERNEL(backend, op, dtype, fn)                                      \
  static ::coil::KernelRegistrar COIL_REGISTER_CAT(coil_reg_, __COUNTER__)(               \
      ::coil::Backend::backend, ::coil::Op::op, ::coil::DType::dtype, fn)
