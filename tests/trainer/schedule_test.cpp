// LR schedules at their key steps: start, mid-warmup, end of warmup, mid-decay, decay end and after.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "trainer/schedule.h"

namespace coil {
namespace {

LRSchedule make(ScheduleKind kind) {
  LRSchedule s;
  s.kind = kind;
  s.peak_lr = 1.0;
  s.warmup_steps = 10;
  s.decay_end_step = 110;
  s.final_lr = 0.1;
  return s;
}

TEST(Schedule, Constant) {
  LRSchedule s = make(ScheduleKind::Constant);
  for (int64_t step : {0, 5, 9, 10, 60, 110, 100000}) EXPECT_DOUBLE_EQ(lr_at(s, step), 1.0);
}

TEST(Schedule, WarmupLinear) {
  LRSchedule s = make(ScheduleKind::WarmupLinear);
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 0.1);   // first update: 1/10 of peak
  EXPECT_DOUBLE_EQ(lr_at(s, 4), 0.5);   // mid-warmup
  EXPECT_DOUBLE_EQ(lr_at(s, 9), 1.0);   // last warmup update reaches peak
  EXPECT_DOUBLE_EQ(lr_at(s, 10), 1.0);  // decay starts from peak
  EXPECT_DOUBLE_EQ(lr_at(s, 60), 0.55);  // halfway: (1 + 0.1) / 2
  EXPECT_NEAR(lr_at(s, 109), 0.1 + 0.9 / 100, 1e-15);
  EXPECT_DOUBLE_EQ(lr_at(s, 110), 0.1);  // decay end
  EXPECT_DOUBLE_EQ(lr_at(s, 5000), 0.1);  // after: stays at final_lr
}

TEST(Schedule, WarmupCosine) {
  LRSchedule s = make(ScheduleKind::WarmupCosine);
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(s, 4), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(s, 9), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 10), 1.0);
  EXPECT_NEAR(lr_at(s, 35), 0.1 + 0.45 * (1 + std::cos(std::numbers::pi / 4)), 1e-15);
  EXPECT_NEAR(lr_at(s, 60), 0.55, 1e-15);
  EXPECT_NEAR(lr_at(s, 85), 0.1 + 0.45 * (1 + std::cos(3 * std::numbers::pi / 4)), 1e-15);
  EXPECT_DOUBLE_EQ(lr_at(s, 110), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(s, 5000), 0.1);
}

TEST(Schedule, PaperRecipe) {
  // Peak 1e-4, warmup 10k, linear decay toward 0 at 1M, run stopped at 100k.
  LRSchedule s{ScheduleKind::WarmupLinear, 1e-4, 10000, 1000000, 0.0};
  EXPECT_DOUBLE_EQ(lr_at(s, 4999), 0.5e-4);
  EXPECT_DOUBLE_EQ(lr_at(s, 9999), 1e-4);
  EXPECT_NEAR(lr_at(s, 100000), 1e-4 * (1.0 - 90000.0 / 990000.0), 1e-18);
  EXPECT_NEAR(lr_at(s, 505000), 0.5e-4, 1e-18);
  EXPECT_DOUBLE_EQ(lr_at(s, 1000000), 0.0);
}

TEST(Schedule, NoWarmup) {
  LRSchedule s{ScheduleKind::WarmupLinear, 2.0, 0, 4, 0.0};
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 2.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1), 1.5);
  EXPECT_DOUBLE_EQ(lr_at(s, 4), 0.0);
}

TEST(Schedule, InvalidConfigsThrow) {
  LRSchedule s = make(ScheduleKind::WarmupLinear);
  s.decay_end_step = 10;  // not after warmup
  EXPECT_THROW(s.validate(), Error);
  EXPECT_THROW(lr_at(s, 0), Error);
  s = make(ScheduleKind::WarmupCosine);
  s.final_lr = 2.0;  // above peak
  EXPECT_THROW(s.validate(), Error);
  EXPECT_THROW(lr_at(make(ScheduleKind::Constant), -1), Error);
}

TEST(Schedule, KindNames) {
  for (ScheduleKind k :
       {ScheduleKind::Constant, ScheduleKind::WarmupLinear, ScheduleKind::WarmupCosine})
    EXPECT_EQ(schedule_kind_from_string(schedule_kind_name(k)), k);
  try {
    schedule_kind_from_string("cosine_restarts");
    FAIL() << "expected coil::Error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("cosine_restarts"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace coil
