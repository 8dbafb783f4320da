// Bad input to `coil train`, end to end through the built binary: malformed YAML, an unknown key, a
// missing or truncated token shard, a truncated or foreign HDF5 file given to --resume, and a
// checkpoint directory of another model config each exit 1 with exactly one line, "error: ...",
// that names the file, key or shard; the checkpoints already there are left byte for byte as they
// were.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/dataset.h"
#include "data/shard.h"
#include "trainer_test_util.h"

namespace coil {
namespace {

namespace fs = std::filesystem;
using trainertest::slurp;

// Exit status and stderr (stdout, the resolved config and progress, is dropped).
std::pair<int, std::string> run_command(const std::string& cmd) { return trainertest::run_command(cmd, false); }

class CliErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coil_cli_errors_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "tok");
    // Two splits of short documents over a vocab of 24 (BOS 20, EOS 21, PAD 22).
    for (const char* split : {"train", "heldout"}) {
      const std::string name = std::string(split) + "-00000.bin";
      ShardWriter w((dir_ / "tok" / name).string(), "test-tok", 24, 20, 21, 22);
      for (int d = 0; d < 40; ++d) {
        std::vector<int32_t> doc(size_t(5 + d % 17));
        for (size_t i = 0; i < doc.size(); ++i) doc[i] = int32_t((d * 7 + i * 3) % 20);
        w.add_document(doc);
      }
      w.finish();
      write_shard_index((dir_ / "tok").string(), split, "test-tok",
                        {{name, w.num_tokens(), w.num_docs()}});
    }
    config_ = dir_ / "run.yaml";
    std::ofstream(config_) << kConfig;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `coil train --config FILE` plus extra arguments, with the run's paths set.
  std::pair<int, std::string> train(const std::string& extra, const fs::path& config = {}) {
    return run_command(std::string("'") + COIL_EXE + "' train --config '" +
                       (config.empty() ? config_ : config).string() + "' --set data.dir=" +
                       (dir_ / "tok").string() + " --set checkpoint.dir=" + (dir_ / "ck").string() +
                       " " + extra);
  }
  // Exit 1 and one line "error: ..." that contains every needle.
  static void expect_one_line_error(const std::pair<int, std::string>& r,
                                    const std::vector<std::string>& needles) {
    EXPECT_EQ(r.first, 1) << r.second;
    EXPECT_EQ(r.second.rfind("error: ", 0), 0u) << r.second;
    EXPECT_EQ(r.second.find('\n'), r.second.size() - 1) << r.second;
    for (const auto& n : needles) EXPECT_NE(r.second.find(n), std::string::npos) << n << " in " << r.second;
  }

  static constexpr const char* kConfig =
      "name: errs\n"
      "model: {mixer: softmax, vocab: 24, d_model: 16, n_layers: 1, n_heads: 2, head_dim: 8,\n"
      "        mlp_hidden: 32}\n"
      "data: {kind: shards, mode: document}\n"
      "schedule: {kind: constant}\n"
      "train: {steps: 4, batch_size: 4, seq_len: 16, eval_every: 2, eval_batches: 1, log_every: 0}\n"
      "checkpoint: {every: 2, keep_last: 0}\n";
  fs::path dir_, config_;
};

TEST_F(CliErrorsTest, ConfigErrors) {
  const fs::path bad = dir_ / "bad.yaml";
  std::ofstream(bad) << "name: x\nmodel: [1, 2\n";
  expect_one_line_error(train("", bad), {bad.string(), "malformed YAML"});
  std::ofstream(bad) << kConfig << "optim: {lr: 1e-3, decay_rate: 2}\n";
  expect_one_line_error(train("", bad), {bad.string() + ":8: optim.decay_rate: unknown key"});
  expect_one_line_error(train("--set data.mode=docs"),
                        {"--set data.mode=docs: data.mode: expected one of packed, document"});
}

TEST_F(CliErrorsTest, MissingAndTruncatedShards) {
  const fs::path shard = dir_ / "tok" / "heldout-00000.bin";
  const std::string bytes = slurp(shard);
  fs::remove(shard);
  expect_one_line_error(train(""), {"token shard '" + shard.string() + "'", "is missing"});
  std::ofstream(shard, std::ios::binary) << bytes.substr(0, bytes.size() - 16);
  expect_one_line_error(train(""), {"token shard '" + shard.string() + "' is truncated"});
  EXPECT_FALSE(fs::exists(dir_ / "ck")) << "a failed start wrote checkpoints";
}

TEST_F(CliErrorsTest, BadCheckpointsAreNamedAndLeftAlone) {
  auto [rc, err] = train("");
  ASSERT_EQ(rc, 0) << err;
  const fs::path ck2 = dir_ / "ck" / "step_00000002.h5", ck4 = dir_ / "ck" / "step_00000004.h5";
  const std::string good2 = slurp(ck2), good4 = slurp(ck4);
  ASSERT_FALSE(good4.empty());
  // Truncated and foreign files given to --resume (outside checkpoint.dir).
  const fs::path trunc = dir_ / "truncated.h5", foreign = dir_ / "foreign.h5";
  std::ofstream(trunc, std::ios::binary) << good4.substr(0, good4.size() / 2);
  std::ofstream(foreign) << "not a checkpoint\n";
  const std::string other_dir = " --set checkpoint.dir=" + (dir_ / "ck_other").string();
  expect_one_line_error(train("--resume " + trunc.string() + other_dir), {trunc.string()});
  expect_one_line_error(train("--resume " + foreign.string() + other_dir),
                        {foreign.string(), "not an HDF5 file"});
  // The checkpoints of another model config: refused by the differing key.
  expect_one_line_error(train("--resume auto --set model.d_model=32 --set train.steps=6"),
                        {ck4.string(), "different model config", "model.d_model"});
  // A fresh start into a directory that holds checkpoints.
  expect_one_line_error(train(""), {"already holds 2 checkpoint(s)", "--resume auto"});
  EXPECT_EQ(slurp(ck2), good2);
  EXPECT_EQ(slurp(ck4), good4);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "ck"), fs::directory_iterator{}), 2);
}

}  // namespace
}  // namespace coil
