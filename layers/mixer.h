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

#include <functional>
#include <memory>
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

// Sequence parallelism inside a mixer, "gather" style (spec section 7, LASP-2 / all-gather of K, V).
// layers/ must not depend on parallel/, so parallel/ fills these callbacks with its communicator and
// sets Mixer::sequence_shard; null (the default) is the single-rank model. With it set, forward(x)
// takes this rank's shard of the sequence (global positions offset .. offset + T - 1) and returns the
// same rows of the unsharded output:
//   softmax: RoPE at the global positions, K, V of every shard all-gathered, attention over the prefix;
//   2Mamba-E: K, V and the local Acs all-gathered, Acs rebased by the earlier shards' total decay;
//   linear power 1 / 2 and Mamba-2: the zero-start final state and total log decay of every shard
//     all-gathered, the incoming state formed by an exclusive prefix over earlier shards, one scan;
//   every conv: the previous shard's last w-1 raw (pre-conv) rows as the halo.
// Both callbacks are differentiable (their backward sends the gradients back to where the values
// came from). Every rank of the group must make the same calls in the same order; all_gather returns
// `anchor` unchanged through *anchor_out, and the mixer computes on with *anchor_out, so the
// gather's backward (a reduce-scatter) runs on every rank even where no gathered value is used.
struct SequenceShardHooks {
  int64_t rank = 0, size = 1;  // this shard, number of shards (equal lengths)
  int64_t offset = 0;          // global position of this shard's first token
  // Load-balanced causal split (softmax only): the sequence is cut into 2 * size chunks and shard r
  // holds chunks r and 2 size - 1 - r (first half of its rows, then second), so every shard does the
  // same attention work. offset is then unused.
  bool balanced = false;
  // Softmax: earlier shards' K, V come rank to rank through previous_tail (a ring step per shard),
  // each attended on arrival and merged by log-sum-exp, instead of one all-gather.
  bool ring = false;
  // One collective: out[j][i] is shard j's parts[i] (backward: reduce-scatter of the gradients).
  std::function<std::vector<std::vector<Tensor>>(const std::vector<Tensor>& parts, const Tensor& anchor,
                                                 Tensor* anchor_out)>
      all_gather;
  // The previous shard's `tail` (same shape; zeros on shard 0). Backward: the gradient goes back.
  std::function<Tensor(const Tensor& tail)> previous_tail;
};

class Mixer : public Module {
 public:
  // Set by parallel/ on a sequence-sharded model (see SequenceShardHooks); null = one rank.
  std::shared_ptr<const SequenceShardHooks> sequence_shard;

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
