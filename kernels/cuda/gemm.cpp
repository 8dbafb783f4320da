// cuBLASLt plumbing behind cuda::gemm (gemm.h). Row-major C = A B is computed as the column-major
// product C^T = B^T A^T: cuBLASLt's "A" is our B and its "B" is our A, with m = N, n = M, k = K, so
// no operand is ever copied; our trans flags become cuBLASLt's op flags. The bias of Linear is the
// BIAS epilogue (a vector of length m = N, added to every column of the column-major D, i.e. every
// row of our C). Where cuBLASLt offers no algorithm (a combination it does not support) the bias is
// written by a kernel and accumulated onto, or the reference kernel runs; gemm_counters() says which.
#include "kernels/cuda/gemm.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

namespace coil::cuda {

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw Error(detail::str_cat("cuBLASLt error: ", call, " failed with ", cublasLtGetStatusName(status),
                              " (", cublasLtGetStatusString(status), ")"),
              file, line);
}

namespace {

// 32 MiB: what NVIDIA recommends for cuBLAS(Lt) on Hopper; smaller workspaces rule out split-K and
// stream-K algorithms for some shapes.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

std::atomic<int64_t> g_cublaslt{0}, g_bias_epilogue{0}, g_bias_kernel{0}, g_reference{0};

// --- per-device handle, per-(device, stream) workspace, cached algorithms ---------------------------
struct PlanKey {
  int device;
  int dtype;
  bool trans_a, trans_b;
  int64_t M, N, K, batch;
  bool bcast_a, bcast_b;  // batch stride 0
  uint32_t align_a, align_b, align_c, align_bias;
  bool accumulate, bias;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
};

struct LtState {
  std::mutex mutex;
  cublasLtHandle_t handles[kMaxDevices] = {};
  std::map<std::pair<int, cudaStream_t>, void*> workspaces;  // never freed: lives with the process
  std::map<PlanKey, Plan> plans;
};

LtState& lt_state() {
  static LtState* s = new LtState();  // never destroyed, like the caching allocator
  return *s;
}

cublasLtHandle_t handle_for(int device) {
  LtState& s = lt_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  COIL_CHECK(device >= 0 && device < kMaxDevices, "CUDA device index ", device, " out of range");
  if (!s.handles[device]) COIL_CUBLAS_CHECK(cublasLtCreate(&s.handles[device]));
  return s.handles[device];
}

void* workspace_for(int device, cudaStream_t stream) {
  LtState& s = lt_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  void*& ws = s.workspaces[{device, stream}];
  if (!ws) COIL_CUDA_CHECK(cudaMalloc(&ws, kWorkspaceBytes));
  return ws;
}

// Largest power of two <= 256 dividing the address and (when batched) the batch stride in bytes.
uint32_t alignment(const void* p, int64_t stride_elems, size_t elem) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p) | uintptr_t(stride_elems * int64_t(elem));
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

// --- RAII for cuBLASLt descriptors -------------------------------------------------------------------
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~MatmulDesc() {
    if (d) cublasLtMatmulDescDestroy(d);
  }
};
struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  ~Layout() {
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};
struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  ~Preference() {
    if (d) cublasLtMatmulPreferenceDestroy(d);
  }
};

template <typename V>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const V& v) {
  COIL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)));
}
template <typename V>
void set_layout(cublasLtMatrixLayout_t d, cublasLtMatrixLayoutAttribute_t attr, const V& v) {
  COIL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(d, attr, &v, sizeof(v)));
}
template <typename V>
void set_pref(cublasLtMatmulPreference_t d, cublasLtMatmulPreferenceAttributes_t attr, const V& v) {
  COIL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d, attr, &v, sizeof(v)));
}

// A column-major (rows, cols) layout with leading dim ld, batched with `stride` elements.
void make_layout(Layout& l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                 int64_t stride) {
  COIL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.d, t, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    set_layout(l.d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, int32_t(batch));
    set_layout(l.d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride);
  }
}

// Runs g through cuBLASLt (bias fused by the epilogue when g.bias is set). Returns false, having
// launched nothing, when cuBLASLt has no algorithm for the problem.
bool run_lt(const GemmCall& g, int device, cudaStream_t stream) {
  cudaDataType_t dt;
  cublasComputeType_t ct;
  cudaDataType_t st;
  size_t elem;
  switch (g.dtype) {
    case DType::F32: dt = CUDA_R_32F, ct = CUBLAS_COMPUTE_32F, st = CUDA_R_32F, elem = 4; break;
    case DType::BF16: dt = CUDA_R_16BF, ct = CUBLAS_COMPUTE_32F, st = CUDA_R_32F, elem = 2; break;
    case DType::F64: dt = CUDA_R_64F, ct = CUBLAS_COMPUTE_64F, st = CUDA_R_64F, elem = 8; break;
    default: COIL_INTERNAL_ASSERT(false, "gemm dtype ", dtype_name(g.dtype));
  }
  if (g.batch > INT32_MAX) return false;  // BATCH_COUNT is an int32
  const int64_t M = g.M, N = g.N, K = g.K;
  const int64_t sa = g.batch > 1 ? g.stride_a : 0, sb = g.batch > 1 ? g.stride_b : 0;
  const int64_t sc = g.batch > 1 ? g.stride_c : 0;

  MatmulDesc desc;
  COIL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.d, ct, st));
  const int32_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
  const int32_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's B is our A
  set_desc(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
  set_desc(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
  if (g.bias) {
    set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(CUBLASLT_EPILOGUE_BIAS));
    set_desc(desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
    set_desc(desc.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(dt));
  }
  // Stored layouts (column-major view of our row-major storage).
  Layout la, lb, lc;
  if (g.trans_b) make_layout(la, dt, K, N, K, g.batch, sb);  // B stored (N, K): col-major (K x N)
  else make_layout(la, dt, N, K, N, g.batch, sb);            // B stored (K, N): col-major (N x K)
  if (g.trans_a) make_layout(lb, dt, M, K, M, g.batch, sa);  // A stored (K, M): col-major (M x K)
  else make_layout(lb, dt, K, M, K, g.batch, sa);            // A stored (M, K): col-major (K x M)
  make_layout(lc, dt, N, M, N, g.batch, sc);

  const PlanKey key{device, int(g.dtype), g.trans_a, g.trans_b, M, N, K, g.batch, g.batch > 1 && sa == 0,
                    g.batch > 1 && sb == 0, alignment(g.a, sa, elem), alignment(g.b, sb, elem),
                    alignment(g.c, sc, elem), g.bias ? alignment(g.bias, 0, elem) : 0u, g.accumulate,
                    g.bias != nullptr};
  const cublasLtHandle_t handle = handle_for(device);
  void* workspace = workspace_for(device, stream);
  Plan plan;
  bool cached = false;
  {
    LtState& s = lt_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.plans.find(key);
    if (it != s.plans.end()) plan = it->second, cached = true;
  }
  if (!cached) {
    Preference pref;
    COIL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.d));
    set_pref(pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kWorkspaceBytes));
    set_pref(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_b);  // cuBLASLt's A = our B
    set_pref(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_a);
    set_pref(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c);
    set_pref(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c);
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, desc.d, la.d, lb.d, lc.d, lc.d,
                                                                 pref.d, 1, &result, &returned);
    // NOT_SUPPORTED means "no algorithm for this problem"; anything else is a real error.
    if (status != CUBLAS_STATUS_NOT_SUPPORTED) COIL_CUBLAS_CHECK(status);
    plan.found = status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
    if (plan.found) plan.algo = result.algo;
    LtState& s = lt_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.plans[key] = plan;
  }
  if (!plan.found) return false;

  const float alpha_f = 1.0f, beta_f = g.accumulate ? 1.0f : 0.0f;
  const double alpha_d = 1.0, beta_d = g.accumulate ? 1.0 : 0.0;
  const bool f64 = g.dtype == DType::F64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : static_cast<const void*>(&alpha_f);
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f);
  COIL_CUBLAS_CHECK(cublasLtMatmul(handle, desc.d, alpha, g.b, la.d, g.a, lb.d, beta, g.c, lc.d, g.c, lc.d,
                                   &plan.algo, workspace, kWorkspaceBytes, stream));
  ++g_cublaslt;
  if (g.bias) ++g_bias_epilogue;
  return true;
}

// cuBLASLt without the bias, batched; if the batched problem has no algorithm (e.g. a broadcast
// operand with batch stride 0), one call per batch.
bool run_lt_unbiased(const GemmCall& g, int device, cudaStream_t stream) {
  if (run_lt(g, device, stream)) return true;
  if (g.batch <= 1) return false;
  const size_t elem = dtype_size(g.dtype);
  for (int64_t i = 0; i < g.batch; ++i) {
    GemmCall one = g;
    one.batch = 1;
    one.a = static_cast<const char*>(g.a) + size_t(i * g.stride_a) * elem;
    one.b = static_cast<const char*>(g.b) + size_t(i * g.stride_b) * elem;
    one.c = static_cast<char*>(g.c) + size_t(i * g.stride_c) * elem;
    // Batches already launched stay valid; a batch without an algorithm falls back on its own.
    if (!run_lt(one, device, stream)) {
      launch_gemm_reference(one, stream);
      ++g_reference;
    }
  }
  return true;
}

}  // namespace

void gemm(const GemmCall& g, int device, cudaStream_t stream) {
  COIL_INTERNAL_ASSERT(g.M >= 0 && g.N >= 0 && g.K >= 0 && g.batch >= 0, "gemm sizes M ", g.M, " N ", g.N,
                       " K ", g.K, " batch ", g.batch);
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  if (g.K == 0) {  // an empty sum: C = bias (or 0), or C unchanged (+ bias) when accumulating
    launch_gemm_reference(g, stream);
    ++g_reference;
    return;
  }
  if (!g.bias) {
    if (!run_lt_unbiased(g, device, stream)) {
      launch_gemm_reference(g, stream);
      ++g_reference;
    }
    return;
  }
  // The BIAS epilogue needs a 16-byte aligned bias vector (smaller alignments fail at run time on
  // some GPUs even when the heuristic offers an algorithm).
  if (alignment(g.bias, 0, dtype_size(g.dtype)) >= 16 && run_lt(g, device, stream)) return;
  if (!g.accumulate) {
    launch_bias_rows(g, stream);
    GemmCall rest = g;
    rest.bias = nullptr;
    rest.accumulate = true;
    if (run_lt_unbiased(rest, device, stream)) {
      ++g_bias_kernel;
      return;
    }
  }
  launch_gemm_reference(g, stream);  // overwrites (or accumulates onto) C from scratch
  ++g_reference;
}

GemmCounters gemm_counters() {
  return {g_cublaslt.load(), g_bias_epilogue.load(), g_bias_kernel.load(), g_reference.load()};
}

}  // namespace coil::cuda
