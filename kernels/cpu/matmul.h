// One row-major GEMM, C (M, N) = op(A) op(B) (+ C when accumulate), for the CPU Matmul and Linear
// kernels. op(A) is A (M, K), or A stored as (K, M) when trans_a; op(B) is B (K, N), or B stored as
// (N, K) when trans_b. All three are contiguous. gemm() uses CBLAS when coil was built with it
// (COIL_HAVE_CBLAS), else gemm_loops(), the plain-loop reference, which is always available.
#pragma once

#include <cstdint>

namespace coil::cpu {

template <typename T>
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  const T* a = nullptr;  // (M, K) or (K, M) if trans_a
  const T* b = nullptr;  // (K, N) or (N, K) if trans_b
  T* c = nullptr;        // (M, N)
  bool accumulate = false;
};

void gemm(const GemmArgs<float>& g);
void gemm(const GemmArgs<double>& g);
void gemm_loops(const GemmArgs<float>& g);
void gemm_loops(const GemmArgs<double>& g);
bool gemm_uses_cblas();  // whether gemm() calls CBLAS in this build

}  // namespace coil::cpu
