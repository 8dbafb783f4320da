// Token-indexed ops: Embedding (table lookup) and its backward, CrossEntropy (mean negative
// log-likelihood over counted rows) and its backward. ids / targets are i32; the dispatch dtype is
// the float dtype of the table / logits. Out-of-range ids and targets throw coil::Error before any
// output is written.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_kernel.h"

namespace coil::cpu {
namespace {

const int32_t* int32_data(const Tensor& t, const char* what) {
  COIL_INTERNAL_ASSERT(t.dtype() == DType::I32, what, " must be i32, got ", t.describe());
  return t.data<int32_t>();
}

void check_ids(const int32_t* ids, int64_t M, int64_t V) {
  for (int64_t i = 0; i < M; ++i)
    COIL_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: id ", ids[i], " at position ", i,
               " is out of range for a table of ", V, " rows (expected 0 <= id < ", V, ")");
}

// Embedding: table (V, C), ids (M) i32 -> out (M, C) = table[ids].
template <typename T>
void embedding_kernel(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& table = a.in[0];
  check_dtype<T>(table);
  COIL_INTERNAL_ASSERT(table.dim() == 2, "table ", table.describe());
  const int64_t V = table.size(0), C = table.size(1), M = a.in[1].numel();
  const int32_t* ids = int32_data(a.in[1], "embedding ids");
  check_ids(ids, M, V);
  const T* pt = table.data<T>();
  T* py = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if (M * C > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) std::copy(pt + ids[i] * C, pt + (ids[i] + 1) * C, py + i * C);
}

// EmbeddingBackward: dy (M, C), ids (M) -> dtable (V, C), zeroed then rows added in order.
template <typename T>
void embedding_backward_kernel(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& dy = a.in[0];
  const Tensor& dtable = a.out[0];
  check_dtype<T>(dy);
  const int64_t V = dtable.size(0), C = dtable.size(1), M = a.in[1].numel();
  const int32_t* ids = int32_data(a.in[1], "embedding ids");
  check_ids(ids, M, V);
  const T* pdy = dy.data<T>();
  T* pdt = dtable.data<T>();
  std::fill(pdt, pdt + V * C, T(0));
  for (int64_t i = 0; i < M; ++i) {
    T* row = pdt + ids[i] * C;
    for (int64_t c = 0; c < C; ++c) row[c] += pdy[i * C + c];
  }
}

// Targets that are not ignore_index must lie in [0, V); returns the number of counted rows.
int64_t check_targets(const int32_t* tg, int64_t M, int64_t V, int64_t ignore_index) {
  int64_t count = 0;
  for (int64_t i = 0; i < M; ++i) {
    if (tg[i] == ignore_index) continue;
    COIL_CHECK(tg[i] >= 0 && tg[i] < V, "cross_entropy: target ", tg[i], " in row ", i,
               " is out of range for ", V, " classes (expected 0 <= target < ", V,
               " or ignore_index ", ignore_index, ")");
    ++count;
  }
  return count;
}

// CrossEntropy: logits (M, V), targets (M) i32 -> loss () = mean over counted rows of
// (lse_i - logits[i, target_i]) (0 when none is counted), lse (M) (computed for every row).
template <typename T>
void cross_entropy_kernel(const KernelArgs& a) {
  check_arity(a, 2, 2);
  const Tensor& logits = a.in[0];
  check_dtype<T>(logits);
  const int64_t V = last_dim(logits), M = a.in[1].numel();
  COIL_INTERNAL_ASSERT(logits.numel() == M * V, "logits ", logits.describe(), " targets ",
                       a.in[1].describe());
  const int32_t* tg = int32_data(a.in[1], "cross_entropy targets");
  const int64_t ignore = a.attrs.ignore_index;
  const int64_t count = check_targets(tg, M, V, ignore);
  const T* pl = logits.data<T>();
  const Tensor& lse = a.out[1];
  std::vector<double> row_loss(M, 0.0);  // summed in row order below
#pragma omp parallel for schedule(static) if ((M * V) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    const T* row = pl + i * V;
    double mx = -INFINITY;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
    double total = 0.0;
    for (int64_t j = 0; j < V; ++j) total += std::exp(double(row[j]) - mx);
    const double l = mx + std::log(total);
    store_float(lse, i, l);
    if (tg[i] != ignore) row_loss[i] = l - double(row[tg[i]]);
  }
  double sum = 0.0;
  for (int64_t i = 0; i < M; ++i) sum += row_loss[i];
  store_float(a.out[0], 0, count > 0 ? sum / double(count) : 0.0);
}

// CrossEntropyBackward: dloss (), logits (M, V), targets (M), lse (M) -> dlogits (M, V) =
// dloss * (softmax - onehot(target)) / count on counted rows, 0 on ignored rows.
template <typename T>
void cross_entropy_backward_kernel(const KernelArgs& a) {
  check_arity(a, 4, 1);
  const Tensor& logits = a.in[1];
  check_dtype<T>(logits);
  const int64_t V = last_dim(logits), M = a.in[2].numel();
  const int32_t* tg = int32_data(a.in[2], "cross_entropy targets");
  const int64_t ignore = a.attrs.ignore_index;
  const int64_t count = check_targets(tg, M, V, ignore);
  const double g = load_float(a.in[0], 0) / double(std::max<int64_t>(count, 1));
  const T* pl = logits.data<T>();
  const Tensor& lse = a.in[3];
  T* pd = a.out[0].data<T>();
#pragma omp parallel for schedule(static) if ((M * V) > kMinParallelWork)
  for (int64_t i = 0; i < M; ++i) {
    T* drow = pd + i * V;
    if (tg[i] == ignore) {
      std::fill(drow, drow + V, T(0));
      continue;
    }
    const T* row = pl + i * V;
    const double l = load_float(lse, i);
    for (int64_t j = 0; j < V; ++j) {
      const double p = std::exp(double(row[j]) - l);
      drow[j] = T(g * (p - (j == tg[i] ? 1.0 : 0.0)));
    }
  }
}

}  // namespace

COIL_CPU_FLOAT_KERNELS(Embedding, embedding_kernel);
COIL_CPU_FLOAT_KERNELS(EmbeddingBackward, embedding_backward_kernel);
COIL_CPU_FLOAT_KERNELS(CrossEntropy, cross_entropy_kernel);
COIL_CPU_FLOAT_KERNELS(CrossEntropyBackward, cross_entropy_backward_kernel);

}  // namespace coil::cpu
