// HDF5 checkpoints (DESIGN.md "Checkpoints"). One file per checkpoint, `<dir>/step_<8 digits>.h5`,
// written as `<name>.tmp`, flushed, closed, fsync'ed and renamed, so a crash never leaves a
// half-written file under a real name. Layout (every tensor full and global, by state-dict name):
//   /params/<name>          the fp32 master weights (the parameter's dtype: f32, or f64 in tests)
//   /optim/m/<name>, /optim/v/<name>   AdamW moments; attribute `step` on /optim/m/<name>: the
//                           parameter's own update count (bias correction)
//   /optim                  attribute step_count (optimizer steps)
//   /schedule               attributes kind, peak_lr, warmup_steps, decay_end_step, final_lr
//   /rng/<stream>           attributes seed, offset (core/random.h Generator state)
//   /data/<stream>          the BatchSource state, one attribute per key (int64 or string)
//   /                       attributes format ("coil-checkpoint"), format_version, step, tokens,
//                           skipped_steps, bad_in_a_row, config_yaml (resolved run config),
//                           model_config_yaml (canonical model section: what loading compares)
// Every HDF5 call is checked; errors are one-line coil::Errors naming the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "layers/module.h"
#include "trainer/adamw.h"
#include "trainer/batch_source.h"
#include "trainer/schedule.h"

namespace coil {

constexpr int64_t kCheckpointFormatVersion = 1;

// Everything but the tensors.
struct CheckpointMeta {
  int64_t step = 0;           // optimizer steps done (the loop resumes at this step)
  int64_t tokens = 0;         // training tokens consumed
  int64_t skipped_steps = 0;  // non-finite steps skipped so far
  int64_t bad_in_a_row = 0;   // non-finite steps in a row at save time
  std::string config_yaml;
  std::string model_config_yaml;
  LRSchedule schedule;
  std::map<std::string, std::pair<uint64_t, uint64_t>> rng;  // stream -> (seed, offset)
  std::map<std::string, SourceState> sources;                // stream -> state
};

struct CheckpointWriteHooks {
  std::function<void(const std::string& tmp_path)> before_rename;  // tests: crash mid-write
};

// The tensors of a checkpoint: full global parameters (registration order) and each one's AdamW
// state by parameter name. A sharded run gathers these from its ranks (trainer/train_parallel.h).
struct CheckpointTensors {
  NamedTensors params;
  std::map<std::string, AdamWParamState> optim;  // m, v (shaped like the parameter) and its step
  int64_t step_count = 0;                        // optimizer steps
};

// Writes model + optimizer + meta to `path` atomically. Every model parameter must be in `opt`.
void write_checkpoint(const std::string& path, const Module& model, const AdamW& opt,
                      const CheckpointMeta& meta, const CheckpointWriteHooks& hooks = {});
// The same from tensors by name (every parameter must have its optim entry).
void write_checkpoint(const std::string& path, const CheckpointTensors& tensors,
                      const CheckpointMeta& meta, const CheckpointWriteHooks& hooks = {});

// Validates the file (format version, model config equal to `expected_model_yaml` when not empty,
// every tensor present with the right shape and dtype), reads every tensor, and only then copies
// them into model and opt. Returns the meta. Nothing is written to the file.
CheckpointMeta read_checkpoint(const std::string& path, Module& model, AdamW& opt,
                               const std::string& expected_model_yaml);

// `coil checkpoint info`: the meta and every dataset (path, dtype, shape) without a model.
struct CheckpointTensorInfo {
  std::string path;  // "/params/embedding.weight"
  std::string dtype;
  std::vector<int64_t> shape;
};
struct CheckpointInfo {
  int64_t format_version = 0;
  CheckpointMeta meta;
  std::vector<CheckpointTensorInfo> tensors;
};
CheckpointInfo inspect_checkpoint(const std::string& path);

// "<dir>/step_00000020.h5"
std::string checkpoint_path(const std::string& dir, int64_t step);
// Final-named checkpoints of a directory (no *.tmp), oldest first, as (step, path).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
// The newest checkpoint of dir that opens and reads as a complete coil checkpoint; "" when none.
// Unreadable newer files are skipped (their errors appended to `skipped` when given).
std::string latest_complete_checkpoint(const std::string& dir,
                                       std::vector<std::string>* skipped = nullptr);
// Deletes all but the newest `keep_last` final-named checkpoints (keep_last <= 0: none).
void prune_checkpoints(const std::string& dir, int64_t keep_last);

}  // namespace coil
