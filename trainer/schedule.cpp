// LR schedules: constant, linear warmup + linear decay, linear warmup + cosine decay.
#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace coil {

void LRSchedule::validate() const {
  COIL_CHECK(peak_lr >= 0, "lr schedule: peak_lr must be >= 0, got ", peak_lr);
  if (kind == ScheduleKind::Constant) return;
  COIL_CHECK(warmup_steps >= 0, "lr schedule: warmup_steps must be >= 0, got ", warmup_steps);
  COIL_CHECK(decay_end_step > warmup_steps, "lr schedule: decay_end_step (", decay_end_step,
             ") must be greater than warmup_steps (", warmup_steps, ")");
  COIL_CHECK(final_lr >= 0 && final_lr <= peak_lr, "lr schedule: final_lr must be in [0, peak_lr = ",
             peak_lr, "], got ", final_lr);
}

double lr_at(const LRSchedule& s, int64_t step) {
  COIL_CHECK(step >= 0, "lr_at: step must be >= 0, got ", step);
  if (s.kind == ScheduleKind::Constant) return s.peak_lr;
  s.validate();
  if (step < s.warmup_steps) return s.peak_lr * double(step + 1) / double(s.warmup_steps);
  if (step >= s.decay_end_step) return s.final_lr;
  const double progress =
      double(step - s.warmup_steps) / double(s.decay_end_step - s.warmup_steps);  // [0, 1)
  const double frac = s.kind == ScheduleKind::WarmupLinear
                          ? 1.0 - progress
                          : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return s.final_lr + (s.peak_lr - s.final_lr) * frac;
}

ScheduleKind schedule_kind_from_string(const std::string& str) {
  if (str == "constant") return ScheduleKind::Constant;
  if (str == "warmup_linear") return ScheduleKind::WarmupLinear;
  if (str == "warmup_cosine") return ScheduleKind::WarmupCosine;
  COIL_FAIL("unknown lr schedule '", str, "' (expected constant, warmup_linear or warmup_cosine)");
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::WarmupLinear: return "warmup_linear";
    case ScheduleKind::WarmupCosine: return "warmup_cosine";
  }
  return "?";
}

}  // namespace coil
