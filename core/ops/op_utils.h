// Shared checks and dispatch helpers for the op front-ends in this folder.
#pragma once

#include <initializer_list>
#include <string>

#include "core/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "core/registry.h"

namespace coil::detail {

// Accumulator/statistics dtype for a floating dtype: f64 stays f64, f32 and bf16 use f32.
inline DType stat_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

inline void check_defined(const char* op, const Tensor& t, const char* what) {
  COIL_CHECK(t.defined(), op, ": ", what, " is undefined");
}

inline void check_floating(const char* op, const Tensor& t, const char* what) {
  check_defined(op, t, what);
  COIL_CHECK(is_floating(t.dtype()), op, ": ", what, " must be floating point, got ", t.describe());
}

// Same dtype and device, or an error naming both tensors.
inline void check_same(const char* op, const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  check_defined(op, a, an);
  check_defined(op, b, bn);
  COIL_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch between ", an, " ", a.describe(), " and ",
             bn, " ", b.describe());
  COIL_CHECK(a.device() == b.device(), op, ": device mismatch between ", an, " ", a.describe(),
             " and ", bn, " ", b.describe());
}

inline void check_shape(const char* op, const Tensor& t, const char* what, const Shape& expected,
                        const Tensor& ref, const char* ref_name) {
  COIL_CHECK(t.shape() == expected, op, ": ", what, " has shape ", shape_str(t.shape()), " but ",
             shape_str(expected), " was expected from ", ref_name, " ", shape_str(ref.shape()));
}

inline int64_t wrap_dim(const char* op, int64_t d, int64_t ndim) {
  int64_t w = d < 0 ? d + ndim : d;
  COIL_CHECK(w >= 0 && w < ndim, op, ": dim ", d, " out of range for a ", ndim, "-d tensor");
  return w;
}

inline KernelArgs make_args(Op op, std::vector<Tensor> in, std::vector<Tensor> out) {
  KernelArgs a;
  a.op = op;
  a.in = std::move(in);
  a.out = std::move(out);
  return a;
}

inline void run(const KernelArgs& a, DType t) { dispatch(a.op, t, a); }

using Grads = std::vector<Tensor>;

// --- autocast (core/autocast.h): each returns its input unchanged when no guard is enabled ----------
// f32 -> the guard's lower precision (bf16); parameters are cast once per guard.
Tensor autocast_lower(const Tensor& t);
// f32 t -> the lower precision when ref is in the lower precision (a norm's or conv's weight follows
// its input, so a bf16 activation stays bf16).
Tensor autocast_like(const Tensor& t, const Tensor& ref);
// lower precision -> f32.
Tensor autocast_f32(const Tensor& t);
// When the tensors mix f32 and the lower precision, the lower ones are cast to f32 (in place in the
// caller's variables); undefined entries are skipped.
void autocast_promote(Tensor* const* ts, size_t n);
// The same for a braced list of variables; free (no allocation) when no guard is enabled.
inline void autocast_promote(std::initializer_list<Tensor*> ts) { autocast_promote(ts.begin(), ts.size()); }

// The AdamW hyper-parameters as the AdamW and AdamWMulti kernels read them.
inline void set_adamw_attrs(KernelArgs& a, const AdamWParams& p) {
  a.attrs.lr = p.lr;
  a.attrs.beta1 = p.beta1;
  a.attrs.beta2 = p.beta2;
  a.attrs.eps = p.eps;
  a.attrs.weight_decay = p.weight_decay;
  a.attrs.step = p.step;
}

}  // namespace coil::detail
