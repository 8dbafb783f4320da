// Sequence parallelism (spec/models.md section 7): the sp group splits every sequence into equal
// shards, one per rank, in rank order. Two ways to hand a mixer what the earlier shards left:
//   chain (LASP): rank r receives the state of shards 0..r-1 from r-1 as autograd ops, runs
//     Mixer::forward_stateful, sends its final state to r+1; backward sends d(state) back. Works for
//     every mixer (softmax and 2Mamba-E pass their growing K, V prefix).
//   gather (LASP-2 / K, V all-gather): the mixer's own sharded path, driven by the callbacks of
//     SequenceShardHooks (layers/mixer.h) that make_sequence_hooks fills here.
// Every op here is differentiable; groups of size 1 are the identity.
#pragma once

#include <memory>

#include "layers/mixer.h"
#include "parallel/communicator.h"

namespace coil {

// The callbacks of the gather style for this rank's shard of shard_len tokens.
// balanced: the load-balanced causal split (softmax; see SequenceShardHooks::balanced). ring: softmax
// takes the earlier shards' K, V rank to rank (SequenceShardHooks::ring).
std::shared_ptr<const SequenceShardHooks> make_sequence_hooks(const CommPtr& sp, int64_t shard_len,
                                                              bool balanced = false, bool ring = false);

// Every rank's `parts` in ONE all-gather (flattened and packed): out[j][i] is rank j's parts[i].
// `anchor` comes back through *anchor_out from the same autograd node, so its backward (the
// reduce-scatter of the gradients) runs on every rank (see SequenceShardHooks).
std::vector<std::vector<Tensor>> sp_all_gather(const std::vector<Tensor>& parts, const Tensor& anchor,
                                               Tensor* anchor_out, const CommPtr& sp);

// The previous rank's `tail` (zeros on rank 0); backward sends the gradient back to its owner.
Tensor sp_previous_tail(const Tensor& tail, const CommPtr& sp);

// Chain, receiving end: returns x itself (a pass-through that anchors the backward, which sends
// d(state) to rank - 1) and fills *state with what rank - 1 sent (empty on rank 0).
Tensor chain_receive(const Tensor& x, const CommPtr& sp, MixerState* state);
// Chain, sending end: sends `state` to rank + 1 (nothing on the last rank) and returns y itself,
// whose backward receives d(state) from rank + 1.
Tensor chain_send(const Tensor& y, const MixerState& state, const CommPtr& sp);

// One mixer on this rank's shard: the gather style (mixer->sequence_shard set) or the chain.
Tensor sequence_parallel_mixer(const Mixer& mixer, const Tensor& x, const CommPtr& sp, bool chain);

}  // namespace coil
