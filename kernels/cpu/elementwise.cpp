// Elementwise ops. Unary (Exp .. Scale) and ReluBackward: contiguous tensors of one shape. Binary
// (Add .. Div): a and b are strided views with out's shape (a broadcast dim has stride 0), out is
// contiguous. Every value is computed in double and rounded once on store.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_kernel.h"
#include "kernels/cpu/strided.h"

namespace coil::cpu {
namespace {

// --- unary functors: double f(double x, const OpAttrs&) ---------------------------------------------
struct ExpF {
  static double f(double x, const OpAttrs&) { return std::exp(x); }
};
struct LogF {
  static double f(double x, const OpAttrs&) { return std::log(x); }
};
struct SoftplusF {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exact for every x, never overflows, and continuous (a
  // "return x above 20" cutoff jumps by 2e-9 at 20, which finite differences in f64 see).
  static double f(double x, const OpAttrs&) {
    return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
  }
};
struct SigmoidF {
  static double f(double x, const OpAttrs&) { return sigmoid(x); }
};
struct SiluF {
  static double f(double x, const OpAttrs&) { return x * sigmoid(x); }
};
struct ReluF {
  static double f(double x, const OpAttrs&) { return x < 0.0 ? 0.0 : x; }  // NaN passes through
};
struct SquareF {
  static double f(double x, const OpAttrs&) { return x * x; }
};
struct ScaleF {
  static double f(double x, const OpAttrs& at) { return at.alpha * x + at.beta; }
};

template <typename Fn>
struct unary_kernel {
  template <typename T>
  static void run(const KernelArgs& a) {
    check_arity(a, 1, 1);
    const Tensor& x = a.in[0];
    const Tensor& y = a.out[0];
    check_dtype<T>(x);
    COIL_INTERNAL_ASSERT(x.numel() == y.numel(), x.describe(), " -> ", y.describe());
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t n = x.numel();
    const OpAttrs& at = a.attrs;
#pragma omp parallel for schedule(static) if (n > kMinParallelWork)
    for (int64_t i = 0; i < n; ++i) py[i] = T(Fn::f(double(px[i]), at));
  }
};

// ReluBackward: dy, x (contiguous, same shape) -> dx = dy where x > 0, else 0.
template <typename T>
void relu_backward_kernel(const KernelArgs& a) {
  check_arity(a, 2, 1);
  check_dtype<T>(a.in[1]);
  const T* pdy = a.in[0].data<T>();
  const T* px = a.in[1].data<T>();
  T* pdx = a.out[0].data<T>();
  const int64_t n = a.in[1].numel();
#pragma omp parallel for schedule(static) if (n > kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) pdx[i] = px[i] > T(0) ? pdy[i] : T(0);
}

// --- binary functors ------------------------------------------------------------------------------------
struct AddF {
  static double f(double a, double b) { return a + b; }
};
struct SubF {
  static double f(double a, double b) { return a - b; }
};
struct MulF {
  static double f(double a, double b) { return a * b; }
};
struct DivF {
  static double f(double a, double b) { return a / b; }
};

template <typename Fn>
struct binary_kernel {
  template <typename T>
  static void run(const KernelArgs& a) {
    check_arity(a, 2, 1);
    const Tensor& ta = a.in[0];
    const Tensor& tb = a.in[1];
    const Tensor& out = a.out[0];
    check_dtype<T>(ta);
    check_dtype<T>(tb);
    COIL_INTERNAL_ASSERT(ta.shape() == out.shape() && tb.shape() == out.shape(), ta.describe(), ", ",
                         tb.describe(), " -> ", out.describe());
    const T* pa = ta.data<T>();
    const T* pb = tb.data<T>();
    T* py = out.data<T>();
    parallel_strided_loop<2>(out.shape(), {&ta.strides(), &tb.strides()},
                             [&](int64_t i, const std::array<int64_t, 2>& off) {
                               py[i] = T(Fn::f(double(pa[off[0]]), double(pb[off[1]])));
                             });
  }
};

}  // namespace

COIL_CPU_FLOAT_KERNELS(Exp, unary_kernel<ExpF>::run);
COIL_CPU_FLOAT_KERNELS(Log, unary_kernel<LogF>::run);
COIL_CPU_FLOAT_KERNELS(Softplus, unary_kernel<SoftplusF>::run);
COIL_CPU_FLOAT_KERNELS(Sigmoid, unary_kernel<SigmoidF>::run);
COIL_CPU_FLOAT_KERNELS(Silu, unary_kernel<SiluF>::run);
COIL_CPU_FLOAT_KERNELS(Relu, unary_kernel<ReluF>::run);
COIL_CPU_FLOAT_KERNELS(ReluBackward, relu_backward_kernel);
COIL_CPU_FLOAT_KERNELS(Square, unary_kernel<SquareF>::run);
COIL_CPU_FLOAT_KERNELS(Scale, unary_kernel<ScaleF>::run);
COIL_CPU_FLOAT_KERNELS(Add, binary_kernel<AddF>::run);
COIL_CPU_FLOAT_KERNELS(Sub, binary_kernel<SubF>::run);
COIL_CPU_FLOAT_KERNELS(Mul, binary_kernel<MulF>::run);
COIL_CPU_FLOAT_KERNELS(Div, binary_kernel<DivF>::run);

}  // namespace coil::cpu
