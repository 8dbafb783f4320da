// The training demo: synthetic batch, tiny LM, AdamW loop with progress lines.
#include "trainer/demo.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ostream>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/random.h"
#include "layers/lm.h"
#include "trainer/model_yaml.h"
#include "trainer/adamw.h"
#include "trainer/clip.h"
#include "trainer/schedule.h"

namespace coil {

TokenBatch make_repeat_batch(int64_t B, int64_t T, int64_t vocab, int64_t period, uint64_t seed) {
  COIL_CHECK(B > 0 && T > 0 && vocab > 0 && period > 0, "make_repeat_batch: sizes must be positive");
  Generator gen(seed);
  std::vector<int64_t> ids, targets;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> pattern(period);
    for (auto& p : pattern) p = std::min<int64_t>(vocab - 1, int64_t(gen.next_uniform() * vocab));
    for (int64_t t = 0; t < T; ++t) {
      ids.push_back(pattern[t % period]);
      targets.push_back(pattern[(t + 1) % period]);
    }
  }
  return {Tensor::from_ints(ids, {B, T}), Tensor::from_ints(targets, {B, T})};
}

ModelConfig demo_model_config(uint64_t seed) {
  ModelConfig c;
  c.vocab = 64;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.head_dim = 16;
  c.mlp_hidden = 128;
  c.seed = seed;
  return c;
}

DemoResult run_demo(const DemoOptions& o, std::ostream& out) {
  COIL_CHECK(o.steps > 0, "demo: --steps must be positive, got ", o.steps);
  const ModelConfig config =
      o.config_path.empty() ? demo_model_config(o.seed) : load_model_config(o.config_path);
  LanguageModel model(config);
  TokenBatch batch = make_repeat_batch(o.batch, o.seq_len, config.vocab, o.period, o.seed + 1);

  AdamWOptions aopt;
  aopt.weight_decay = o.weight_decay;
  AdamW opt(model.parameters(), aopt);
  LRSchedule sched;
  sched.kind = ScheduleKind::WarmupLinear;
  sched.peak_lr = o.peak_lr;
  sched.final_lr = o.final_lr;
  sched.warmup_steps = std::min(o.warmup_steps, o.steps - 1);
  sched.decay_end_step = o.steps;

  char line[256];
  if (o.log_every > 0) {
    std::snprintf(line, sizeof line,
                  "coil demo: %s LM, %lld layers, d %lld, %lld heads x %lld, vocab %lld, "
                  "%lld parameters; batch %lld x %lld tokens, %lld steps\n",
                  config.mixer == "linear" ? ("linear/" + config.linear.power).c_str()
                                           : config.mixer.c_str(),
                  (long long)config.n_layers, (long long)config.d_model, (long long)config.n_heads,
                  (long long)config.head_dim, (long long)config.vocab,
                  (long long)model.num_parameters(), (long long)o.batch, (long long)o.seq_len,
                  (long long)o.steps);
    out << line << std::flush;
  }

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  const int64_t tokens_per_step = o.batch * o.seq_len;
  DemoResult result;
  for (int64_t step = 0; step < o.steps; ++step) {
    const double lr = lr_at(sched, step);
    opt.set_lr(lr);
    opt.zero_grad();
    Tensor loss = model.loss(batch.ids, batch.targets);
    loss.backward();
    const double norm = clip_grad_norm(model.parameters(), o.clip);
    opt.step();
    const double loss_value = loss.item();
    if (step == 0) result.initial_loss = loss_value;
    window_tokens += tokens_per_step;
    const bool last = step + 1 == o.steps;
    if (o.log_every > 0 && ((step + 1) % o.log_every == 0 || last || step == 0)) {
      const auto now = Clock::now();
      const double window_s = std::chrono::duration<double>(now - window_start).count();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      std::snprintf(line, sizeof line,
                    "step %5lld/%lld | loss %.4f | grad norm %.3f | lr %.2e | %.0f tok/s | %.2f s\n",
                    (long long)(step + 1), (long long)o.steps, loss_value, norm, lr,
                    window_tokens / std::max(window_s, 1e-9), elapsed);
      out << line << std::flush;
      window_start = now;
      window_tokens = 0;
    }
  }
  {
    NoGradGuard no_grad;
    result.final_loss = model.loss(batch.ids, batch.targets).item();
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (o.log_every > 0) {
    std::snprintf(line, sizeof line,
                  "initial loss %.4f -> final loss %.4f (%.1f%% of initial) in %.2f s\n",
                  result.initial_loss, result.final_loss,
                  100.0 * result.final_loss / result.initial_loss, result.seconds);
    out << line << std::flush;
  }
  return result;
}

}  // namespace coil
