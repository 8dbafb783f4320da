// Acceptance: a tiny softmax LM (2 layers, d 64, 4 heads of 16, vocab 64) overfits one fixed batch of
// 4 x 32 tokens on the CPU with AdamW + warmup/decay + clipping: the final loss is below 10% of the
// initial one.
#include <gtest/gtest.h>

#include <chrono>

#include "core/autograd/grad_mode.h"
#include "layers/lm.h"
#include "trainer/adamw.h"
#include "trainer/clip.h"
#include "trainer/demo.h"
#include "trainer/schedule.h"

namespace coil {
namespace {

TEST(Overfit, TinyLMOverfitsOneBatch) {
  const ModelConfig c = demo_model_config(0);
  ASSERT_EQ(c.n_layers, 2);
  ASSERT_EQ(c.d_model, 64);
  LanguageModel model(c);
  TokenBatch batch = make_repeat_batch(4, 32, c.vocab, 8, 1);
  AdamW opt(model.parameters(), AdamWOptions{});
  const int64_t steps = 60;  // the loss crosses 10% near step 12; margin for slow CI machines
  LRSchedule sched{ScheduleKind::WarmupLinear, 1e-2, 10, steps, 1e-3};

  const auto start = std::chrono::steady_clock::now();
  double initial = 0;
  for (int64_t step = 0; step < steps; ++step) {
    opt.set_lr(lr_at(sched, step));
    opt.zero_grad();
    Tensor loss = model.loss(batch.ids, batch.targets);
    if (step == 0) initial = loss.item();
    loss.backward();
    clip_grad_norm(model.parameters(), 1.0);
    opt.step();
  }
  NoGradGuard no_grad;
  const double final_loss = model.loss(batch.ids, batch.targets).item();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("initial_loss", std::to_string(initial));
  RecordProperty("final_loss", std::to_string(final_loss));
  std::printf("initial loss %.4f, final loss %.4f after %lld steps in %.2f s\n", initial,
              final_loss, (long long)steps, secs);
  EXPECT_LT(final_loss, 0.1 * initial);
}

}  // namespace
}  // namespace coil
