// Learning-rate schedules as pure functions of the step. `step` counts the optimizer updates already
// done (0 for the first update). Warmup is linear and reaches peak_lr on update warmup_steps:
// lr = peak * (step + 1) / warmup_steps for step < warmup_steps. After warmup the lr moves from
// peak_lr to final_lr at decay_end_step (linearly or along a half cosine) and stays there; a run may
// stop before decay_end_step (the paper: warmup 10k, linear decay toward 0 at 1M, stopped at 100k).
#pragma once

#include <cstdint>
#include <string>

namespace coil {

enum class ScheduleKind { Constant, WarmupLinear, WarmupCosine };

struct LRSchedule {
  ScheduleKind kind = ScheduleKind::Constant;
  double peak_lr = 1e-3;
  int64_t warmup_steps = 0;    // ignored by Constant
  int64_t decay_end_step = 0;  // step at which final_lr is reached (> warmup_steps)
  double final_lr = 0.0;       // the floor (min_lr for cosine)

  // Throws coil::Error naming the bad field.
  void validate() const;
};

double lr_at(const LRSchedule& schedule, int64_t step);

// "constant" | "warmup_linear" | "warmup_cosine" (config files); throws naming the string otherwise.
ScheduleKind schedule_kind_from_string(const std::string& s);
const char* schedule_kind_name(ScheduleKind k);

}  // namespace coil
