// Data parallel: gradients averaged over the dp group in buckets, each reduced as soon as backward has
// produced every gradient in it (AccumulateGrad post-hooks), so communication overlaps the rest of
// backward. Buckets hold parameters in reverse registration order (the order backward reaches them)
// up to bucket_mb each, one dtype per bucket. A bucket is copied into a flat buffer and started with
// Communicator::all_reduce_async (MPI_Iallreduce on CPU; a stream-ordered NCCL call later); finish()
// starts any bucket not yet started (a parameter without a gradient counts as zero), waits for all,
// in order, and copies the averages back into .grad. Every rank must run the same graph, so buckets
// start in the same order everywhere.
//
//   DataParallel ddp(grid.dp(), model.parameters());
//   loss = model.loss(...); loss.backward(); ddp.finish(); optimizer.step();
//
// Gradient accumulation: set_sync(false) for the micro-batches whose gradients only accumulate
// locally, set_sync(true) before the last one.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace coil {

struct DataParallelOptions {
  double bucket_mb = 25.0;  // parameter bytes per bucket (MiB)
  bool average = true;      // false: sum instead of mean
};

class DataParallel {
 public:
  DataParallel(CommPtr dp_group, const std::vector<Tensor>& params,
               const DataParallelOptions& options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Waits for every bucket and writes the reduced gradients into the parameters' .grad. Call after
  // backward, before the optimizer step. With sync off it only resets the per-step state.
  void finish();
  void set_sync(bool sync);
  bool sync() const;

  size_t num_buckets() const;
  // Parameter indices (into the constructor's list) of bucket b, in the order they sit in it.
  std::vector<size_t> bucket_params(size_t b) const;
  // Buckets started from hooks during the last backward (the rest were started by finish()).
  int64_t buckets_started_in_backward() const;

  struct State;  // shared with the hooks

 private:
  std::shared_ptr<State> state_;
};

// Broadcast every parameter from dp rank root (start of training: identical replicas).
void broadcast_parameters(Communicator& dp, const std::vector<Tensor>& params, int root = 0);

// Global mean of a per-rank mean: sum(local_mean * local_count) / sum(local_count) over the group.
// With equal counts everywhere this is the average of the local values.
double reduce_mean(Communicator& group, double local_mean, double local_count = 1.0);
// Element-wise reduction of a few host values (metrics), in f64.
std::vector<double> reduce_values(Communicator& group, const std::vector<double>& values,
                                  ReduceOp op = ReduceOp::Sum);

}  // namespace coil
