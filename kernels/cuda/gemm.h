// Row-major batched GEMM on the GPU, for the Matmul and Linear kernels and for any CUDA code that needs
// a GEMM: cuBLASLt first (one handle per device, one workspace per (device, stream), the chosen
// algorithm cached per problem), a plain reference kernel when cuBLASLt offers no algorithm. Every
// cuBLASLt call is checked by COIL_CUBLAS_CHECK, which throws coil::Error with the status name.
//
//   C[b] (M, N) = A[b] (M, K) @ B[b] (K, N)  [+ C[b] when accumulate]  [+ bias (N) on every row]
//   A stored (M, K), or (K, M) when trans_a; B stored (K, N), or (N, K) when trans_b; all contiguous
//   per batch, batch b at element offset b * stride (stride 0: one matrix shared by the batch).
// Precision: f32 in fp32 with fp32 accumulation (CUBLAS_COMPUTE_32F: TF32 is never used, so results
// match the CPU within f32 rounding); bf16 operands with fp32 accumulation and one rounding of the
// result (CUBLAS_COMPUTE_32F); f64 in fp64 (CUBLAS_COMPUTE_64F).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"

namespace coil::cuda {

// Throws coil::Error naming the failed cuBLASLt call and its status.
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);

struct GemmCall {
  DType dtype = DType::F32;  // of A, B, C and bias
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0, batch = 1;
  const void* a = nullptr;
  int64_t stride_a = 0;  // elements between batches of A; 0 broadcasts A
  const void* b = nullptr;
  int64_t stride_b = 0;
  void* c = nullptr;
  int64_t stride_c = 0;
  bool accumulate = false;     // C += A B instead of C = A B
  const void* bias = nullptr;  // (N) in dtype, or null
};

// A strided-batched call without bias: batch products C_i (+)= op(A_i) op(B_i), A_i = a + i * sa, ...
inline GemmCall batched_gemm_call(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                  int64_t batch, const void* a, int64_t sa, const void* b, int64_t sb,
                                  void* c, int64_t sc, bool accumulate) {
  GemmCall g;
  g.dtype = dtype;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.M = M;
  g.N = N;
  g.K = K;
  g.batch = batch;
  g.a = a;
  g.stride_a = sa;
  g.b = b;
  g.stride_b = sb;
  g.c = c;
  g.stride_c = sc;
  g.accumulate = accumulate;
  return g;
}

// Runs g on `stream` of `device` (which must be current).
void gemm(const GemmCall& g, int device, cudaStream_t stream);

// How GEMMs were executed since the process started (tests print these; no locking beyond atomics).
struct GemmCounters {
  int64_t cublaslt = 0;        // calls run by cublasLtMatmul
  int64_t bias_epilogue = 0;   // of those, with the bias fused by CUBLASLT_EPILOGUE_BIAS
  int64_t bias_kernel = 0;     // bias written by bias_rows_kernel, then the GEMM accumulated onto it
  int64_t reference = 0;       // calls run by the reference kernel (no cuBLASLt algorithm)
};
GemmCounters gemm_counters();

// gemm.cu: the plain kernels behind the fallbacks.
// C[b][m, :] = bias for every batch and row.
void launch_bias_rows(const GemmCall& g, cudaStream_t stream);
// One thread per element of C, fp32 (fp64 for f64) accumulation over K in order; handles every
// field of GemmCall (transposes, broadcast strides, accumulate, bias).
void launch_gemm_reference(const GemmCall& g, cudaStream_t stream);

}  // namespace coil::cuda

#define COIL_CUBLAS_CHECK(call)                                                      \
  do {                                                                               \
    const cublasStatus_t coil_cublas_status_ = (call);                               \
    if (coil_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                   \
      ::coil::cuda::throw_cublas_error(coil_cublas_status_, #call, __FILE__, __LINE__); \
  } while (0)
