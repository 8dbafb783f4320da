// Run configs: one YAML file with the sections below, read strictly (trainer/yaml_fields.h: unknown
// keys, wrong types and out-of-range values throw "FILE:LINE: key.path: ..."). Every field but
// model.mixer has a default; `--set a.b=value` overrides are applied to the YAML tree before it is
// read (errors then name the override). run_config_to_yaml gives the resolved config (defaults
// filled in), which is printed at start, stored in every checkpoint and reads back to the same
// config.
//
//   name: tiny-softmax          # run name (default: the file's stem); labels plots
//   model: {...}                # as configs/models/*.yaml (trainer/model_yaml.h)
//   data: {kind: synthetic, period: 8, seed: 1, eval_seed: 2}
//   data: {kind: shards, dir: DIR, train: train, eval: heldout, mode: packed|document,
//          shuffle: true, seed: 1, eval_seed: 2}    # token shards of `coil data tokenize --out DIR`
//   optim: {lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.1, decay: all, clip: 1.0}
//   schedule: {kind: warmup_linear, warmup: 10, decay_end_step: 0 (= train.steps), final_lr: 0}
//   train: {steps, batch_size, seq_len, grad_accum, seed, eval_every, eval_batches, log_every,
//           nan_tolerance, device: cpu|cuda}   # batch_size: the GLOBAL micro-batch (all dp ranks)
//   precision: fp32             # fp32 | bf16 (CUDA only: core/autocast.h bf16 GEMMs, fp32 masters)
//   parallel: {dp: 1, tp: 1, sp: 1, zero1: false}   # dp x tp x sp = the mpirun world size;
//                               # zero1: AdamW state sharded over the dp x sp ranks (parallel/zero.h)
//                               # sp_style: auto | chain | gather | ring | balanced (ParallelConfig)
//   checkpoint: {dir: runs/NAME, every: 0 (end only), keep_last: 3 (0: keep all)}
//   logging: {jsonl: "" (none), peak_tflops: 0 (no MFU)}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layers/config.h"
#include "trainer/schedule.h"

namespace coil {

struct DataConfig {
  std::string kind = "synthetic";  // synthetic | shards
  int64_t period = 8;              // synthetic: length of the repeated pattern
  uint64_t seed = 1;               // training stream (shards: the shuffling seed)
  uint64_t eval_seed = 2;          // held-out stream
  // shards: `train` and `eval` name a split of `dir` (DIR/<split>.shards, the index written by
  // `coil data tokenize`) or, when they contain '*', '?' or end in ".bin", a glob of shard files
  // (relative to dir when dir is set). eval "" : no held-out stream.
  std::string dir;
  std::string train = "train";
  std::string eval = "heldout";
  std::string mode = "packed";  // packed | document (one document per sequence, padding masked)
  bool shuffle = true;          // seeded per-epoch permutation (data/loader.h)
};

struct OptimConfig {
  double lr = 1e-3;  // peak lr of the schedule
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  // Which parameters weight_decay applies to. all: every one (the paper's recipe, spec/models.md
  // section 9); matrices: parameters of 2+ dimensions only (linear and conv weights, embeddings),
  // none on norm weights, biases and the per-head 1-D parameters (A_log, D, dt_bias).
  std::string decay = "all";
  double clip = 1.0;  // global grad-norm clip; 0 disables
};

struct ScheduleConfig {
  std::string kind = "warmup_linear";  // constant | warmup_linear | warmup_cosine
  int64_t warmup = 0;
  int64_t decay_end_step = 0;  // 0: train.steps
  double final_lr = 0.0;
};

struct TrainConfig {
  int64_t steps = 100;
  int64_t batch_size = 8;  // sequences per micro-batch
  int64_t seq_len = 64;
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  uint64_t seed = 0;       // the trainer's Generator (saved in checkpoints)
  int64_t eval_every = 0;  // 0: no held-out loss
  int64_t eval_batches = 4;
  int64_t log_every = 10;
  int64_t nan_tolerance = 5;   // non-finite steps in a row before stopping
  std::string device = "cpu";  // cpu | cuda
};

struct ParallelConfig {
  int64_t dp = 1, tp = 1, sp = 1;
  bool zero1 = false;  // ZeRO-1: fp32 master, m and v sharded over the ranks that share parameters
  // The communicator of a multi-rank run: "nccl" (one process per GPU, collectives on CUDA tensors
  // through NCCL), "mpi" (CUDA tensors staged through host memory; ranks may share a GPU) or
  // "auto" (nccl when train.device is cuda, coil was built with NCCL and the run has more than
  // one rank, unless a node has more ranks than GPUs; mpi otherwise). trainer/train_parallel.h
  // make_run_world resolves it.
  std::string backend = "auto";
  // How sp ranks hand a mixer what the earlier shards left (parallel/sequence.h): "chain" (each rank
  // receives the scan state from rank - 1 and sends its own on; the ranks pipeline layer by layer),
  // "gather" (one all-gather of every shard's K, V or zero-start state), "ring" and "balanced" (softmax
  // only: K, V passed rank to rank; the load-balanced causal split), or "auto": chain for mixers
  // whose state has a fixed size (linear attention with power 1 or 2, Mamba-1, Mamba-2), gather for
  // the others (softmax and 2Mamba-E would pass their growing K, V prefix along the chain).
  std::string sp_style = "auto";
};

struct CheckpointConfig {
  std::string dir;        // default: runs/<name>
  int64_t every = 0;      // 0: only at the end (and on a NaN stop)
  int64_t keep_last = 3;  // 0: keep all
  bool at_end = true;     // false: no checkpoint after the last step (throughput benchmarks)
};

struct LoggingConfig {
  std::string jsonl;         // "" : no metrics file
  double peak_tflops = 0.0;  // the device's peak, for MFU; 0: MFU not reported
  // Count the bytes this rank hands to collectives and sends / receives (every group of the grid,
  // parallel/counting_communicator.h) and report them per step ("comm" in the progress line,
  // comm_bytes_per_step in the metrics), rank 0's count.
  bool count_comm = false;
};

struct RunConfig {
  std::string name;
  std::string source;  // the file it was read from (for messages)
  ModelConfig model;
  DataConfig data;
  OptimConfig optim;
  ScheduleConfig schedule;
  TrainConfig train;
  std::string precision = "fp32";
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LoggingConfig logging;

  // The LR schedule the loop follows (peak = optim.lr; decay_end_step 0 -> train.steps).
  LRSchedule lr_schedule() const;
};

// Reads a run config; `overrides` are "key.path=value" strings (value parsed as YAML).
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides = {});
// The same from YAML text (tests, checkpoints); `file` names it in messages.
RunConfig parse_run_config(const std::string& text, const std::string& file,
                           const std::vector<std::string>& overrides = {});

// The resolved config as YAML (every field, the model fully expanded without its preset).
std::string run_config_to_yaml(const RunConfig& config);
// The model section alone, canonical: two runs have the same model iff these strings are equal.
std::string model_config_to_yaml(const ModelConfig& model);

}  // namespace coil
