// Checkpoint bridge between any sharded layout and full global tensors, by parameter name (the
// names of the single-rank LanguageModel, so a checkpoint written under one dp / tp / sp layout loads
// under any other, or into a plain LanguageModel with load_state_dict). Collective over the model's
// tp group (and the ZeRO group where given): call on every rank; every rank gets the full tensors, so
// rank 0 alone may write them.
//
//   // save
//   StateDict params = gather_full_parameters(model);
//   StateDict m = gather_full_tensors(model, zero.local_state("m"));   // ZeRO-1
//   StateDict m = gather_full_tensors(model, local_m_by_param_name);    // plain AdamW (trainer's m)
//   // load (any layout)
//   load_full_parameters(model, params);
//   zero.load_local_state("m", shard_full_tensors(model, m));
//   zero.load_local_state("master", shard_full_tensors(model, params));  // master = parameters
#pragma once

#include "layers/module.h"
#include "parallel/sharded_model.h"

namespace coil {

// Every parameter as its full (V, C), (3HD, C), ... tensor.
StateDict gather_full_parameters(const ParallelLanguageModel& model);
// Tensors shaped like this rank's parameters (optimizer moments, ...) -> full tensors, by name.
StateDict gather_full_tensors(const ParallelLanguageModel& model, const StateDict& local);
// Full tensors by parameter name -> this rank's slices (shaped like its parameters). Throws naming
// a missing key or a full tensor of the wrong shape.
StateDict shard_full_tensors(const ParallelLanguageModel& model, const StateDict& full);
// Copies this rank's slices of full global parameters into the model.
void load_full_parameters(ParallelLanguageModel& model, const StateDict& full);

}  // namespace coil
