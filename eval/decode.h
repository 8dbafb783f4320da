// Decoding with each mixer's recurrent state or KV cache, built from the LanguageModel's public parts
// (embedding, blocks / hybrid layers, norm_f, lm_head) and the Mixer contract (layers/mixer.h):
// prefill runs every mixer's forward_stateful over the prompt, step feeds one token through
// Mixer::step. The residual stream follows Block / HybridLayer exactly:
//   block:   h = x + mixer(norm1(x));  out = h + mlp(norm2(h))
//   hybrid:  out = x + f(norm(x)),  f = mixer ('M', '*') or mlp ('-')
// so prefill and step reproduce LanguageModel::forward (tests/eval check every mixer in fp64).
// Everything runs under NoGradGuard; tensors stay on the model's device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layers/lm.h"
#include "layers/mixer.h"

namespace coil {

// One entry per layer (Block or HybridLayer, in order); MLP-only hybrid layers keep an empty state.
struct DecodeState {
  std::vector<MixerState> layers;
  int64_t position = 0;  // tokens consumed so far
};

class Decoder {
 public:
  explicit Decoder(const LanguageModel& model);

  size_t num_layers() const;
  DecodeState initial_state() const;
  // ids (B, T) i32 on the model's device -> logits (B, T, V); state advanced by T tokens. `chunk` > 0
  // feeds the prompt in pieces of at most that many tokens (bounds the activation memory).
  Tensor prefill(const Tensor& ids, DecodeState& state, int64_t chunk = 0) const;
  // ids (B, 1) -> logits (B, 1, V); state advanced by one token.
  Tensor step(const Tensor& ids, DecodeState& state) const;

  // Bytes of decode state per layer and per sequence (every state tensor's bytes / B); what a cache
  // of this state costs, measured on the tensors actually held.
  std::vector<int64_t> state_bytes(const DecodeState& state) const;
  // The mixer's own figure (Mixer::decode_state_values) at `context` tokens, per layer, in values.
  std::vector<int64_t> declared_state_values(int64_t context) const;
  // Short label of layer i: the mixer kind ("softmax", "linear", "mamba2", "mamba1", hybrid letter).
  std::string layer_label(size_t i) const;

  const LanguageModel& model() const { return model_; }

 private:
  Tensor run_layers(Tensor x, DecodeState& state, bool single_step) const;
  const Mixer* mixer_of(size_t i) const;
  const LanguageModel& model_;
};

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0.0;  // 0: greedy (argmax); > 0: sample softmax(logits / temperature)
  int64_t top_k = 0;         // > 0: sample among the k most likely tokens only
  uint64_t seed = 0;         // sampling stream
  int32_t stop_token = -1;   // >= 0: stop after emitting it
  int64_t prefill_chunk = 0;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // the new tokens
  double prefill_seconds = 0, decode_seconds = 0;
  double decode_tokens_per_second = 0;  // new tokens after the first / decode_seconds
  std::vector<int64_t> state_bytes;     // per layer, after the last token
};

// One sequence: prefill the prompt, then decode.
GenerateResult generate(const Decoder& decoder, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt);

// Index of the largest logit of a row of `logits` (V) values (ties: the lowest index).
int32_t argmax_row(const double* logits, int64_t V);
// Logits (B, T, V) of any dtype/device -> host doubles, row-major.
std::vector<double> logits_to_host(const Tensor& logits);

}  // namespace coil
