// Mixed precision by op, in the manner of PyTorch's autocast: inside an AutocastGuard(true) the
// op front-ends (core/ops/*.cpp) choose the precision each op runs in, so a model whose parameters
// are fp32 master weights trains with bf16 GEMMs and fp32 everything else:
//   * lower precision (bf16): the GEMM-like ops, where tensor cores pay: linear, matmul, attention.
//     Their floating inputs are cast to bf16 (parameters once per guard: the cast is cached while
//     the guard lives, so a weight used by several micro-steps of one guard is cast once) and
//     they return bf16.
//   * fp32: everything precision-sensitive: norms, softmax, cross-entropy, exp / log / softplus,
//     cumsum and the reductions. bf16 inputs are cast up to f32 first.
//   * the rest (elementwise binary ops, concat): inputs of different floating dtypes are promoted
//     to the widest; same-dtype inputs run as they are.
// f64 tensors are never touched (autocast only ever converts between bf16 and f32). The casts are
// ordinary differentiable copies, so gradients reach the fp32 parameters in fp32.
// The guard is per thread and nests (an inner AutocastGuard(false) turns it off for a region).
#pragma once

#include "core/dtype.h"

namespace coil {

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled, DType lower = DType::BF16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_lower_;
  bool owns_cache_;
};

bool autocast_enabled();
// The lower precision of the innermost enabled guard (BF16).
DType autocast_lower_dtype();

}  // namespace coil
