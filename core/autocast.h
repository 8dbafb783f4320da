// Mixed precision by op, in the manner of PyTorch's autocast: inside an AutocastGuard(true) the
// op front-ends (core/ops/*.cpp) choose the precision each op runs in, so a model whose parameters
// are fp32 master weights trains with bf16 GEMMs and fp32 everything else:
//   * lower precision (bf16): the GEMM-like ops, where tensor cores pay: linear, matmul, attention
//     (and the fused linear-attention op), plus the embedding, so the residual stream and the
//     activations between GEMMs are bf16. Their floating inputs are cast to bf16 (parameters once
//     per guard: the cast is cached while the guard lives) and they return bf16.
//   * follow the input: RMSNorm and the causal conv cast their fp32 weights to a bf16 input's
//     dtype (the kernels keep their statistics and accumulation in fp32).
//   * fp32: everything precision-sensitive: norms, softmax, cross-entropy, exp / log / softplus,
//     cumsum and the reductions. bf16 inputs are cast up to f32 first.
//   * the rest (elementwise binary ops, concat, swiglu): inputs of different floating dtypes are
//     promoted to the widest (so an fp32 decay times bf16 values is fp32); same-dtype inputs run
//     as they are.
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
