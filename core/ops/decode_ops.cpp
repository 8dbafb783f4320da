// Front-end of the softmax-attention decode step (op AttentionDecode): one query per sequence over the
// whole K/V cache. Generation and scoring run it under no-grad, one token at a time, so it records no
// autograd node; a caller that needs gradients through a cached step uses prefix_attention, and asking
// this op for them is an error rather than a silently detached result.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/op_utils.h"

namespace coil {
using namespace detail;

Tensor attention_decode(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, std::optional<double> scale) {
  check_floating("attention_decode", q_in, "q");
  check_defined("attention_decode", k_in, "k");
  check_defined("attention_decode", v_in, "v");
  COIL_CHECK(!GradMode::is_enabled() ||
                 !(q_in.requires_grad() || k_in.requires_grad() || v_in.requires_grad()),
             "attention_decode: the decode step is forward only, but an input requires grad (q ",
             q_in.describe(), "); run it under NoGradGuard, or use prefix_attention for gradients");
  Tensor q = autocast_lower(q_in), k = autocast_lower(k_in), v = autocast_lower(v_in);
  check_same("attention_decode", q, "q", k, "k");
  check_same("attention_decode", q, "q", v, "v");
  COIL_CHECK(q.dim() == 4 && q.size(1) == 1, "attention_decode: q must be (B, 1, H, D), got ",
             shape_str(q.shape()));
  const int64_t B = q.size(0), H = q.size(2), D = q.size(3);
  COIL_CHECK(k.dim() == 4 && k.size(1) >= 1, "attention_decode: k must be (B, P, H, D) with P >= 1, got ",
             shape_str(k.shape()));
  const int64_t P = k.size(1);
  check_shape("attention_decode", k, "k", {B, P, H, D}, q, "q");
  check_shape("attention_decode", v, "v", {B, P, H, D}, q, "q");
  // The CUDA kernel keeps a lane's slice of q and of the output row in registers.
  COIL_CHECK(!q.device().is_cuda() || D <= 256, "attention_decode: head dim ", D,
             " is above the CUDA kernel's 256");
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor o = Tensor::empty(q.shape(), q.dtype(), q.device());
  KernelArgs a = make_args(Op::AttentionDecode, {qc, kc, vc}, {o});
  a.attrs.scale = scale.value_or(1.0 / std::sqrt(double(D)));
  run(a, q.dtype());
  return o;
}

}  // namespace coil
