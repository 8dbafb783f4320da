// The op harness: ONE list of cases that together cover every op of COIL_OP_LIST (core/op_list.h).
// Each case runs op front-ends (core/ops.h) on small random inputs and is checked three ways:
//   forward        every backend present x every dtype the registry supports, against an independent
//                  double-precision reference written on host vectors (no coil ops in references);
//   non-contiguous the same inputs presented through transposed / stride-2 views must give the same
//                  outputs (against the reference and the contiguous run);
//   gradient       in f64 on CPU, the autograd vector-Jacobian product with a fixed random R against
//                  central finite differences of L = sum_k <out_k, R_k>, on contiguous and strided inputs.
// The coverage test (op_harness_test.cpp) fails when an op of the list has no case.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/op_list.h"
#include "core/registry.h"
#include "core/tensor.h"

namespace coil::harness {

// A plain host tensor: row-major values in double, as the references see them.
struct HostTensor {
  std::vector<double> data;
  Shape shape;

  HostTensor() = default;
  HostTensor(std::vector<double> d, Shape s) : data(std::move(d)), shape(std::move(s)) {}
  static HostTensor zeros(const Shape& s) { return HostTensor(std::vector<double>(size_t(shape_numel(s)), 0.0), s); }
  int64_t numel() const { return int64_t(data.size()); }
  double& operator[](int64_t i) { return data[size_t(i)]; }
  double operator[](int64_t i) const { return data[size_t(i)]; }
};

// How an input's values are drawn.
enum class InputKind {
  Normal,     // N(mean, stddev^2)
  Uniform,    // U[lo, hi)
  Positive,   // U[0.5, 2): log, div denominators
  AwayFromKinks,  // +-U[0.1, 2): relu and other ops with a kink at 0 (finite differences stay on one side)
  Separated,  // distinct values at least 0.05 apart: max (no ties, argmax stable under +-eps)
  Ids,        // integers in [0, hi), held in i32, never differentiable
  Values,     // the explicit `values` (i32 when `integer`)
};

struct InputSpec {
  Shape shape;
  InputKind kind = InputKind::Normal;
  double mean = 0.0, stddev = 1.0;  // Normal
  double lo = 0.0, hi = 1.0;        // Uniform; Ids: hi = number of ids
  std::vector<double> values;       // Values
  bool integer = false;             // held in i32 whatever the case's dtype
  bool differentiable = true;       // gradient-checked (ignored for integer inputs)
  bool noncontig = true;            // may be presented through a non-contiguous view

  InputSpec& no_grad() { differentiable = false; return *this; }
  InputSpec& contiguous_only() { noncontig = false; return *this; }
};

InputSpec normal(const Shape& s, double stddev = 1.0, double mean = 0.0);
InputSpec uniform(const Shape& s, double lo, double hi);
InputSpec positive(const Shape& s);
InputSpec away_from_kinks(const Shape& s);
InputSpec separated(const Shape& s);
InputSpec ids(const Shape& s, int64_t n);
InputSpec int_values(const Shape& s, const std::vector<int64_t>& v);
InputSpec float_values(const Shape& s, const std::vector<double>& v);

// Pass when |got - want| <= atol * max(1, max |want| of that output) + rtol * |want|.
struct Tol {
  double atol = 0.0, rtol = 0.0;
};
Tol default_tol(DType t);

struct OpCase {
  std::string name;                // [A-Za-z0-9_]: it becomes the GoogleTest parameter name
  std::vector<Op> covers;          // ops of the list this case checks (B ops through its gradient check)
  std::vector<InputSpec> inputs;
  std::function<std::vector<Tensor>(const std::vector<Tensor>&)> run;  // coil front-ends
  std::function<std::vector<HostTensor>(const std::vector<HostTensor>&)> reference;  // plain loops
  // Ops whose registered dtypes decide which dtypes the forward check runs (the intersection over
  // them); empty: the F and N ops of `covers`.
  std::vector<Op> dtype_ops;
  bool check_grad = true;          // false for N ops (not differentiable)
  std::vector<bool> grad_outputs;  // which outputs enter the gradient loss; empty: all
  double tol_scale = 1.0;          // multiplies the forward tolerances of every dtype
  double bf16_tol_scale = 1.0;     // multiplies them once more for bf16
  double fd_eps = 1e-6;            // finite-difference step (gradient check, f64)
  double grad_rtol = 1e-6, grad_atol = 1e-7;  // |analytic - fd| <= atol * max(1, max|fd|) + rtol * |fd|
  uint64_t seed = 0;               // 0: derived from the name
};

// The case registry: every family appends its cases here (harness_cases_*.cpp).
const std::vector<OpCase>& op_cases();
const OpCase* find_case(const std::string& name);
void add_memory_cases(std::vector<OpCase>& cases);
void add_elementwise_cases(std::vector<OpCase>& cases);
void add_reduction_cases(std::vector<OpCase>& cases);
void add_linalg_cases(std::vector<OpCase>& cases);
void add_model_cases(std::vector<OpCase>& cases);
void add_linattn_cases(std::vector<OpCase>& cases);
void add_linattn_chunked_cases(std::vector<OpCase>& cases);
void add_scan_cases(std::vector<OpCase>& cases);
void add_ssd_cases(std::vector<OpCase>& cases);
void add_optimizer_cases(std::vector<OpCase>& cases);
void add_decode_cases(std::vector<OpCase>& cases);
void add_multi_tensor_cases(std::vector<OpCase>& cases);

// Names of the ops of COIL_OP_LIST that `cases` do not cover. An F or B op counts as covered only by
// a case with check_grad; an N op by any case.
std::vector<std::string> coverage_gaps(const std::vector<OpCase>& cases);

// How inputs are laid out in memory. Transposed: allocated with the last two dims swapped and
// transposed back (falls back to Strided for fewer than two dims of size > 1). Strided: every element
// at stride 2 behind a NaN pad (offset 1), so a kernel that ignores strides reads NaNs.
enum class Layout { Contiguous, Transposed, Strided };
const char* layout_name(Layout l);

struct CheckResult {
  bool ok = true;
  std::string report;   // every failure, one per line
  int64_t checked = 0;  // elements compared
  double worst = 0.0;   // worst |err| / tolerance seen (< 1 passes)
  void fail(const std::string& line) { ok = false; report += line + "\n"; }
};

// Values of the case's inputs (deterministic per case), rounded to what dtype `t` can hold.
std::vector<HostTensor> make_host_inputs(const OpCase& c);
std::vector<HostTensor> round_inputs(const OpCase& c, const std::vector<HostTensor>& h, DType t);
// Device tensors of dtype `t` (integer inputs stay i32) in the given layout.
std::vector<Tensor> build_inputs(const OpCase& c, const std::vector<HostTensor>& h, DType t, Device d,
                                 Layout layout, bool requires_grad);

// Dtypes the forward check runs for this case on backend b (F32, F64, BF16 that every dtype op supports).
std::vector<DType> case_dtypes(const OpCase& c, Backend b);
std::vector<Backend> present_backends();

// Runs the case on (backend, dtype, layout) and compares every output to the reference. When
// `against` is given (the contiguous run's outputs), also compares to those.
CheckResult check_forward(const OpCase& c, Backend b, DType t, Layout layout,
                          std::vector<std::vector<double>>* outputs = nullptr,
                          const std::vector<std::vector<double>>* against = nullptr);
// f64 CPU gradient check against central finite differences.
CheckResult check_gradient(const OpCase& c, Layout layout);

// Index helpers for references.
Shape row_major_strides(const Shape& s);
Shape host_broadcast_shape(const Shape& a, const Shape& b);  // numpy rules
// Flat index into an input of shape `in` (broadcast to `out`) of output element `flat`.
int64_t broadcast_source(const Shape& out, int64_t flat, const Shape& in);
// The (outer, n, inner) split of `s` around dim (negative counts from the end).
struct DimSplit {
  int64_t outer = 1, n = 1, inner = 1, dim = 0;
};
DimSplit split_at(const Shape& s, int64_t dim);
std::string index_str(const Shape& shape, int64_t flat);  // "[1, 0, 2]"
double round_to(DType t, double v);

}  // namespace coil::harness
