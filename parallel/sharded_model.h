// The language model sharded over a dp x tp x sp grid (Megatron-style tensor parallel + sequence
// parallel), built from the single-rank layers of layers/ so names, init and math stay those of
// LanguageModel:
//   tp: attention / linear-family / Mamba-2 heads split over ranks (W_qkv rows split per head keeping
//     the [Q | K | V] layout, conv channels, W_A, W_dt, W_z, A_log, D, dt_bias and the mixer norms
//     with their heads; the output RMSNorm over H*D all-reduces its sum of squares); SwiGLU gate / up
//     split by rows, down by columns; embedding and lm_head split by vocab rows, with a vocab-parallel
//     cross-entropy. Mamba-2's B, C rows (one group shared by every head) stay whole on every rank;
//     their gradients are partial sums that finish_tp_grads() adds up over tp.
//   sp: each rank holds T / sp consecutive tokens; mixers get what earlier shards left through the
//     gather style (default) or the chain (parallel/sequence.h).
//   dp: each rank holds B / dp rows of the batch.
// Recompute (config.recompute): every block / hybrid layer runs inside coil::recompute in any layout;
// the chain's messages stay outside the region (see run_layer in sharded_model.cpp).
// Init: every rank draws the FULL single-rank model from config.seed and keeps its slice, so any
// layout starts from the parameters LanguageModel(config) has.
//
// Gradients: loss() is the mean over the whole global batch (every dp and sp rank's tokens), the same
// value on every rank; each rank's parameter gradients are the contribution of its own tokens, so they
// are SUMMED over grad_group() (= dp x sp):
//   ParallelLanguageModel model(cfg, ParallelGroups::of(grid));
//   DataParallelOptions o; o.average = false;
//   DataParallel ddp(model.grad_group(), model.parameters(), o);     // or ZeroAdamW (parallel/zero.h)
//   Tensor loss = model.loss(model.local_batch(ids), model.local_batch(targets));
//   loss.backward(); ddp.finish(); model.finish_tp_grads(); optimizer.step();
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "layers/lm.h"
#include "parallel/grid.h"

namespace coil {

// The groups a sharded model talks over (the grid's; tests wrap them to count bytes).
struct ParallelGroups {
  CommPtr dp, tp, sp, dp_sp;
  static ParallelGroups of(const ProcessGrid& grid);
};

struct ParallelOptions {
  bool sequence_chain = false;  // sp: rank-to-rank chain instead of the gather style
  // sp, softmax only: the load-balanced causal split. The sequence is cut into 2 sp chunks and rank r
  // holds chunks r and 2 sp - 1 - r (local_batch picks them), so causal attention work is even.
  bool balanced_causal = false;
  // sp, softmax only, gather style: the earlier shards' K, V pass rank to rank (sp - 1 steps, each
  // shard attended on arrival, partial outputs merged by their log-sum-exp) instead of one all-gather.
  bool sequence_ring = false;
};

// How one parameter is split over tp: along `dim`, as consecutive segments of the given global
// widths, each either split into tp equal slices (this rank's slice kept) or replicated. dim < 0:
// the whole tensor is replicated.
struct ShardSpec {
  int64_t dim = -1;
  std::vector<int64_t> widths;  // global widths along dim
  std::vector<bool> split;      // per segment
  bool replicated() const { return dim < 0; }
  bool has_replicated_segment() const;
};

// The spec of parameter `name` (LanguageModel's names) of a model with config c.
ShardSpec shard_spec(const std::string& name, const ModelConfig& c);
// This rank's slice of a full tensor; the full tensor from every tp rank's slice (collective).
Tensor take_param_shard(const Tensor& full, const ShardSpec& s, int rank, int size);
Tensor gather_param_shards(const Tensor& local, const ShardSpec& s, Communicator& tp);

// Fails with a coil::Error naming the numbers that disagree: grid vs world size, heads / vocab / MLP
// width vs tp, sequence length vs sp (and the conv halo), batch vs dp, unsupported mixer x layout.
// seq_len / batch <= 0: not checked.
void validate_parallel_layout(const ModelConfig& c, const GridShape& g, int world_size,
                              int64_t seq_len = 0, int64_t batch = 0);

class ParallelLanguageModel : public Module {
 public:
  ParallelLanguageModel(const ModelConfig& config, const ParallelGroups& groups,
                        const ParallelOptions& popt = {}, const ParamOptions& opt = {});
  // ids (B/dp, T/sp) i32: this rank's block -> this rank's logits (B/dp, T/sp, V/tp).
  Tensor forward(const Tensor& ids) const;
  // Mean cross-entropy over the GLOBAL batch (all dp and sp ranks; entries == ignore_index skipped),
  // identical on every rank; backward gives each rank its tokens' share of the gradient.
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100) const;
  // After backward: adds up over tp the gradient rows of parameters replicated inside a tp-split
  // tensor (Mamba-2's B, C), whose per-rank gradients are partial. No-op without such rows.
  void finish_tp_grads() const;
  // The global L2 norm of the gradients (for clipping), after the dp x sp sum and finish_tp_grads():
  // tp-split slices counted on every tp rank, replicated tensors and rows once; identical on every
  // rank (collective over tp).
  double global_grad_norm() const;
  // This rank's (B/dp, T/sp) block of a global (B, T) batch tensor (with balanced_causal: its two
  // chunks, in order).
  Tensor local_batch(const Tensor& global) const;
  // This rank's block of the global logits (B, T, V) (tests).
  Tensor local_logits(const Tensor& global) const;

  const CommPtr& grad_group() const { return groups_.dp_sp; }
  const ParallelGroups& groups() const { return groups_; }
  const ModelConfig& config() const { return config_; }          // the full (global) config
  const ModelConfig& local_config() const { return local_config_; }  // this rank's shapes
  const ShardSpec& spec(const std::string& param_name) const;
  LanguageModel& local() const { return *local_; }

 private:
  Tensor embed(const Tensor& ids) const;
  ModelConfig config_, local_config_;
  ParallelGroups groups_;
  ParallelOptions popt_;
  std::shared_ptr<LanguageModel> local_;
  std::map<std::string, ShardSpec> specs_;
  mutable int64_t hooks_len_ = -1;  // shard length the mixers' sequence hooks were made for
};

}  // namespace coil
