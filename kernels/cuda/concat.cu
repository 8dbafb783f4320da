// Concat on CUDA (kernels/cpu/memory.cpp's contract): inputs x_0..x_n are strided views, equal in
// shape except along attrs.dim; out is contiguous. Each input is one strided copy into its slab of
// out: x's index space addressed through out's strides, starting at the slab's first element.
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

template <typename T>
struct SlabParams {
  const T* src;          // first element of the input view
  T* dst;                // first element of its slab in out
  int64_t n;
  StridedIndexer<2> ix;  // tensor 0: the input, tensor 1: out
};

template <typename T, bool kContiguous>
__global__ void concat_slab_kernel(SlabParams<T> p) {
  for (int64_t i = grid_index(); i < p.n; i += grid_stride()) {
    int64_t off[2] = {i, i};
    if constexpr (!kContiguous) p.ix.offsets(i, off);
    p.dst[off[1]] = p.src[off[0]];
  }
}

template <typename T>
void concat_launch(const KernelArgs& a) {
  COIL_INTERNAL_ASSERT(a.out.size() == 1 && !a.in.empty(), "concat arity");
  const Tensor& out = a.out[0];
  check_tensor<T>(out);
  const int64_t dim = a.attrs.dim;
  COIL_INTERNAL_ASSERT(dim >= 0 && dim < out.dim() && out.is_contiguous(), "concat dim ", dim, " for ",
                       out.describe());
  const Shape out_strides = contiguous_strides(out.shape());
  LaunchContext ctx(out);
  int64_t start = 0;  // where the current input begins along dim
  for (const Tensor& x : a.in) {
    check_tensor<T>(x);
    COIL_INTERNAL_ASSERT(x.dim() == out.dim(), "concat input ", x.describe(), " vs ", out.describe());
    SlabParams<T> p{x.data<T>(), out.data<T>() + start * out_strides[dim], x.numel(),
                    make_indexer<2>(x.shape(), {&x.strides(), &out_strides})};
    start += x.shape()[dim];
    if (p.n == 0) continue;
    if (p.ix.contiguous()) concat_slab_kernel<T, true><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
    else concat_slab_kernel<T, false><<<grid_for(p.n), kThreads, 0, ctx.stream>>>(p);
    COIL_CUDA_CHECK_LAUNCH("concat_slab_kernel");
  }
  COIL_INTERNAL_ASSERT(start == out.shape()[dim], "concat sizes sum to ", start, ", out has ", out.shape()[dim]);
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Concat, concat_launch);

}  // namespace coil::cuda
