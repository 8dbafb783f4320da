// Rotary position embedding on CUDA (kernels/cpu/attention.cpp's Rope): x (B, T, H, D) -> y, pair
// (2i, 2i+1) at position p = pos_offset + t (rounded to bf16 first when attrs.bf16_positions) rotated
// by p * theta^(-2i/D), minus that when attrs.reverse (the backward).
// Precision: the angle, its cosine and sine are computed in fp64 for every dtype, exactly as the CPU
// does (an fp32 angle would be off by up to |angle| * 2^-24, about 2e-3 rad at position 32K). Each
// thread owns one (t, i), so the fp64 work happens once per (t, i) and is reused for every (b, h); the
// rotation itself runs in the compute type (fp32 for f32 / bf16, one rounding to bf16). Consecutive
// threads take consecutive pairs i, so a warp reads contiguous pairs of one (b, t, h) row.
#include "kernels/cuda/cuda_kernel.cuh"

namespace coil::cuda {
namespace {

// S is the storage type (T names the sequence length here).
template <typename S>
struct RopeParams {
  const S* x;  // (B, T, H, D)
  S* y;        // (B, T, H, D)
  int64_t B, T, H, D;
  int64_t pos_offset;
  double theta;
  double sign;  // -1 for the reverse rotation
  bool bf16_positions;
};

template <typename S>
__global__ void rope_kernel(RopeParams<S> p) {
  using A = compute_t<S>;
  const int64_t half = p.D / 2;
  for (int64_t k = grid_index(); k < p.T * half; k += grid_stride()) {
    const int64_t t = k / half, i = k % half;
    double pos = double(p.pos_offset + t);
    if (p.bf16_positions) pos = double(__bfloat162float(float_to_bf16_rne(float(pos))));
    const double angle = p.sign * pos * pow(p.theta, -2.0 * double(i) / double(p.D));
    double sn, cs;
    sincos(angle, &sn, &cs);
    const A c = A(cs), s = A(sn);
    for (int64_t b = 0; b < p.B; ++b) {
      for (int64_t h = 0; h < p.H; ++h) {
        const int64_t at = ((b * p.T + t) * p.H + h) * p.D + 2 * i;
        const A x0 = to_compute(p.x[at]), x1 = to_compute(p.x[at + 1]);
        p.y[at] = from_compute<S>(x0 * c - x1 * s);
        p.y[at + 1] = from_compute<S>(x0 * s + x1 * c);
      }
    }
  }
}

template <typename S>
void rope_launch(const KernelArgs& a) {
  check_arity(a, 1, 1);
  const Tensor& x = a.in[0];
  const Tensor& y = a.out[0];
  check_tensor<S>(x);
  check_tensor<S>(y);
  COIL_INTERNAL_ASSERT(x.dim() == 4 && x.size(3) % 2 == 0 && x.is_contiguous() && y.is_contiguous() &&
                           y.shape() == x.shape(),
                       "rope ", x.describe(), " -> ", y.describe());
  RopeParams<S> p{x.data<S>(), y.data<S>(), x.size(0), x.size(1), x.size(2), x.size(3),
                  a.attrs.pos_offset, a.attrs.theta, a.attrs.reverse ? -1.0 : 1.0, a.attrs.bf16_positions};
  const int64_t work = p.T * (p.D / 2);
  if (x.numel() == 0 || work == 0) return;
  LaunchContext ctx(x);
  rope_kernel<S><<<grid_for(work), kThreads, 0, ctx.stream>>>(p);
  COIL_CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace

COIL_CUDA_FLOAT_KERNELS(Rope, rope_launch);

}  // namespace coil::cuda
