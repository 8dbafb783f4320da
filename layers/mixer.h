// Mixer: the token-mixing half of a block (spec/models.md sections 2-8). It maps the normed residual
// stream (B, T, C) to (B, T, C), causally. Besides the training forward, every mixer exposes the two
// entry points that sequence sharding (parallel/) and decoding (eval/) are built on:
//   forward_stateful: a shard of the sequence, given the state left by the shards before it (empty =
//     the sequence start), returning the output and the state after the shard. Differentiable in the
//     incoming state, so d(state) flows backward from shard r+1 to shard r.
//   step: one token (B, 1, C) with the state updated in place (empty = start).
// What the state holds is the mixer's business (MixerState is a list of named tensors): for the
// linear mixers the inter-chunk state (numerator S, denominator z) and the conv carry; for softmax and
// 2Mamba-E the K, V (and Acs) of every earlier token, i.e. the KV cache / the "prefix" of section 7.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "layers/module.h"

namespace coil {

struct MixerState {
  std::vector<std::pair<std::string, Tensor>> entries;

  bool empty() const { return entries.empty(); }
  bool has(const std::string& name) const;
  Tensor get(const std::string& name) const;  // throws coil::Error naming the missing entry
  void set(const std::string& name, const Tensor& t);
  // Total number of values held for one batch element (every entry's numel / B).
  int64_t values_per_sequence() const;
};

class Mixer : public Module {
 public:
  // x (B, T, C) -> (B, T, C); causal: output t depends on inputs 0..t only.
  virtual Tensor forward(const Tensor& x) const = 0;
  // x (B, T, C), state in -> (B, T, C), *out = state after the last token.
  virtual Tensor forward_stateful(const Tensor& x, const MixerState& in, MixerState* out) const = 0;
  // x (B, 1, C) -> (B, 1, C); state updated.
  virtual Tensor step(const Tensor& x, MixerState& state) const = 0;
  // Values of decode state per layer per sequence after `context` tokens (spec's memory figure).
  virtual int64_t decode_state_values(int64_t context) const = 0;
};

}  // namespace coil
