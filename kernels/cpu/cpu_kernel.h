// What every CPU kernel file shares: the F32 + F64 registration macro, the (outer, n, inner) view of a
// tensor around one dimension, and per-element access to auxiliary outputs (rstd, lse) whose dtype is
// read from the tensor itself. Kernels compute in double and round once when storing (the oracle).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "core/registry.h"
#include "core/tensor.h"

// COIL_CPU_FLOAT_KERNELS(Exp, unary_kernel<ExpF>::run) registers run<float> for F32 and run<double>
// for F64. `fn` must be a template taking the scalar type as its only (remaining) argument.
#define COIL_CPU_FLOAT_KERNELS(op, fn)              \
  COIL_REGISTER_KERNEL(CPU, op, F32, fn<float>);   \
  COIL_REGISTER_KERNEL(CPU, op, F64, fn<double>)

namespace coil::cpu {

// Below this much work (elements, or multiply-adds) a kernel runs on one thread: waking a thread team
// costs more than it saves, and on a loaded machine spinning threads slow everyone down.
inline constexpr int64_t kMinParallelWork = int64_t(1) << 18;

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::F32; }
template <>
constexpr DType dtype_of<double>() { return DType::F64; }

// A tensor seen as (outer, n, inner) around dimension `dim` (a rank-0 tensor is (1, 1, 1)).
struct DimView {
  int64_t outer = 1, n = 1, inner = 1;
};
inline DimView dim_view(const Shape& shape, int64_t dim) {
  DimView v;
  if (shape.empty()) return v;
  COIL_INTERNAL_ASSERT(dim >= 0 && dim < int64_t(shape.size()), "dim ", dim, " for shape ",
                       shape_str(shape));
  for (int64_t d = 0; d < dim; ++d) v.outer *= shape[d];
  v.n = shape[dim];
  for (int64_t d = dim + 1; d < int64_t(shape.size()); ++d) v.inner *= shape[d];
  return v;
}

// The last dimension's size (1 for a rank-0 tensor); row kernels see a tensor as (numel / n, n).
inline int64_t last_dim(const Tensor& t) { return t.dim() == 0 ? 1 : t.shape().back(); }

// Element i of a contiguous F32 or F64 tensor, as double / stored from double.
inline double load_float(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::F32) return t.data<float>()[i];
  COIL_INTERNAL_ASSERT(t.dtype() == DType::F64, "expected f32 or f64, got ", t.dtype());
  return t.data<double>()[i];
}
inline void store_float(const Tensor& t, int64_t i, double v) {
  if (t.dtype() == DType::F32) {
    t.data<float>()[i] = float(v);
    return;
  }
  COIL_INTERNAL_ASSERT(t.dtype() == DType::F64, "expected f32 or f64, got ", t.dtype());
  t.data<double>()[i] = v;
}

// Stable logistic function: never evaluates exp of a large positive number.
inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  double e = std::exp(x);
  return e / (1.0 + e);
}

// Checks shared by the kernels: argument counts and the dispatch dtype of a tensor.
inline void check_arity(const KernelArgs& a, size_t n_in, size_t n_out) {
  COIL_INTERNAL_ASSERT(a.in.size() == n_in && a.out.size() == n_out, op_name(a.op), " got ",
                       a.in.size(), " inputs and ", a.out.size(), " outputs, expected ", n_in,
                       " and ", n_out);
}
template <typename T>
void check_dtype(const Tensor& t) {
  COIL_INTERNAL_ASSERT(t.dtype() == dtype_of<T>(), "kernel for ", dtype_of<T>(), " got ",
                       t.describe());
}

}  // namespace coil::cpu
