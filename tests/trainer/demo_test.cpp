// The demo's synthetic batch and a short demo run (the `coil demo` code path).
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "trainer/demo.h"

namespace coil {
namespace {

TEST(Demo, RepeatBatchIsShiftedAndPeriodic) {
  TokenBatch b = make_repeat_batch(3, 20, 50, 6, 7);
  ASSERT_EQ(b.ids.shape(), (Shape{3, 20}));
  ASSERT_EQ(b.targets.shape(), (Shape{3, 20}));
  EXPECT_EQ(b.ids.dtype(), DType::I32);
  std::vector<int64_t> ids = b.ids.to_ints(), tg = b.targets.to_ints();
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t t = 0; t < 20; ++t) {
      EXPECT_GE(ids[r * 20 + t], 0);
      EXPECT_LT(ids[r * 20 + t], 50);
      if (t + 1 < 20) {
        EXPECT_EQ(tg[r * 20 + t], ids[r * 20 + t + 1]);
      }
      if (t >= 6) {
        EXPECT_EQ(ids[r * 20 + t], ids[r * 20 + t - 6]);
      }
    }
  // Deterministic in the seed.
  EXPECT_EQ(make_repeat_batch(3, 20, 50, 6, 7).ids.to_ints(), ids);
  EXPECT_NE(make_repeat_batch(3, 20, 50, 6, 8).ids.to_ints(), ids);
}

TEST(Demo, ShortRunLowersTheLossAndLogs) {
  DemoOptions o;
  o.steps = 15;
  o.log_every = 5;
  std::ostringstream log;
  DemoResult r = run_demo(o, log);
  EXPECT_LT(r.final_loss, r.initial_loss);
  EXPECT_NEAR(r.initial_loss, std::log(64.0), 0.5);  // near-uniform predictions at init
  EXPECT_NE(log.str().find("step    15/15"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("initial loss"), std::string::npos) << log.str();
}

}  // namespace
}  // namespace coil
