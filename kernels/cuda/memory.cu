// Memory ops on CUDA: Fill (every dtype, strided out) and Copy (every dtype pair, strided in and out;
// dispatched on the output dtype). Conversions match kernels/cpu/memory.cpp: bf16 rounds to nearest
// even through f32 (f64 -> f32 -> bf16, as the host does), float -> integer truncates toward zero.
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

// --- conversions ------------------------------------------------------------------------------------
template <typename To, typename From>
__device__ __forceinline__ To convert(From x) {
  if constexpr (std::is_same_v<To, From>) return x;
  else if constexpr (std::is_same_v<To, bf16_t>) return float_to_bf16_rne(static_cast<float>(x));
  else if constexpr (std::is_same_v<From, bf16_t>) return static_cast<To>(__bfloat162float(x));
  else return static_cast<To>(x);
}

// attrs.alpha (a double) as a T, converted like the host's Tensor::from_vector / CPU Fill.
template <typename T>
T host_value(double v) {
  if constexpr (std::is_same_v<T, bf16_t>) return host_float_to_bf16(float(v));
  else return static_cast<T>(v);
}

// --- Fill: out (strided) = value --------------------------------------------------------------------
template <typename T>
struct FillParams {
  T* out;  // first element of the view
  T value;
  int64_t n;
  StridedIndexer<1> ix;
};

template <typename T, bool kContiguous>
__global__ void fill_kernel(FillParams<T> p) {
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) {
    int64_t off[1] = {i};
    if constexpr (!kContiguous) p.ix.offsets(i, off);
    p.out[off[0]] = p.value;
  }
}

template <typename T>
void fill_launch(const KernelArgs& a) {
  check_arity(a, 0, 1);
  const Tensor& out = a.out[0];
  check_tensor<T>(out);
  FillParams<T> p{out.data<T>(), host_value<T>(a.attrs.alpha), out.numel(),
                  make_indexer<1>(out.shape(), {&out.strides()})};
  if (p.n == 0) return;
  LaunchContext ctx(out);
  if (p.ix.contiguous()) fill_kernel<T, true><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
  else fill_kernel<T, false><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("fill_kernel");
}

// --- Copy: out (strided) = convert(in (strided, same shape)) ----------------------------------------
template <typename To, typename From>
struct CopyParams {
  const From* in;
  To* out;
  int64_t n;
  StridedIndexer<2> ix;  // tensor 0: in, tensor 1: out
};

template <typename To, typename From, bool kContiguous>
__global__ void copy_kernel(CopyParams<To, From> p) {
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) {
    int64_t off[2] = {i, i};
    if constexpr (!kContiguous) p.ix.offsets(i, off);
    p.out[off[1]] = convert<To>(p.in[off[0]]);
  }
}

template <typename To, typename From>
void copy_typed(const Tensor& src, const Tensor& dst, cudaStream_t stream) {
  CopyParams<To, From> p{src.data<From>(), dst.data<To>(), dst.numel(),
                         make_indexer<2>(dst.shape(), {&src.strides(), &dst.strides()})};
  if (p.ix.contiguous()) {
    if constexpr (std::is_same_v<To, From>) {
      COIL_CUDA_CHECK(cudaMemcpyAsync(p.out, p.in, size_t(p.n) * sizeof(To), cudaMemcpyDeviceToDevice, stream));
      return;
    }
    copy_kernel<To, From, true><<<grid_for(p.n), kThreads, 0, stream>>>(p);
  } else {
    copy_kernel<To, From, false><<<grid_for(p.n), kThreads, 0, stream>>>(p);
  }
  COIL_CUDA_CHECK_LAUNCH("copy_kernel");
}

template <typename To>
void copy_launch(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& src = a.in[0];
  const Tensor& dst = a.out[0];
  check_tensor<To>(dst);
  COIL_INTERNAL_ASSERT(src.device() == dst.device(), "copy ", src.describe(), " -> ", dst.describe());
  COIL_INTERNAL_ASSERT(src.shape() == dst.shape(), "copy ", src.describe(), " -> ", dst.describe());
  if (dst.numel() == 0) return;
  LaunchContext ctx(dst);
  switch (src.dtype()) {
    case DType::F32: return copy_typed<To, float>(src, dst, ctx.stream);
    case DType::F64: return copy_typed<To, double>(src, dst, ctx.stream);
    case DType::BF16: return copy_typed<To, bf16_t>(src, dst, ctx.stream);
    case DType::I32: return copy_typed<To, int32_t>(src, dst, ctx.stream);
    case DType::I64: return copy_typed<To, int64_t>(src, dst, ctx.stream);
  }
  COIL_INTERNAL_ASSERT(false, "copy from unknown dtype ", int(src.dtype()));
}

}  // namespace

COIL_REGISTER_KERNEL(CUDA, Fill, F32, fill_launch<float>);
COIL_REGISTER_KERNEL(CUDA, Fill, F64, fill_launch<double>);
COIL_REGISTER_KERNEL(CUDA, Fill, BF16, fill_launch<bf16_t>);
COIL_REGISTER_KERNEL(CUDA, Fill, I32, fill_launch<int32_t>);
COIL_REGISTER_KERNEL(CUDA, Fill, I64, fill_launch<int64_t>);
COIL_REGISTER_KERNEL(CUDA, Copy, F32, copy_launch<float>);
COIL_REGISTER_KERNEL(CUDA, Copy, F64, copy_launch<double>);
COIL_REGISTER_KERNEL(CUDA, Copy, BF16, copy_launch<bf16_t>);
COIL_REGISTER_KERNEL(CUDA, Copy, I32, copy_launch<int32_t>);
COIL_REGISTER_KERNEL(CUDA, Copy, I64, copy_launch<int64_t>);

}  // namespace coil::cuda
