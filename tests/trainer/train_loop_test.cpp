// The training loop: bit-identical resume (in process, after a SIGKILL of a child process mid-run,
// and after a SIGKILL while a checkpoint is being written), non-finite steps skipped and stopping
// with a checkpoint, grad accumulation, held-out loss, JSONL metrics, and the `coil train` /
// `coil checkpoint info` commands.
#include "trainer/train_loop.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "trainer/train_parallel.h"
#include "trainer_test_util.h"

namespace coil {
namespace {

namespace fs = std::filesystem;
using trainertest::fresh_dir;
using trainertest::run_command;
using trainertest::slurp;

// 40 steps of a tiny model with grad accumulation, held-out loss, a checkpoint every 20 steps.
RunConfig tiny_run(const fs::path& dir, const std::string& mixer = "softmax") {
  std::string model =
      mixer == "softmax" ? "  mixer: softmax\n" : "  mixer: linear\n  preset: 2mamba\n";
  const std::string text =
      "name: tiny\n"
      "model:\n" +
      model +
      "  vocab: 32\n  d_model: 32\n  n_layers: 2\n  n_heads: 2\n  head_dim: 16\n"
      "  mlp_hidden: 64\n"
      "data: {kind: synthetic, period: 4, seed: 3, eval_seed: 4}\n"
      "optim: {lr: 1e-2, weight_decay: 0.1, clip: 1.0}\n"
      "schedule: {kind: warmup_cosine, warmup: 5, final_lr: 1e-3}\n"
      "train: {steps: 40, batch_size: 2, seq_len: 16, grad_accum: 2, eval_every: 10,\n"
      "        eval_batches: 2, log_every: 10, nan_tolerance: 3}\n"
      "checkpoint: {every: 20, keep_last: 2}\n";
  return parse_run_config(text, "tiny.yaml",
                          {"checkpoint.dir=" + (dir / "ckpt").string(),
                           "logging.jsonl=" + (dir / "metrics.jsonl").string()});
}

TrainResult run(const RunConfig& c, const std::string& resume, TrainHooks hooks = {},
                std::ostream* out = nullptr) {
  auto train_src = make_train_source(c);
  auto eval_src = make_eval_source(c);
  TrainOptions o;
  o.resume = resume;
  o.out = out;
  o.hooks = std::move(hooks);
  return train(c, *train_src, eval_src.get(), o);
}

// Losses of steps from..to (1-based, inclusive) of a result.
std::vector<double> losses(const TrainResult& r, int64_t from, int64_t to) {
  std::vector<double> v;
  for (const auto& s : r.steps)
    if (s.step >= from && s.step <= to) v.push_back(s.loss);
  return v;
}

// Forks a child that runs `body` and must die of SIGKILL; returns when it has.
void run_child_expect_sigkill(const std::function<void()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(300);  // never hang the suite
    try {
      body();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);  // reaching the end means the kill did not happen
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child exited with status " << status;
}

TEST(TrainLoopTest, ResumeInProcessIsBitIdentical) {
  const fs::path a = fresh_dir("straight"), b = fresh_dir("resumed");
  const TrainResult straight = run(tiny_run(a), "");
  ASSERT_EQ(straight.end_step, 40);
  ASSERT_EQ(straight.steps.size(), 40u);
  EXPECT_LT(straight.steps.back().loss, straight.steps.front().loss);
  ASSERT_EQ(straight.eval_losses.size(), 4u);

  TrainHooks stop;
  stop.stop_after = 20;
  const TrainResult first = run(tiny_run(b), "", stop);
  EXPECT_EQ(first.end_step, 20);
  EXPECT_EQ(losses(first, 1, 20), losses(straight, 1, 20));
  const TrainResult second = run(tiny_run(b), "auto");
  EXPECT_EQ(second.resumed_from, checkpoint_path((b / "ckpt").string(), 20));
  EXPECT_EQ(second.start_step, 20);
  EXPECT_EQ(losses(second, 21, 40), losses(straight, 21, 40));  // bit-identical doubles
  ASSERT_EQ(second.eval_losses.size(), 2u);
  EXPECT_EQ(second.eval_losses.back(), straight.eval_losses.back());
  // keep_last 2: steps 20 and 40.
  const auto kept = list_checkpoints((b / "ckpt").string());
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1].first, 40);

  // The JSONL file has one object per logged step, with the held-out loss where computed.
  std::ifstream jsonl(a / "metrics.jsonl");
  std::string line;
  int lines = 0, evals = 0;
  while (std::getline(jsonl, line)) {
    ++lines;
    EXPECT_EQ(line.front(), '{');
    EXPECT_NE(line.find("\"loss\": "), std::string::npos);
    evals += line.find("\"eval_loss\"") != std::string::npos;
  }
  EXPECT_EQ(lines, 5);  // steps 1, 10, 20, 30, 40
  EXPECT_EQ(evals, 4);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(TrainLoopTest, ResumeAfterSigkillIsBitIdentical) {
  const fs::path a = fresh_dir("kill_straight"), b = fresh_dir("killed");
  // The child is killed at step 27: after checkpoint 20, before checkpoint 40.
  run_child_expect_sigkill([&] {
    TrainHooks hooks;
    hooks.after_step = [](int64_t step, LanguageModel&) {
      if (step == 27) ::kill(::getpid(), SIGKILL);
    };
    run(tiny_run(b, "linear"), "", hooks);
  });
  ASSERT_EQ(list_checkpoints((b / "ckpt").string()).size(), 1u);
  const TrainResult resumed = run(tiny_run(b, "linear"), "auto");
  EXPECT_EQ(resumed.start_step, 20);
  const TrainResult straight = run(tiny_run(a, "linear"), "");
  EXPECT_EQ(losses(resumed, 21, 40), losses(straight, 21, 40));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(TrainLoopTest, KillWhileWritingCheckpointKeepsThePreviousOne) {
  const fs::path a = fresh_dir("wkill_straight"), b = fresh_dir("wkilled");
  run_child_expect_sigkill([&] {
    TrainHooks hooks;
    hooks.checkpoint.before_rename = [](const std::string& tmp) {
      if (tmp.find("step_00000040") != std::string::npos) ::kill(::getpid(), SIGKILL);
    };
    run(tiny_run(b), "", hooks);
  });
  const std::string ckpt20 = checkpoint_path((b / "ckpt").string(), 20);
  ASSERT_TRUE(fs::exists(ckpt20));
  EXPECT_TRUE(fs::exists(checkpoint_path((b / "ckpt").string(), 40) + ".tmp"));
  EXPECT_FALSE(fs::exists(checkpoint_path((b / "ckpt").string(), 40)));
  // Also a damaged newer file under a real name (truncated): resume auto must skip it.
  const std::string bytes = slurp(ckpt20);
  std::ofstream(checkpoint_path((b / "ckpt").string(), 30), std::ios::binary)
      << bytes.substr(0, bytes.size() / 3);

  std::ostringstream log;
  const TrainResult resumed = run(tiny_run(b), "auto", {}, &log);
  EXPECT_EQ(resumed.resumed_from, ckpt20);
  EXPECT_NE(log.str().find("warning: skipping unreadable"), std::string::npos) << log.str();
  const TrainResult straight = run(tiny_run(a), "");
  EXPECT_EQ(losses(resumed, 21, 40), losses(straight, 21, 40));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(TrainLoopTest, NonFiniteStepsAreSkippedThenTheRunStopsWithACheckpoint) {
  const fs::path d = fresh_dir("nan");
  TrainHooks hooks;
  hooks.after_step = [](int64_t step, LanguageModel& model) {
    if (step == 5) model.embedding->named_parameters()[0].second.detach().fill_(NAN);
  };
  std::ostringstream log;
  const TrainResult r = run(tiny_run(d), "", hooks, &log);
  EXPECT_TRUE(r.stopped_non_finite);
  EXPECT_EQ(r.end_step, 8);  // steps 6, 7, 8 non-finite; nan_tolerance 3
  ASSERT_EQ(r.steps.size(), 8u);
  EXPECT_FALSE(r.steps[4].skipped);
  EXPECT_TRUE(r.steps[5].skipped && r.steps[6].skipped && r.steps[7].skipped);
  EXPECT_EQ(r.last_checkpoint, checkpoint_path((d / "ckpt").string(), 8));
  const CheckpointInfo info = inspect_checkpoint(r.last_checkpoint);
  EXPECT_EQ(info.meta.skipped_steps, 3);
  EXPECT_EQ(info.meta.bad_in_a_row, 3);
  EXPECT_NE(log.str().find("stopping: 3 non-finite steps in a row"), std::string::npos)
      << log.str();
  fs::remove_all(d);
}

TEST(TrainLoopTest, FreshRunRefusesADirectoryWithCheckpoints) {
  const fs::path d = fresh_dir("refuse");
  TrainHooks stop;
  stop.stop_after = 20;
  run(tiny_run(d), "", stop);
  const std::string before = slurp(checkpoint_path((d / "ckpt").string(), 20));
  try {
    run(tiny_run(d), "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("--resume auto"), std::string::npos) << e.message();
  }
  // A checkpoint of another model config is refused by name, and left as it was.
  RunConfig other = tiny_run(d);
  other.model.mlp_hidden = 96;
  try {
    run(other, "auto");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("model.mlp_hidden"), std::string::npos) << e.message();
  }
  EXPECT_EQ(slurp(checkpoint_path((d / "ckpt").string(), 20)), before);
  fs::remove_all(d);
}

// optim.decay matrices: norms, biases and the per-head 1-D parameters get no weight decay, every
// matrix the configured one; all (the default, the paper's recipe) decays every parameter.
TEST(TrainLoopTest, WeightDecayGroups) {
  const fs::path d = fresh_dir("decay");
  for (const char* decay : {"all", "matrices"}) {
    RunConfig c = tiny_run(d, "linear");
    c.optim.decay = decay;
    LanguageModel model(c.model);
    const auto opt = make_optimizer(c, model);
    size_t n = 0, undecayed_1d = 0;
    for (size_t g = 0; g < opt->num_groups(); ++g) {
      const double wd = opt->group_params(g).weight_decay;
      for (const Tensor& p : opt->group(g).params) {
        ++n;
        if (std::string(decay) == "all" || p.dim() >= 2) {
          EXPECT_EQ(wd, 0.1) << decay << " group " << opt->group(g).name;
        } else {
          EXPECT_EQ(wd, 0.0) << decay << " group " << opt->group(g).name;
          ++undecayed_1d;
        }
      }
    }
    EXPECT_EQ(n, model.parameters().size());
    if (std::string(decay) == "matrices") {
      // 2 layers x (norm1, norm2 and the mixer's 1-D tensors) + the final norm.
      EXPECT_GE(undecayed_1d, 5u);
      EXPECT_EQ(opt->num_groups(), 2u);
    } else {
      EXPECT_EQ(opt->num_groups(), 1u);
    }
  }
  // Training with it runs and resumes like any other run (the groups are rebuilt from the config).
  RunConfig c = tiny_run(d, "linear");
  c.optim.decay = "matrices";
  c.train.steps = 8;
  c.checkpoint.every = 2;
  auto ts = make_train_source(c);
  TrainOptions o;
  o.hooks.stop_after = 2;
  train(c, *ts, nullptr, o);
  auto ts2 = make_train_source(c);
  o.hooks.stop_after = 0;
  o.resume = "auto";
  EXPECT_EQ(train(c, *ts2, nullptr, o).start_step, 2);
  fs::remove_all(d);
}

TEST(TrainLoopTest, GridErrorsNameTheConfigAndTheNumbers) {
  RunConfig c = tiny_run(fresh_dir("grid"));
  c.parallel.tp = 2;
  std::string msg;
  try {
    check_grid(c, 1);
  } catch (const Error& e) {
    msg = e.message();
  }
  EXPECT_NE(msg.find("tiny.yaml: parallel.dp x tp x sp = 1 x 2 x 1 = 2 rank(s), but the run has 1"),
            std::string::npos)
      << msg;
  c.parallel.tp = 3;  // the world size agrees, the vocab does not split
  msg.clear();
  try {
    check_grid(c, 3);
  } catch (const Error& e) {
    msg = e.message();
  }
  EXPECT_NE(msg.find("tiny.yaml: parallel layout: vocab 32 does not divide by tp 3"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

// parallel.zero1 on one process: the sharded model and ZeroAdamW (a group of one) follow plain
// AdamW's losses, and its checkpoint resumes into the plain run's layout.
TEST(TrainLoopTest, Zero1OnOneProcessEqualsAdamW) {
  for (const std::string mixer : {"softmax", "2mamba"}) {
    const fs::path d = fresh_dir("zero1_" + mixer);
    const RunConfig plain = tiny_run(d / "plain", mixer);
    RunConfig zero = tiny_run(d / "zero", mixer);
    zero.parallel.zero1 = true;
    const TrainResult a = run(plain, "");
    const TrainResult b = run(zero, "");
    ASSERT_EQ(a.steps.size(), b.steps.size());
    for (size_t i = 0; i < a.steps.size(); ++i)
      EXPECT_NEAR(b.steps[i].loss, a.steps[i].loss, 1e-5 * std::abs(a.steps[i].loss))
          << mixer << " step " << a.steps[i].step;
    // The zero1 checkpoint of step 20 (full tensors) continues in the plain layout.
    RunConfig plain2 = tiny_run(d / "plain2", mixer);
    const TrainResult c = run(plain2, (d / "zero" / "ckpt" / "step_00000020.h5").string());
    ASSERT_EQ(c.start_step, 20);
    const std::vector<double> want = losses(a, 21, 40), got = losses(c, 21, 40);
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i])) << mixer << " step " << 21 + i;
  }
}

TEST(TrainLoopTest, CoilTrainAndCheckpointInfoCommands) {
  const fs::path d = fresh_dir("cli");
  const std::string exe = std::string("'") + COIL_EXE + "'";
  const std::string config = std::string(COIL_SOURCE_DIR) + "/configs/runs/tiny-softmax.yaml";
  const std::string sets =
      " --set train.steps=6 --set schedule.warmup=2 --set train.log_every=3"
      " --set train.eval_every=3"
      " --set checkpoint.dir=" +
      (d / "ck").string() + " --set logging.jsonl=" + (d / "m.jsonl").string();
  auto [rc, out] = run_command(exe + " train --config " + config + sets);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("coil train: resolved config"), std::string::npos) << out;
  EXPECT_NE(out.find("step      6/6 | loss"), std::string::npos) << out;
  EXPECT_NE(out.find("held-out loss"), std::string::npos) << out;
  auto [rc2, info] =
      run_command(exe + " checkpoint info " + checkpoint_path((d / "ck").string(), 6));
  ASSERT_EQ(rc2, 0) << info;
  EXPECT_NE(info.find("step             6"), std::string::npos) << info;
  EXPECT_NE(info.find("/params/embedding.weight f32 (256, 64)"), std::string::npos) << info;
  EXPECT_NE(info.find("/optim/m/lm_head.weight f32 (256, 64)"), std::string::npos) << info;
  // Resume auto with more steps continues; a bad override is a one-line error naming it.
  auto [rc3, out3] =
      run_command(exe + " train --config " + config + sets + " --set train.steps=8 --resume auto");
  EXPECT_EQ(rc3, 0) << out3;
  EXPECT_NE(out3.find("at step 6"), std::string::npos) << out3;
  auto [rc4, err] = run_command(exe + " train --config " + config + " --set train.steps=x");
  EXPECT_EQ(rc4, 1);
  EXPECT_EQ(err, "error: --set train.steps=x: train.steps: expected an integer, got 'x'\n");
  auto [rc5, err5] = run_command(exe + " checkpoint info " + config);
  EXPECT_EQ(rc5, 1);
  EXPECT_NE(err5.find("not an HDF5 file"), std::string::npos) << err5;
  auto [rc6, err6] = run_command(exe + " train");
  EXPECT_EQ(rc6, 2) << err6;
  fs::remove_all(d);
}

}  // namespace
}  // namespace coil
