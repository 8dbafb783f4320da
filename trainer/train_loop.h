// The training loop behind `coil train`: gradient accumulation, the LR schedule, global-norm
// clipping, AdamW, non-finite detection (a step whose loss or grad norm is NaN/Inf is skipped and
// counted; nan_tolerance of them in a row stop the run with a checkpoint), held-out loss from a
// second BatchSource (the same batches every time), progress lines, JSONL metrics and HDF5
// checkpoints every K steps and at the end. Under mpirun the model is replicated over dp or sharded
// over dp x tp x sp (trainer/train_parallel.h: the one place that knows the grid); world rank 0
// prints, writes metrics and checkpoints (full global tensors). Resume restores parameters,
// moments, per-parameter and global step counts, the trainer RNG and the batch sources' positions:
// the continued run is bit-identical to an uninterrupted one (on another layout: equal up to the
// reassociation of the reductions).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layers/lm.h"
#include "parallel/communicator.h"
#include "trainer/adamw.h"
#include "trainer/batch_source.h"
#include "trainer/checkpoint.h"
#include "trainer/run_config.h"

namespace coil {

// Test hooks: fault injection at exact points.
struct TrainHooks {
  std::function<void(int64_t steps_done, LanguageModel& model)> after_step;
  CheckpointWriteHooks checkpoint;
  int64_t stop_after = 0;  // > 0: return after this global step (and its checkpoint, if one is due)
};

struct TrainOptions {
  // "": fresh run (an error when checkpoint.dir already holds checkpoints); "auto": the newest
  // complete checkpoint of checkpoint.dir, or a fresh run when there is none; else a file path.
  std::string resume;
  std::ostream* out = nullptr;  // progress lines (world rank 0 only); null: silent
  CommPtr world;                // every rank of the run; null: a single process
  TrainHooks hooks;
};

struct StepRecord {
  int64_t step = 0;  // global steps done after this one (1-based)
  double loss = 0, lr = 0, grad_norm = 0;
  bool skipped = false;  // non-finite: no update
};

struct TrainResult {
  int64_t start_step = 0, end_step = 0;
  std::vector<StepRecord> steps;                        // the steps this call ran
  std::vector<std::pair<int64_t, double>> eval_losses;  // (step, held-out loss)
  bool stopped_non_finite = false;
  std::string resumed_from;     // checkpoint path, "" for a fresh start
  std::string last_checkpoint;  // the newest one written
};

// eval_source may be null (no held-out loss). The sources must be this rank's slices (dp_rank of
// parallel.dp, the world rank while tp = sp = 1), or for a sharded run (tp or sp > 1, or
// parallel.zero1) the whole global batch on every rank (make_*_source do both).
TrainResult train(const RunConfig& config, BatchSource& train_source, BatchSource* eval_source,
                  const TrainOptions& options);

// AdamW over a model's parameters as optim describes: one group "decay" (every parameter with
// optim.decay all; the 2+ dimensional ones with matrices) and, with matrices, a group "no_decay"
// (weight decay 0) for the 1-D ones.
std::unique_ptr<AdamW> make_optimizer(const RunConfig& config, const Module& model);

// The sources a config's data section describes (synthetic, or token shards through
// trainer/shard_source.h), sliced for dp rank dp_rank of dp_size (with tp or sp > 1 the arguments
// are ignored when sharded: every rank gets the whole global batch, see train()). make_eval_source
// returns null
// when the config has no held-out stream (shards with data.eval "").
std::unique_ptr<BatchSource> make_train_source(const RunConfig& config, int dp_rank = 0,
                                               int dp_size = 1);
std::unique_ptr<BatchSource> make_eval_source(const RunConfig& config, int dp_rank = 0,
                                              int dp_size = 1);

}  // namespace coil
