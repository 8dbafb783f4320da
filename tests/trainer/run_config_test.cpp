// Run configs: the shipped configs/runs files, the resolved YAML round trip, --set overrides, and
// errors naming file, line and key path (malformed YAML, unknown key, wrong type, out of range, bad
// override, unsupported precision / parallel layout / data kind).
#include "trainer/run_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace coil {
namespace {

namespace fs = std::filesystem;

const char* kBase =
    "name: t\n"           // line 1
    "model:\n"            // 2
    "  mixer: softmax\n"  // 3
    "  vocab: 32\n"       // 4
    "  d_model: 32\n"     // 5
    "  n_layers: 1\n"     // 6
    "  n_heads: 2\n"      // 7
    "  head_dim: 16\n"    // 8
    "  mlp_hidden: 64\n"  // 9
    "optim:\n"            // 10
    "  lr: 1e-3\n"        // 11
    "train:\n"            // 12
    "  steps: 10\n";      // 13

std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    parse_run_config(text, "run.yaml", sets);
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

TEST(RunConfigTest, ShippedRunConfigsLoadAndRoundTrip) {
  const fs::path dir = fs::path(COIL_SOURCE_DIR) / "configs" / "runs";
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    ++n;
    const RunConfig c = load_run_config(entry.path().string());
    EXPECT_EQ(c.name, entry.path().stem().string());
    const std::string yaml = run_config_to_yaml(c);
    const RunConfig again = parse_run_config(yaml, "resolved");
    EXPECT_EQ(run_config_to_yaml(again), yaml) << entry.path();
    EXPECT_EQ(model_config_to_yaml(again.model), model_config_to_yaml(c.model));
  }
  EXPECT_GE(n, 2);
}

TEST(RunConfigTest, DefaultsAndOverrides) {
  const RunConfig c =
      parse_run_config(kBase, "run.yaml",
                       {"optim.lr=3e-4", "optim.betas=[0.8, 0.99]", "train.grad_accum=4",
                        "checkpoint.every=5", "logging.jsonl=out/m.jsonl"});
  EXPECT_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.optim.beta1, 0.8);
  EXPECT_EQ(c.optim.beta2, 0.99);
  EXPECT_EQ(c.train.grad_accum, 4);
  EXPECT_EQ(c.train.steps, 10);
  EXPECT_EQ(c.checkpoint.every, 5);
  EXPECT_EQ(c.checkpoint.dir, "runs/t");  // default from the name
  EXPECT_EQ(c.logging.jsonl, "out/m.jsonl");
  EXPECT_EQ(c.lr_schedule().decay_end_step, 10);  // 0 -> train.steps
  EXPECT_EQ(c.lr_schedule().peak_lr, 3e-4);
  // The resolved text carries the overrides and no preset.
  const std::string yaml = run_config_to_yaml(c);
  EXPECT_NE(yaml.find("lr: 3e-04"), std::string::npos) << yaml;
  // Without a name the file stem names the run.
  std::string unnamed = kBase;
  unnamed = unnamed.substr(unnamed.find('\n') + 1);
  EXPECT_EQ(parse_run_config(unnamed, "dir/my-run.yaml").name, "my-run");
}

TEST(RunConfigTest, ErrorsNameFileLineAndKey) {
  EXPECT_NE(error_of(std::string(kBase) + "train: [\n").find("run.yaml:"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "  bad: [1, 2\n").find("malformed YAML"),
            std::string::npos);
  std::string unknown = kBase;
  unknown.replace(unknown.find("  lr: 1e-3"), 10, "  lrr: 1e-3");
  EXPECT_NE(error_of(unknown).find("run.yaml:11: optim.lrr: unknown key"), std::string::npos)
      << error_of(unknown);
  std::string wrong_type = kBase;
  wrong_type.replace(wrong_type.find("steps: 10"), 9, "steps: ten");
  EXPECT_NE(error_of(wrong_type).find("run.yaml:13: train.steps: expected an integer"),
            std::string::npos)
      << error_of(wrong_type);
  EXPECT_NE(
      error_of(std::string(kBase) + "  batch_size: 0\n").find("train.batch_size: must be >= 1"),
      std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "bogus: 1\n").find("run.yaml:14: bogus: unknown key"),
            std::string::npos);
  EXPECT_NE(error_of("train:\n  steps: 3\n").find("missing section 'model'"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "optim2: {}\n").find("unknown key"), std::string::npos);
  // Model errors come from the shared model reader, with their own line.
  std::string bad_model = kBase;
  bad_model.replace(bad_model.find("vocab: 32"), 9, "vocab: -1");
  EXPECT_NE(error_of(bad_model).find("run.yaml:4: model.vocab: must be >= 1"), std::string::npos)
      << error_of(bad_model);
  EXPECT_NE(error_of(std::string(kBase) + "  warmup: 3\n").find("unknown key"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "schedule: {warmup: 20}\n").find("schedule:"),
            std::string::npos);
}

TEST(RunConfigTest, BadOverridesNameTheOverride) {
  EXPECT_EQ(error_of(kBase, {"train.steps=ten"}),
            "--set train.steps=ten: train.steps: expected an integer, got 'ten'");
  EXPECT_NE(error_of(kBase, {"optim.lrr=1"}).find("--set optim.lrr=1: optim.lrr: unknown key"),
            std::string::npos)
      << error_of(kBase, {"optim.lrr=1"});
  EXPECT_NE(error_of(kBase, {"train.steps"}).find("expected key.path=value"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"optim.lr.x=1"}).find("'optim.lr' is '1e-3', not a mapping"),
            std::string::npos)
      << error_of(kBase, {"optim.lr.x=1"});
  EXPECT_NE(error_of(kBase, {"optim.betas=[0.9"}).find("--set optim.betas=[0.9: malformed"),
            std::string::npos);
  EXPECT_NE(error_of(kBase, {"optim.betas=[0.9, 1.5]"}).find("optim.betas[1]: must be in [0, 1)"),
            std::string::npos);
  // A file error elsewhere is still reported at its line.
  std::string bad = kBase;
  bad.replace(bad.find("steps: 10"), 9, "steps: x");
  EXPECT_NE(error_of(bad, {"optim.lr=1e-4"}).find("run.yaml:13: train.steps"), std::string::npos);
}

TEST(RunConfigTest, UnsupportedSettingsSayWhy) {
  // tp and sp are accepted when the model and the sequence split over them; otherwise the error
  // names the numbers that disagree.
  EXPECT_EQ(error_of(kBase, {"parallel.tp=2"}), "(no error)");
  EXPECT_EQ(error_of(kBase, {"parallel.sp=2"}), "(no error)");
  EXPECT_NE(error_of(kBase, {"parallel.tp=3"}).find("parallel: parallel layout: vocab 32 does not "
                                                    "divide by tp 3"),
            std::string::npos)
      << error_of(kBase, {"parallel.tp=3"});
  EXPECT_NE(error_of(kBase, {"parallel.sp=3"}).find("sequence length 64"), std::string::npos)
      << error_of(kBase, {"parallel.sp=3"});
  // ZeRO-1 has one weight decay for the flat parameter vector.
  EXPECT_EQ(error_of(kBase, {"parallel.zero1=true"}), "(no error)");
  EXPECT_NE(error_of(kBase, {"parallel.zero1=true", "optim.decay=matrices"})
                .find("parallel.zero1: ZeRO-1 applies one weight decay to every parameter"),
            std::string::npos)
      << error_of(kBase, {"parallel.zero1=true", "optim.decay=matrices"});
  // sp_style: ring and balanced split softmax attention only; balanced needs 2 sp equal chunks.
  EXPECT_EQ(error_of(kBase, {"parallel.sp=2", "parallel.sp_style=balanced"}), "(no error)");
  EXPECT_EQ(error_of(kBase, {"parallel.sp=2", "parallel.sp_style=chain"}), "(no error)");
  EXPECT_NE(error_of(kBase, {"parallel.sp_style=rings"}).find("expected one of auto, chain, gather, ring, balanced"),
            std::string::npos)
      << error_of(kBase, {"parallel.sp_style=rings"});
  EXPECT_NE(error_of(kBase, {"model.mixer=linear", "parallel.sp_style=ring"})
                .find("parallel.sp_style: sp_style ring splits softmax attention only; model.mixer is linear"),
            std::string::npos)
      << error_of(kBase, {"model.mixer=linear", "parallel.sp_style=ring"});
  const std::vector<std::string> odd_chunks{"train.seq_len=12", "parallel.sp=4", "parallel.sp_style=balanced"};
  EXPECT_NE(error_of(kBase, odd_chunks)
                .find("parallel.sp_style: sp_style balanced cuts each sequence into 2 sp = 8 equal chunks; "
                      "train.seq_len 12 does not divide"),
            std::string::npos)
      << error_of(kBase, odd_chunks);
  // dp is accepted (the world size is checked when training starts); the global micro-batch must
  // split evenly over it.
  EXPECT_EQ(error_of(kBase, {"parallel.dp=2"}), "(no error)");
  EXPECT_NE(error_of(kBase, {"parallel.dp=3"}).find("train.batch_size: the global micro-batch 8 "
                                                    "must divide by parallel.dp = 3"),
            std::string::npos)
      << error_of(kBase, {"parallel.dp=3"});
  EXPECT_NE(error_of(kBase, {"precision=bf16"}).find("GPUs only"), std::string::npos)
      << error_of(kBase, {"precision=bf16"});
  EXPECT_EQ(error_of(kBase, {"precision=bf16", "train.device=cuda"}), "(no error)");
  EXPECT_NE(error_of(kBase, {"precision=fp16"}).find("expected one of fp32, bf16"),
            std::string::npos);
  EXPECT_NE(error_of(kBase, {"data.kind=shards"}).find("data.kind shards needs data.dir"),
            std::string::npos)
      << error_of(kBase, {"data.kind=shards"});
  EXPECT_NE(error_of(kBase, {"data.kind=shards", "data.dir=x", "data.mode=docs"})
                .find("data.mode: expected one of packed, document"),
            std::string::npos)
      << error_of(kBase, {"data.kind=shards", "data.dir=x", "data.mode=docs"});
  // Globs of shard files need no directory; the resolved YAML keeps the shard keys.
  const RunConfig g = parse_run_config(
      kBase, "run.yaml",
      {"data.kind=shards", "data.train=t/train-*.bin", "data.eval=''", "data.mode=document"});
  EXPECT_EQ(g.data.train, "t/train-*.bin");
  EXPECT_EQ(g.data.eval, "");
  const RunConfig back = parse_run_config(run_config_to_yaml(g), "resolved.yaml");
  EXPECT_EQ(run_config_to_yaml(back), run_config_to_yaml(g));
  EXPECT_EQ(back.data.mode, "document");
}

TEST(RunConfigTest, MissingFileIsAnError) {
  try {
    load_run_config("/nonexistent/run.yaml");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/nonexistent/run.yaml"), std::string::npos);
  }
}

}  // namespace
}  // namespace coil
