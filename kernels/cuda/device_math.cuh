// Math functions overloaded on the compute type (fp32 for f32 / bf16, fp64 for f64), so one kernel
// template serves every dtype. All are the accurate (not --use_fast_math) CUDA functions.
#pragma once

#include <cuda_runtime.h>

namespace coil::cuda {

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }

// Stable logistic function: never evaluates exp of a large positive number (the CPU's form).
template <typename C>
__device__ __forceinline__ C m_sigmoid(C x) {
  if (x >= C(0)) return C(1) / (C(1) + m_exp(-x));
  const C e = m_exp(x);
  return e / (C(1) + e);
}

}  // namespace coil::cuda
