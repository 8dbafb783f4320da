// Elementwise ops on CUDA, matching kernels/cpu/elementwise.cpp. Unary (Exp .. Scale) and
// ReluBackward: contiguous inputs and output of one shape. Binary (Add .. Div): a and b are strided
// views with out's shape (a broadcast dim has stride 0), out is contiguous. f32 and bf16 compute in
// fp32 (bf16 rounds once on store), f64 in fp64.
#include "kernels/cuda/cuda_kernel.cuh"
#include "kernels/cuda/device_math.cuh"

namespace coil::cuda {
namespace {

// --- unary functors: C operator()(C x, C alpha, C beta) ---------------------------------------------
struct ExpOp {
  template <typename C>
  __device__ C operator()(C x, C, C) const { return m_exp(x); }
};
struct LogOp {
  template <typename C>
  __device__ C operator()(C x, C, C) const { return m_log(x); }
};
struct SoftplusOp {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|), the CPU's form: never overflows, continuous, and NaN
  // propagates (max written as a compare, as std::max does, not fmax, which would drop the NaN).
  template <typename C>
  __device__ C operator()(C x, C, C) const {
    return (x < C(0) ? C(0) : x) + m_log1p(m_exp(x < C(0) ? x : -x));
  }
};
struct SigmoidOp {
  template <typename C>
  __device__ C operator()(C x, C, C) const { return m_sigmoid(x); }
};
struct SiluOp {
  template <typename C>
  __device__ C operator()(C x, C, C) const { return x * m_sigmoid(x); }
};
struct ReluOp {
  template <typename C>
  __device__ C operator()(C x, C, C) const { return x < C(0) ? C(0) : x; }  // NaN passes through
};
struct SquareOp {
  template <typename C>
  __device__ C operator()(C x, C, C) const { return x * x; }
};
struct ScaleOp {
  template <typename C>
  __device__ C operator()(C x, C alpha, C beta) const { return alpha * x + beta; }
};

template <typename T>
struct UnaryParams {
  const T* x;  // (n) contiguous
  T* y;        // (n) contiguous
  int64_t n;
  compute_t<T> alpha, beta;  // Scale's attrs.alpha / attrs.beta; unused by the others
};

template <typename T, typename Fn>
__global__ void unary_kernel(UnaryParams<T> p) {
  const Fn fn;
  for (int64_t i = grid_index(); i < p.n; i += grid_stride())
    p.y[i] = from_compute<T>(fn(to_compute(p.x[i]), p.alpha, p.beta));
}

template <typename Fn>
struct Unary {
  template <typename T>
  static void launch(const KernelArgs& a) {
    check_arity(a, 1, 1);
    const Tensor& x = a.in[0];
    const Tensor& y = a.out[0];
    check_tensor<T>(x);
    check_tensor<T>(y);
    COIL_INTERNAL_ASSERT(x.numel() == y.numel() && x.is_contiguous() && y.is_contiguous(),
                         x.describe(), " -> ", y.describe());
    UnaryParams<T> p{x.data<T>(), y.data<T>(), x.numel(), compute_t<T>(a.attrs.alpha),
                     compute_t<T>(a.attrs.beta)};
    if (p.n == 0) return;
    LaunchContext ctx(x);
    unary_kernel<T, Fn><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("unary_kernel");
  }
};

// --- ReluBackward: in dy, x -> out dx = dy where x > 0, else 0 --------------------------------------
template <typename T>
struct ReluBackwardParams {
  const T* dy;  // (n)
  const T* x;   // (n)
  T* dx;        // (n)
  int64_t n;
};

template <typename T>
__global__ void relu_backward_kernel(ReluBackwardParams<T> p) {
  for (int64_t i = grid_index(); i < p.n; i += grid_stride())
    p.dx[i] = to_compute(p.x[i]) > compute_t<T>(0) ? p.dy[i] : from_compute<T>(compute_t<T>(0));
}

template <typename T>
void relu_backward_launch(const KernelArgs& a) {
  check_arity(a, 2, 1);
  const Tensor& dy = a.in[0];
  const Tensor& x = a.in[1];
  const Tensor& dx = a.out[0];
  for (const Tensor* t : {&dy, &x, &dx}) {
    check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(t->numel() == dx.numel() && t->is_contiguous(), "relu_backward ", t->describe(),
                         " vs ", dx.describe());
  }
  ReluBackwardParams<T> p{dy.data<T>(), x.data<T>(), dx.data<T>(), dx.numel()};
  if (p.n == 0) return;
  LaunchContext ctx(dx);
  relu_backward_kernel<T><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

// --- binary functors ---------------------------------------------------------------------------------
struct AddOp {
  template <typename C>
  __device__ C operator()(C a, C b) const { return a + b; }
};
struct SubOp {
  template <typename C>
  __device__ C operator()(C a, C b) const { return a - b; }
};
struct MulOp {
  template <typename C>
  __device__ C operator()(C a, C b) const { return a * b; }
};
struct DivOp {
  template <typename C>
  __device__ C operator()(C a, C b) const { return a / b; }
};

template <typename T>
struct BinaryParams {
  const T* a;  // strided view with out's shape
  const T* b;  // strided view with out's shape
  T* out;      // contiguous
  int64_t n;
  StridedIndexer<2> ix;  // tensor 0: a, tensor 1: b
};

template <typename T, typename Fn, bool kContiguous>
__global__ void binary_kernel(BinaryParams<T> p) {
  const Fn fn;
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) {
    int64_t off[2] = {i, i};
    if constexpr (!kContiguous) p.ix.offsets(i, off);
    p.out[i] = from_compute<T>(fn(to_compute(p.a[off[0]]), to_compute(p.b[off[1]])));
  }
}

template <typename Fn>
struct Binary {
  template <typename T>
  static void launch(const KernelArgs& a) {
    check_arity(a, 2, 1);
    const Tensor& ta = a.in[0];
    const Tensor& tb = a.in[1];
    const Tensor& out = a.out[0];
    for (const Tensor* t : {&ta, &tb, &out}) check_tensor<T>(*t);
    COIL_INTERNAL_ASSERT(ta.shape() == out.shape() && tb.shape() == out.shape() && out.is_contiguous(),
                         ta.describe(), ", ", tb.describe(), " -> ", out.describe());
    BinaryParams<T> p{ta.data<T>(), tb.data<T>(), out.data<T>(), out.numel(),
                      make_indexer<2>(out.shape(), {&ta.strides(), &tb.strides()})};
    if (p.n == 0) return;
    LaunchContext ctx(out);
    if (p.ix.contiguous()) binary_kernel<T, Fn, true><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
    else binary_kernel<T, Fn, false><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("binary_kernel");
  }
};

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Exp, Unary<ExpOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Log, Unary<LogOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Softplus, Unary<SoftplusOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Sigmoid, Unary<SigmoidOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Silu, Unary<SiluOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Relu, Unary<ReluOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Square, Unary<SquareOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Scale, Unary<ScaleOp>::launch);
COIL_CUDA_FLOAT_KERNELS(ReluBackward, relu_backward_launch);
COIL_CUDA_FLOAT_KERNELS(Add, Binary<AddOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Sub, Binary<SubOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Mul, Binary<MulOp>::launch);
COIL_CUDA_FLOAT_KERNELS(Div, Binary<DivOp>::launch);

}  // namespace coil::cuda
