// Memory ops: Fill and Copy (registered for every dtype; Copy dispatches on the output dtype and
// converts from any input dtype) and Concat (F32 / F64). Fill's output, Copy's input and output and
// Concat's inputs may be strided views. Conversions: bf16 rounds to nearest even, integers truncate.
#include <cstdint>

#include "kernels/cpu/cpu_kernel.h"
#include "kernels/cpu/strided.h"

namespace coil::cpu {
namespace {

// --- scalar conversions between storage types -------------------------------------------------------
template <typename To, typename From>
To convert(From x) {
  return static_cast<To>(x);  // float <-> double, int <-> float (truncation toward zero), int <-> int
}
template <>
bf16 convert<bf16, bf16>(bf16 x) { return x; }
template <>
bf16 convert<bf16, float>(float x) { return float_to_bf16(x); }
template <>
bf16 convert<bf16, double>(double x) { return float_to_bf16(float(x)); }
template <>
bf16 convert<bf16, int32_t>(int32_t x) { return float_to_bf16(float(x)); }
template <>
bf16 convert<bf16, int64_t>(int64_t x) { return float_to_bf16(float(x)); }
template <>
float convert<float, bf16>(bf16 x) { return bf16_to_float(x); }
template <>
double convert<double, bf16>(bf16 x) { return bf16_to_float(x); }
template <>
int32_t convert<int32_t, bf16>(bf16 x) { return int32_t(bf16_to_float(x)); }
template <>
int64_t convert<int64_t, bf16>(bf16 x) { return int64_t(bf16_to_float(x)); }

// --- Fill: out (any shape, strided) = attrs.alpha -----------------------------------------------------
template <typename T>
void fill_kernel(const KernelArgs& a) {
  check_arity(a, 0, 1);
  const Tensor& out = a.out[0];
  const T value = convert<T>(a.attrs.alpha);
  T* y = out.data<T>();
  parallel_strided_loop<1>(out.shape(), {&out.strides()},
                           [&](int64_t, const std::array<int64_t, 1>& off) { y[off[0]] = value; });
}

// --- Copy: out (strided) = convert(in (strided, same shape)) ------------------------------------------
template <typename To, typename From>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const From* x = src.data<From>();
  To* y = dst.data<To>();
  parallel_strided_loop<2>(dst.shape(), {&src.strides(), &dst.strides()},
                           [&](int64_t, const std::array<int64_t, 2>& off) {
                             y[off[1]] = convert<To>(x[off[0]]);
                           });
}

template <typename To>
void copy_kernel(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& src = a.in[0];
  const Tensor& dst = a.out[0];
  COIL_INTERNAL_ASSERT(src.shape() == dst.shape(), "copy ", src.describe(), " -> ", dst.describe());
  switch (src.dtype()) {
    case DType::F32: return copy_typed<To, float>(src, dst);
    case DType::F64: return copy_typed<To, double>(src, dst);
    case DType::BF16: return copy_typed<To, bf16>(src, dst);
    case DType::I32: return copy_typed<To, int32_t>(src, dst);
    case DType::I64: return copy_typed<To, int64_t>(src, dst);
  }
  COIL_INTERNAL_ASSERT(false, "copy from unknown dtype ", int(src.dtype()));
}

// --- Concat: in x_0..x_n (strided, equal except along attrs.dim) -> out (contiguous) ------------------
template <typename T>
void concat_kernel(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT(a.out.size() == 1 && !a.in.empty(), "concat arity");
  const Tensor& out = a.out[0];
  const int64_t dim = a.attrs.dim;
  COIL_INTERNAL_ASSERT(dim >= 0 && dim < out.dim(), "concat dim ", dim, " for ", out.describe());
  const Shape out_strides = contiguous_strides(out.shape());
  int64_t start = 0;  // where the current input begins along dim
  for (const Tensor& x : a.in) {
    check_dtype<T>(x);
    COIL_INTERNAL_ASSERT(x.dim() == out.dim(), "concat input ", x.describe(), " vs ", out.describe());
    const T* src = x.data<T>();
    T* dst = out.data<T>() + start * out_strides[dim];
    // x's index space, addressed through out's strides, lands in the right slab of out.
    parallel_strided_loop<2>(x.shape(), {&x.strides(), &out_strides},
                             [&](int64_t, const std::array<int64_t, 2>& off) {
                               dst[off[1]] = src[off[0]];
                             });
    start += x.shape()[dim];
  }
  COIL_INTERNAL_ASSERT(start == out.shape()[dim], "concat sizes sum to ", start, ", out has ",
                       out.shape()[dim]);
}

}  // namespace

COIL_REGISTER_KERNEL(CPU, Fill, F32, fill_kernel<float>);
COIL_REGISTER_KERNEL(CPU, Fill, F64, fill_kernel<double>);
COIL_REGISTER_KERNEL(CPU, Fill, BF16, fill_kernel<bf16>);
COIL_REGISTER_KERNEL(CPU, Fill, I32, fill_kernel<int32_t>);
COIL_REGISTER_KERNEL(CPU, Fill, I64, fill_kernel<int64_t>);
COIL_REGISTER_KERNEL(CPU, Copy, F32, copy_kernel<float>);
COIL_REGISTER_KERNEL(CPU, Copy, F64, copy_kernel<double>);
COIL_REGISTER_KERNEL(CPU, Copy, BF16, copy_kernel<bf16>);
COIL_REGISTER_KERNEL(CPU, Copy, I32, copy_kernel<int32_t>);
COIL_REGISTER_KERNEL(CPU, Copy, I64, copy_kernel<int64_t>);
COIL_CPU_FLOAT_KERNELS(Concat, concat_kernel);

}  // namespace coil::cpu
