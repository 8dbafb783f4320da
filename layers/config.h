// ModelConfig: the shape of a language model (spec/models.md sections 1 and 3). The mixer's inner
// width is n_heads * head_dim (= d_model in the paper's configs, which have no GQA). `seed` drives
// every parameter's init, in registration order, so a config and a seed give one exact model.
#pragma once

#include <cstdint>
#include <string>

namespace coil {

// The configurable linear-attention mixer of spec section 2 (covers sections 4-6: linear baselines,
// Mamba-2S, 2Mamba, 2Mamba-E). Named presets fill these fields (layers/linear_mixer.h).
struct LinearMixerOptions {
  std::string power = "2";             // "1" | "2" (squared) | "exp" (2Mamba-E: softmax with decay)
  std::string qk_activation = "none";  // "none" | "relu" | "silu", on Q and K only
  int64_t conv_width = 0;              // causal depthwise conv over all 3C qkv channels; 0 = none
  bool d_residual = false;             // y += V * D (D: H x D, init 1), V taken before dt
  bool z_gate = false;                 // y *= silu(h W_z + b_z)
  bool value_dt = false;               // V <- V * dt, dt = softplus(h W_dt)
  std::string a_mask = "none";         // "none" | "original" (-exp(A_log) dt) | "softplus" (-softplus(h W_A))
  std::string norm = "sm";             // "sm" (divide by sum of weights) | "output" (RMSNorm over H*D)
  // Training path: "quadratic" (the fused masked op, O(T^2)), "chunked" (linear time, states between
  // chunks) or "auto": quadratic for sequences of at most chunked_from tokens, chunked above. The
  // default is the crossover measured on an H100 for 2Mamba (docs/PERFORMANCE.md, "Chunked 2Mamba"):
  // the fused ops' fwd+bwd draw level at 32K tokens (41.8 ms each per 32K tokens).
  std::string form = "auto";
  int64_t chunk_size = 64;
  int64_t chunked_from = 32768;
};

// Mamba-2 (section 8, mamba_ssm Mamba2 semantics). n_ssm_heads = 0 means the full layer (d_ssm = H*D);
// the paper's code ("mamba2-paper") uses one SSM head plus a gated-MLP branch on the other channels.
struct Mamba2Options {
  int64_t d_state = 128;
  int64_t head_dim = 64;
  int64_t d_conv = 4;
  int64_t expand = 1;        // d_inner = expand * C
  int64_t n_ssm_heads = 0;   // 0: every head is an SSM head (d_ssm = d_inner)
  int64_t chunk_size = 128;  // the SsdChunked op's fastest on an H100 (docs/PERFORMANCE.md)
  // Tensor parallel (set by parallel/, never from YAML): this module holds 1 / tp_shards of the heads
  // and of the gated-MLP branch; B, C (one group, shared by every head) stay whole on every rank.
  int64_t tp_shards = 1;
};

// Mamba-1 selective scan (section 8).
struct Mamba1Options {
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;       // 0: ceil(C / 16)
  int64_t chunk_size = 64;
  // Tensor parallel (set by parallel/, never from YAML): this module holds 1 / tp_shards of the
  // d_inner channels.
  int64_t tp_shards = 1;
};

struct ModelConfig {
  // The block's token mixer: "softmax", "linear" (LinearMixerOptions; presets set it), "mamba2",
  // "mamba1", or "hybrid" (layer_pattern).
  std::string mixer = "softmax";
  LinearMixerOptions linear;
  Mamba2Options mamba2;
  Mamba1Options mamba1;
  std::string layer_pattern;      // hybrid only, e.g. "M-M-M*-M-M-" (M Mamba-2, * attention, - MLP);
                                  // its length is the layer count (n_layers is not used)
  bool hybrid_attention_rope = false;  // hybrid '*' layers: RoPE on q, k (the 8B study used none)
  int64_t vocab = 32000;          // V
  int64_t d_model = 1024;         // C
  int64_t n_layers = 20;          // L
  int64_t n_heads = 16;           // H
  int64_t head_dim = 64;          // D
  int64_t mlp_hidden = 2048;      // SwiGLU intermediate width (2C in the paper)
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool rope_bf16_positions = false;  // softmax: round RoPE positions to bf16 as the paper's code did
  uint64_t seed = 0;
  bool recompute = false;         // recompute each block's activations in backward

  // Throws coil::Error naming the first bad field.
  void validate() const;
};

}  // namespace coil
