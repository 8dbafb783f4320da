// The one place the training loop meets the process grid. Everything that depends on how ranks
// share the work lives here, so the loop itself reads the same on one process and under mpirun:
//   1. model construction (build_model / start: identical replicas or this rank's shard, gradient
//      buckets),
//   2. the loss of a micro-batch (micro_loss: the global mean over every rank's tokens),
//   3. gradient synchronisation and clipping (finish_grads, clip_grad_norm),
//   4. metrics reductions (mean_over_dp) and checkpoints: every rank reads the full tensors of a
//      checkpoint and keeps its part (read_checkpoint); full_tensors gathers them back (collective)
//      and world rank 0 writes, prints and writes metrics (writer()).
// Two layouts:
//   dp only (tp = sp = 1, no zero1): every rank holds a full LanguageModel replica and 1/dp of the
//     rows of the global micro-batch; gradients are averaged over dp in buckets
//     (parallel/data_parallel.h).
//   tp or sp > 1, or parallel.zero1 (sharded()): a ParallelLanguageModel (parallel/sharded_model.h)
//     over the grid of parallel.{dp, tp, sp}; every rank's BatchSource hands out the whole global
//     micro-batch and the model takes its (B/dp, T/sp) block; the loss is the global mean on every
//     rank; gradients are summed over the dp x sp group, Mamba-2's replicated B, C rows over tp,
//     and the clipping norm is the sharded model's global norm. Checkpoints hold the same full
//     tensors by the same names as a single-rank run's, so any checkpoint resumes under any layout.
//   parallel.zero1: ZeroAdamW (parallel/zero.h) instead of AdamW: master weights, m and v sharded
//     over the dp x sp group. The gradients are still summed over the group first (all-reduce):
//     the loop needs their global norm for clipping and the non-finite check before the update,
//     and ZeroAdamW's reduce-scatter happens inside its step; each rank then hands it 1/group of
//     the (clipped) sum, so its reduce-scatter rebuilds the sum. ZeRO-1 here saves optimizer
//     memory, not gradient traffic.
//
// Errors under mpirun: a rank that fails alone must not leave the others waiting in a collective.
// Setup and checkpoint writes end with fail_together (a collective), which makes every rank fail
// together with a SharedFailure: the lowest failing rank's carries its own message (to print), the
// others' say which rank failed (not printed).
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>

#include "core/error.h"
#include "layers/lm.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/sharded_model.h"
#include "parallel/zero.h"
#include "trainer/adamw.h"
#include "trainer/batch_source.h"
#include "trainer/checkpoint.h"
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

// Throws "<config file>: ..." when dp * tp * sp differs from the world size or (tp or sp > 1) the
// model, train.seq_len or train.batch_size do not split over the layout
// (parallel/sharded_model.h validate_parallel_layout names the numbers that disagree).
void check_grid(const RunConfig& config, int world_size);

// parallel.sp_style with "auto" resolved by the model's mixer (as the start banner prints it), and the
// sharded model's options for it.
std::string sp_style_name(const RunConfig& c);
ParallelOptions parallel_options(const RunConfig& c);
// True when the run uses the sharded model (tp or sp > 1, or parallel.zero1).
bool sharded_layout(const RunConfig& config);

// The communicator parallel.backend asks for in a world of world_size ranks: "nccl" or "mpi"
// (auto: nccl when train.device is cuda, coil was built with NCCL and world_size > 1). Throws
// "<config file>: parallel.backend ..." when nccl is asked of a coil built without NCCL.
std::string resolve_backend(const RunConfig& config, int world_size);

// What make_run_world chose: "single" (one process, no communication), "mpi" or "nccl", and why
// when auto did not pick nccl for a multi-rank CUDA run.
struct RunBackend {
  std::string kind, note;
};

// Collective over world: the communicator the run trains with. nccl: a NcclCommunicator over world
// (kept for host values) on `device`, one GPU per rank; shares_gpu: this rank's node has more
// ranks than GPUs (the local rank wrapped around). Then auto falls back to mpi on every rank (the
// only backend that can share a GPU), and an explicit nccl fails on every rank with a message
// naming parallel.backend mpi (as does the GPU check of NcclCommunicator, which also catches ranks
// made to share a GPU by CUDA_VISIBLE_DEVICES). Otherwise world itself. Every rank returns or
// every rank throws (fail_together).
CommPtr make_run_world(const RunConfig& config, const CommPtr& world, Device device, bool shares_gpu,
                       RunBackend* chosen = nullptr);

class TrainParallel {
 public:
  // world: every rank of the run (a SingleCommunicator without MPI). Runs check_grid and, when
  // sharded, builds the process grid (collective).
  TrainParallel(const RunConfig& config, CommPtr world);
  TrainParallel(const TrainParallel&) = delete;
  TrainParallel& operator=(const TrainParallel&) = delete;
  ~TrainParallel();

  bool sharded() const { return grid_ != nullptr; }
  int dp_rank() const { return dp_->rank(); }
  int dp_size() const { return dp_->size(); }
  bool writer() const { return world_->rank() == 0; }
  Communicator& world() { return *world_; }

  // Builds this rank's model (no communication): a full replica, or its ParallelLanguageModel
  // shard, and (without zero1) its AdamW (trainer/train_loop.h make_optimizer). The returned
  // module's parameters are what the optimizer updates (local shapes).
  Module& build_model(const ParamOptions& options);
  Module& model() const;
  // The replica, or the shard's local LanguageModel (test hooks).
  LanguageModel& local_model() const;
  // Parameters of the full (global) model.
  int64_t num_parameters() const;

  // Every rank, no communication: reads a checkpoint of full tensors (any layout wrote it) into this
  // rank's model and optimizer, keeping this rank's slices (zero1: kept until start() makes the
  // optimizer). Nothing is changed when the file does not match (read_checkpoint's checks).
  CheckpointMeta read_checkpoint(const std::string& path, const std::string& expected_model_yaml);
  // Collective, after construction and any resume: broadcasts the parameters over the group of
  // ranks that hold the same ones (replicas start identical), sets up the gradient buckets and
  // (zero1) the sharded optimizer.
  void start();

  // The optimizer: the lr of the next step, dropping gradients, the update.
  void set_lr(double lr);
  void zero_grad();
  void step();

  // The loss of this rank's part of one micro-batch, to call backward on: the token mean over the
  // GLOBAL micro-batch (dp: once averaged over dp, each rank's mean weighted by its share of the
  // non-ignored targets; sharded: the model's global loss, identical on every rank), times `scale`
  // (1/grad_accum). last_micro: this micro-batch completes the step (gradient buckets reduce during
  // its backward).
  Tensor micro_loss(const Batch& batch, Device device, double scale, bool last_micro);
  // After the last micro-batch's backward: every .grad holds this rank's part of the gradient of
  // the global loss.
  void finish_grads();
  // After finish_grads: the global gradient norm (the same on every rank); when max_norm > 0 and the
  // norm exceeds it, every local gradient is scaled by max_norm / (norm + 1e-6) (trainer/clip.h).
  double clip_grad_norm(double max_norm);
  // The global value of a per-rank micro_loss value (dp: the mean over dp; sharded: the value).
  double mean_over_dp(double local);
  // Collective: checks that every rank passes the same value (an error naming `what` otherwise)
  // and returns it.
  int64_t same_on_all_ranks(int64_t value, const char* what);
  // Collective: the full global parameters and AdamW state by name, on every rank (dp: this rank's
  // own tensors, no copy).
  CheckpointTensors full_tensors() const;

 private:
  const RunConfig& config_;
  CommPtr world_, dp_;
  std::unique_ptr<ProcessGrid> grid_;               // sharded only
  std::unique_ptr<LanguageModel> replica_;          // dp only
  std::unique_ptr<ParallelLanguageModel> sharded_;  // sharded only
  std::unique_ptr<DataParallel> ddp_;
  std::unique_ptr<AdamW> adamw_;     // without zero1
  std::unique_ptr<ZeroAdamW> zero_;  // zero1, made by start()
  // zero1 resume: this rank's slices of m and v and the step count, loaded by start().
  StateDict resume_m_, resume_v_;
  int64_t resume_steps_ = 0;
  double lr_ = 0;
};

}  // namespace coil
