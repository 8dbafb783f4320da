// The CPU training demo behind `coil demo`: a tiny softmax LM overfits one fixed synthetic batch with
// AdamW + linear warmup/decay + clipping. It exercises the whole stack (ops, autograd, layers,
// optimizer) in seconds, and the same pieces back the layers' overfit acceptance test.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "core/tensor.h"
#include "layers/config.h"

namespace coil {

// A batch of B rows; row b repeats a random pattern of `period` tokens drawn from Generator(seed).
// ids (B, T) i32 and targets (B, T) i32 = ids shifted left by one (next-token prediction).
struct TokenBatch {
  Tensor ids;      // (B, T) i32
  Tensor targets;  // (B, T) i32
};
TokenBatch make_repeat_batch(int64_t B, int64_t T, int64_t vocab, int64_t period, uint64_t seed);

// The tiny model of the demo: 2 layers, d 64, 4 heads of 16, vocab 64, MLP 128.
ModelConfig demo_model_config(uint64_t seed);

struct DemoOptions {
  std::string config_path;  // a model YAML (configs/models/*.yaml); empty: demo_model_config(seed)
  int64_t steps = 200;
  uint64_t seed = 0;
  int64_t log_every = 10;  // progress line every K steps (and on the last); <= 0: silent
  int64_t batch = 4, seq_len = 32, period = 8;
  double peak_lr = 1e-2, final_lr = 1e-3, weight_decay = 0.0, clip = 1.0;
  int64_t warmup_steps = 10;
};

struct DemoResult {
  double initial_loss = 0, final_loss = 0, seconds = 0;
};

// Trains and returns the loss before the first and after the last update (both measured on the
// batch), printing progress lines to out.
DemoResult run_demo(const DemoOptions& options, std::ostream& out);

}  // namespace coil
