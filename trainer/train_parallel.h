// The one place the training loop meets the process grid. Everything that depends on how ranks
// share the work lives here, so the loop itself reads the same on one process and under mpirun:
//   1. model construction (build_model / start: identical replicas, gradient buckets),
//   2. the loss of a micro-batch (micro_loss: scaled so that the dp average is the global mean),
//   3. gradient synchronisation (finish_grads: parallel/data_parallel.h buckets over dp),
//   4. metrics reductions (mean_over_dp) and who writes (writer(): world rank 0 prints, writes
//      metrics and checkpoints; every rank reads a checkpoint on resume: dp replicas hold full
//      tensors, so gathering them for a checkpoint is the identity).
// Today the grid is dp only (tp = sp = 1; run_config refuses more). Tensor and sequence parallel
// plug in at those four points: a tp/sp-sharded model from build_model, vocab-parallel loss and
// sequence slices in micro_loss, the dp_sp gradient group in finish_grads, and a gather of the
// shards to full tensors before write_checkpoint (a scatter after read_checkpoint).
//
// Errors under mpirun: a rank that fails alone must not leave the others waiting in a collective.
// Setup and checkpoint writes end with fail_together (a collective), which makes every rank fail
// together with a SharedFailure: the lowest failing rank's carries its own message (to print), the
// others' say which rank failed (not printed).
#pragma once

#include <cstdint>
#include <exception>
#include <memory>

#include "core/error.h"
#include "layers/lm.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "trainer/batch_source.h"
#include "trainer/run_config.h"

namespace coil {

// A failure every rank of the run takes part in (they all left the collectives together).
class SharedFailure : public Error {
 public:
  SharedFailure(const std::string& message, bool report);
  // True on the one rank that should print the message (the lowest failing rank).
  bool report() const { return report_; }

 private:
  bool report_;
};

// Collective over world: every rank passes its error (null when none). Returns when no rank failed.
// Otherwise, with one rank, rethrows the error as it is; with several, throws SharedFailure on every
// rank (the lowest failing rank's with its own message and report() true).
void fail_together(Communicator& world, std::exception_ptr error);

// Throws naming parallel.dp when dp * tp * sp differs from the world size, or tp / sp > 1.
void check_grid(const RunConfig& config, int world_size);

class TrainParallel {
 public:
  // world: every rank of the run (a SingleCommunicator without MPI). Runs check_grid.
  TrainParallel(const RunConfig& config, CommPtr world);
  TrainParallel(const TrainParallel&) = delete;
  TrainParallel& operator=(const TrainParallel&) = delete;
  ~TrainParallel();

  int dp_rank() const { return dp_->rank(); }
  int dp_size() const { return dp_->size(); }
  bool writer() const { return world_->rank() == 0; }
  Communicator& world() { return *world_; }

  // This rank's model (dp: a full replica).
  std::unique_ptr<LanguageModel> build_model(const ParamOptions& options) const;
  // Collective, after construction and any resume: broadcasts rank 0's parameters (replicas start
  // identical) and sets up the gradient buckets.
  void start(LanguageModel& model);

  // The loss of this rank's part of one micro-batch, to call backward on: the token mean over the
  // GLOBAL micro-batch once averaged over dp (each rank's mean weighted by its share of the
  // non-ignored targets; one small all-reduce when dp > 1), times `scale` (1/grad_accum).
  // last_micro: this micro-batch completes the step (gradient buckets reduce during its backward).
  Tensor micro_loss(const LanguageModel& model, const Batch& batch, Device device, double scale,
                    bool last_micro);
  // After the last micro-batch's backward: the dp-averaged gradients are in every .grad.
  void finish_grads();
  // Mean over the dp ranks of a per-rank value (micro_loss values average to the global loss).
  double mean_over_dp(double local);
  // Collective: checks that every rank passes the same value (an error naming `what` otherwise)
  // and returns it.
  int64_t same_on_all_ranks(int64_t value, const char* what);

 private:
  const RunConfig& config_;
  CommPtr world_, dp_;
  std::unique_ptr<DataParallel> ddp_;
};

}  // namespace coil
