// ZeRO-1: AdamW whose state is sharded over the data-parallel group (grad_group() of a sharded model:
// the dp x sp ranks that hold the same parameters). Every rank's parameters are laid end to end in
// one flat vector (registration order, padded to a multiple of the group size); rank r owns the r-th
// equal block: its fp32 master copy (fp64 when the parameters are fp64), its m and v. A step
// reduce-scatters the flat gradient (SUM, the sharded model's convention: see sharded_model.h),
// updates the owned block with the fused adamw_step, and all-gathers the new parameters. Equal to
// DataParallel (average = false) + AdamW on every rank, with 1 / group of the optimizer memory.
//
//   ZeroAdamW opt(model.grad_group(), model.named_parameters(), hp);
//   loss.backward(); model.finish_tp_grads(); opt.step(); opt.zero_grad();
//
// Every parameter is updated every step (a missing gradient counts as zero); the step counter is
// shared by all parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/ops.h"
#include "layers/module.h"
#include "parallel/communicator.h"

namespace coil {

class ZeroAdamW {
 public:
  // hp.step is ignored (the optimizer counts its own steps).
  ZeroAdamW(CommPtr group, const NamedTensors& params, const AdamWParams& hp);
  void step();
  void zero_grad();
  void set_lr(double lr) { hp_.lr = lr; }
  double lr() const { return hp_.lr; }
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t n) { step_ = n; }

  // Checkpoints. which = "m", "v" or "master": every parameter's tensor of that kind, shaped like the
  // (local) parameter, by parameter name; collective over the group (every rank gets all of them).
  StateDict local_state(const std::string& which) const;
  // The reverse: keeps this rank's block of tensors shaped like the local parameters ("master" also
  // rewrites the parameters). Throws naming a missing key or a wrong shape.
  void load_local_state(const std::string& which, const StateDict& tensors);
  // Flat length of the owned block (tests, memory accounting).
  int64_t shard_numel() const { return shard_; }

 private:
  Tensor& buffer(const std::string& which);
  const Tensor& buffer(const std::string& which) const;
  CommPtr group_;
  NamedTensors params_;
  std::vector<int64_t> offsets_;
  AdamWParams hp_;
  int64_t total_ = 0, padded_ = 0, shard_ = 0, step_ = 0;
  Tensor master_, m_, v_;  // (shard_)
};

}  // namespace coil
