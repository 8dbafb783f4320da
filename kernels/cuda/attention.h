// Softmax attention on CUDA (ops Attention / AttentionBackward, contract in core/op_list.h): q, o
// (B, Tq, H, D), k, v (B, Tk, H, D) contiguous, causal bottom-right aligned (query i sees keys
// j <= Tk - Tq + i) or not (every key); lse (B, H, Tq) = log sum_j exp(scale q_i.k_j) in natural log,
// f32 for f32 / bf16 inputs and f64 for f64; the backward takes lse's gradient dlse (same layout) when
// lse was used. bf16 runs cuDNN's fused flash attention (cudnn_sdpa.cpp) when the build has cuDNN and
// an engine takes the call (a backward with dlse as cuDNN's plain backward plus one forward and one
// backward more, attention.cu), otherwise the native kernels (attention.cu), which also serve f32 and
// f64.
// This header is the part tests and benchmarks see.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace coil::cuda {

enum class AttentionImpl { CuDNN, Native };
inline const char* attention_impl_name(AttentionImpl i) { return i == AttentionImpl::CuDNN ? "cudnn" : "native"; }

// One call's shape: Tq queries over Tk keys; dlse: the backward gets lse's gradient.
struct AttentionShape {
  int64_t B = 0, Tq = 0, Tk = 0, H = 0, D = 0;
  bool causal = true, dlse = false;
};

// True when the CUDA backend was built with cuDNN.
bool cudnn_attention_built();
// "cuDNN 9.14.0 (built against 9.14.0)", or why there is none.
std::string cudnn_attention_info();

// The implementation the bf16 kernels use on `device` for this call (forward, or backward). Builds and
// caches the cuDNN plan to find out; *why (if given) gets the reason when it is Native.
// COIL_CUDNN_ATTENTION=0 in the environment switches cuDNN off (every bf16 call runs Native).
AttentionImpl bf16_attention_impl(int device, const AttentionShape& s, bool backward, std::string* why = nullptr);
// The causal Tq == Tk case.
inline AttentionImpl bf16_attention_impl(int device, int64_t B, int64_t T, int64_t H, int64_t D, bool backward,
                                         std::string* why = nullptr) {
  return bf16_attention_impl(device, AttentionShape{B, T, T, H, D, true, false}, backward, why);
}

// --- the cuDNN path (cudnn_sdpa.cpp); called by the bf16 kernels ---------------------------------------
// Each returns false, having touched nothing, when cuDNN cannot run the call (not built, switched off,
// head dim or alignment it does not take, no engine for the shape, or a backward given dlse: cuDNN's
// SDPA graph takes none, see cudnn_sdpa.cpp; attention.cu composes that one); throws coil::Error when
// a cuDNN call fails after a plan was found. Tensors as in the contract above, bf16 with an f32 lse and
// dlse (null: lse had no gradient).
bool cudnn_sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                        const Tensor& lse, double scale, bool causal);
bool cudnn_sdpa_backward(const Tensor& dO, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& o, const Tensor& lse, const Tensor* dlse, const Tensor& dq,
                         const Tensor& dk, const Tensor& dv, double scale, bool causal);

}  // namespace coil::cuda
