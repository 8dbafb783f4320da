// End to end on tiny checkpoints trained in process: every task through `coil eval` (eval_command)
// with small sizes, the results JSON, the heatmap, `coil eval compare`, usage errors; and a model
// trained on the pass-key format scores above chance.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "eval/evaluator.h"
#include "eval/results.h"
#include "eval_test_util.h"
#include "launch/eval_commands.h"
#include "parallel/communicator.h"

namespace coil {
namespace {

using namespace coil::testing;

const char* kSoftmaxTiny =
    "  mixer: softmax\n  vocab: 259\n  d_model: 64\n  n_layers: 2\n  n_heads: 4\n  head_dim: 16\n"
    "  mlp_hidden: 128\n  seed: 0\n";
const char* kTwoMambaTiny =
    "  mixer: linear\n  preset: 2mamba\n  vocab: 259\n  d_model: 32\n  n_layers: 1\n  n_heads: 2\n"
    "  head_dim: 16\n  mlp_hidden: 64\n  seed: 0\n";

// A checkpoint of a few synthetic steps per mixer, and the held-out shards, shared by the tests.
struct Fixture {
  fs::path dir;
  std::string softmax_ckpt, twomamba_ckpt;
  static const Fixture& get() {
    static Fixture f = [] {
      Fixture x;
      x.dir = fresh_dir("e2e");
      write_heldout_shards(x.dir / "shards");
      auto make = [&](const std::string& name, const char* model) {
        RunConfig cfg = tiny_run(x.dir / name, model, 20, 2, 32, 3e-3);
        auto src = make_train_source(cfg);
        return train(cfg, *src, nullptr, TrainOptions{}).last_checkpoint;
      };
      x.softmax_ckpt = make("softmax", kSoftmaxTiny);
      x.twomamba_ckpt = make("2mamba", kTwoMambaTiny);
      return x;
    }();
    return f;
  }
};

int run_cli(const std::vector<std::string>& args, std::string* out_text = nullptr,
            std::string* err_text = nullptr) {
  std::ostringstream out, err;
  const int rc = eval_command(args, out, err);
  if (out_text) *out_text = out.str();
  if (err_text) *err_text = err.str();
  return rc;
}

std::vector<std::string> small_task_args(const Fixture& f, const std::string& ckpt, const std::string& out) {
  return {"--checkpoint", ckpt, "--tasks", "all", "--out", out, "--data", (f.dir / "shards").string(),
          "--eval-data", default_eval_data_dir(), "--limit", "3", "--passkey-lengths", "96,128",
          "--passkey-depths", "0,0.5,1", "--passkey-samples", "2", "--mqar-samples", "4", "--mqar-pairs", "4",
          "--phonebook-entries", "3", "--phonebook-samples", "2", "--decode-contexts", "16,48",
          "--decode-tokens", "4", "--seq-len", "32", "--heldout-tokens", "256", "--max-length", "256"};
}

const TaskResult& task_of(const EvalReport& r, const std::string& name) {
  for (const TaskResult& t : r.tasks)
    if (t.task == name) return t;
  throw std::runtime_error("no task " + name);
}

double metric(const EvalReport& r, const std::string& task, const std::string& name) {
  for (const TaskMetric& m : task_of(r, task).metrics)
    if (m.name == name) return m.value;
  throw std::runtime_error("no metric " + task + "/" + name);
}

TEST(EvalEndToEnd, EveryTaskRunsOnTinyCheckpointsAndCompareShowsBoth) {
  const Fixture& f = Fixture::get();
  std::vector<std::string> files;
  for (const auto& [label, ckpt] :
       {std::pair{"softmax", f.softmax_ckpt}, std::pair{"2mamba", f.twomamba_ckpt}}) {
    SCOPED_TRACE(label);
    const std::string out = (f.dir / (std::string(label) + ".json")).string();
    std::string text, err;
    ASSERT_EQ(run_cli(small_task_args(f, ckpt, out), &text, &err), 0) << text << err;
    EvalReport r = read_report(out);
    EXPECT_EQ(r.tasks.size(), expand_task_list("all").size());
    for (const char* acc_task : {"passkey", "mqar", "phonebook", "phonebook_reversed", "piqa", "arc_easy",
                                        "arc_challenge", "openbook_qa", "boolq", "copa", "siqa", "winogrande",
                                        "lambada_openai"}) {
      const double a = metric(r, acc_task, "acc");
      EXPECT_GE(a, 0.0) << acc_task;
      EXPECT_LE(a, 1.0) << acc_task;
    }
    EXPECT_EQ(task_of(r, "piqa").samples, 3);
    EXPECT_EQ(task_of(r, "passkey").samples, 2 * 3 * 2);
    // A model trained a few steps is close to uniform over 259 tokens: ln 259 = 5.56 nats.
    const double loss = metric(r, "heldout", "loss");
    EXPECT_GT(loss, 3.0);
    EXPECT_LT(loss, 7.0);
    EXPECT_NEAR(metric(r, "heldout", "perplexity"), std::exp(loss), 1e-9 * std::exp(loss));
    // Byte tokens: one byte per predicted token except EOS (none in the first 3 windows of 32).
    EXPECT_NEAR(metric(r, "heldout", "bits_per_byte"), loss / std::log(2.0), 1e-12);
    EXPECT_GT(metric(r, "lambada_openai", "perplexity"), 1.0);
    EXPECT_GT(metric(r, "decode", "tokens_per_second"), 0.0);
    EXPECT_GT(metric(r, "decode", "state_bytes_ctx48"), 0.0);
    EXPECT_NE(text.find("winogrande"), std::string::npos) << "the printed table";
    EXPECT_TRUE(fs::exists(fs::path(out).replace_extension(".passkey.png"))) << err;
    files.push_back(out);
  }
  // The softmax KV cache grows with the context; 2Mamba's state does not.
  EvalReport s = read_report(files[0]), m = read_report(files[1]);
  // 32 more tokens held x 2 (K, V) x 16 (head dim) x 4 heads x 2 layers x 4 bytes.
  EXPECT_EQ(metric(s, "decode", "state_bytes_ctx48") - metric(s, "decode", "state_bytes_ctx16"),
            32.0 * 2 * 16 * 4 * 2 * 4);
  EXPECT_EQ(metric(m, "decode", "state_bytes_ctx48"), metric(m, "decode", "state_bytes_ctx16"));
  std::string table;
  ASSERT_EQ(run_cli({"compare", files[0], files[1]}, &table), 0);
  EXPECT_NE(table.find("softmax"), std::string::npos);
  EXPECT_NE(table.find("2mamba"), std::string::npos);
  EXPECT_NE(table.find("bits_per_byte"), std::string::npos);
}

TEST(EvalEndToEnd, UsageErrorsExitTwoAndBadInputExitsOne) {
  const Fixture& f = Fixture::get();
  std::string out, err;
  EXPECT_EQ(run_cli({"--tasks", "heldout"}, &out, &err), 2);
  EXPECT_NE(err.find("--checkpoint"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"--checkpoint", f.softmax_ckpt, "--tasks", "nosuchtask"}, &out, &err), 2);
  EXPECT_NE(err.find("nosuchtask"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"--checkpoint", f.softmax_ckpt, "--tasks", "mqar", "--limit", "x"}, &out, &err), 2);
  EXPECT_EQ(run_cli({"--bogus"}, &out, &err), 2);
  EXPECT_EQ(run_cli({"--help"}, &out, &err), 0);
  EXPECT_NE(out.find("coil eval compare"), std::string::npos);
  EXPECT_EQ(run_cli({"--checkpoint", (f.dir / "missing.h5").string(), "--tasks", "mqar"}, &out, &err), 1);
  EXPECT_NE(err.find("missing.h5"), std::string::npos) << err;
  // heldout without --data names the flag.
  EXPECT_EQ(run_cli({"--checkpoint", f.softmax_ckpt, "--tasks", "heldout"}, &out, &err), 1);
  EXPECT_NE(err.find("--data"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"compare"}, &out, &err), 2);
  EXPECT_EQ(run_cli({"compare", (f.dir / "nothing.json").string()}, &out, &err), 1);
}

TEST(EvalEndToEnd, GenerateGreedyAndSampled) {
  const Fixture& f = Fixture::get();
  std::string out, err;
  ASSERT_EQ(run_cli({"generate", "--checkpoint", f.twomamba_ckpt, "--prompt", "The river",
                     "--max-new-tokens", "5"},
                    &out, &err), 0) << err;
  EXPECT_EQ(out.rfind("The river", 0), 0u) << out;
  EXPECT_NE(out.find("tokens/s"), std::string::npos) << out;
  ASSERT_EQ(run_cli({"generate", "--checkpoint", f.twomamba_ckpt, "--prompt", "The river",
                     "--temperature", "0.8",
                     "--top-k", "10", "--seed", "3"}, &out, &err), 0) << err;
}

// A tiny softmax model trained on the pass-key format (2-digit keys, 88-token prompts) retrieves the
// key far above chance (1/90 for a 2-digit key without a leading zero).
TEST(EvalPasskey, TrainedModelScoresAboveChance) {
  const fs::path dir = fresh_dir("passkey_train");
  write_heldout_shards(dir / "shards");
  const int64_t ctx = 88, digits = 2;
  RunConfig cfg = tiny_run(dir, kSoftmaxTiny, 250, 8, ctx + digits, 5e-3);
  PasskeySource src(8, ctx, digits, 99);
  TrainResult tr = train(cfg, src, nullptr, TrainOptions{});
  LoadedCheckpoint lc = load_checkpoint_for_eval(tr.last_checkpoint, ParamOptions{});
  EvalOptions o;
  o.tasks = {"passkey"};
  o.data_dir = (dir / "shards").string();
  o.passkey_lengths = {ctx};
  o.passkey_depths = {0.0, 0.5, 1.0};
  o.passkey_samples = 20;
  o.passkey_digits_min = o.passkey_digits_max = digits;
  o.seed = 7;  // prompts the model has not seen (training used seed 99)
  SingleCommunicator world;
  Evaluator ev(*lc.model, lc.config, o, world);
  TaskResult r = ev.run_task("passkey");
  const double chance = 1.0 / 90.0;
  std::cout << "  pass-key acc " << r.metrics[0].value << " (chance " << chance << ", final train loss "
            << tr.steps.back().loss << ")\n";
  EXPECT_GT(r.metrics[0].value, 0.3);
}

}  // namespace
}  // namespace coil

namespace coil {
namespace {

// Result files of lm-eval 0.4 ("acc,none") read as the same metrics, so they compare side by side.
TEST(EvalResults, ReadsItsOwnJsonAndLmEvalStyleFiles) {
  const fs::path dir = fresh_dir("results");
  EvalReport r;
  r.tasks.push_back({"piqa", {{"acc", 0.5, 0.01}, {"acc_norm", 0.625}}, 10, "{\"x\": 1}"});
  r.config = {{"name", json_string("a \"quoted\" name")}};
  {
    std::ofstream f(dir / "a.json");
    f << report_to_json(r);
  }
  {
    std::ofstream f(dir / "b.json");
    f << "{\"results\": {\"piqa\": {\"alias\": \"piqa\", \"acc,none\": 0.75, \"acc_stderr,none\": 0.02}}}";
  }
  EvalReport a = read_report((dir / "a.json").string()), b = read_report((dir / "b.json").string());
  ASSERT_EQ(a.tasks.size(), 1u);
  ASSERT_EQ(a.tasks[0].metrics.size(), 2u);
  EXPECT_EQ(a.tasks[0].metrics[0].value, 0.5);
  EXPECT_EQ(a.tasks[0].metrics[0].stderr_value, 0.01);
  EXPECT_TRUE(std::isnan(a.tasks[0].metrics[1].stderr_value));
  EXPECT_EQ(a.tasks[0].samples, 10);
  ASSERT_EQ(b.tasks[0].metrics.size(), 1u);
  EXPECT_EQ(b.tasks[0].metrics[0].name, "acc");
  EXPECT_EQ(b.tasks[0].metrics[0].stderr_value, 0.02);
  std::ostringstream table;
  print_comparison({a, b}, {"ours", "harness"}, table);
  EXPECT_NE(table.str().find("0.5000 +-0.010"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("0.7500 +-0.020"), std::string::npos) << table.str();
  {
    std::ofstream f(dir / "bad.json");
    f << "{\"results\": [1, 2";
  }
  EXPECT_THROW(read_report((dir / "bad.json").string()), Error);
}

}  // namespace
}  // namespace coil
