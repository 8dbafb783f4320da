// HDF5 checkpoints: exact round trip of parameters, moments, step counts, RNG and source states and
// config text; atomic writes (a crash before the rename leaves only a .tmp); keep_last; resume-auto
// selection skipping *.tmp and damaged files; one-line errors for truncated, foreign and
// wrong-model files that leave every existing checkpoint untouched.
#include "trainer/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "layers/lm.h"
#include "trainer/adamw.h"
#include "trainer/batch_source.h"
#include "trainer/run_config.h"
#include "trainer_test_util.h"

namespace coil {
namespace {

namespace fs = std::filesystem;
using trainertest::fresh_dir;
using trainertest::slurp;

ModelConfig tiny_model(int64_t d_model = 32, uint64_t seed = 0) {
  ModelConfig c;
  c.vocab = 32;
  c.d_model = d_model;
  c.n_layers = 2;
  c.n_heads = 2;
  c.head_dim = d_model / 2;
  c.mlp_hidden = 2 * d_model;
  c.seed = seed;
  return c;
}

// A model and optimizer after a few real steps (non-zero moments, step counts).
struct Trained {
  LanguageModel model;
  AdamW opt;
  explicit Trained(const ModelConfig& c) : model(c), opt(model.parameters(), AdamWOptions{}) {
    SyntheticSource src(2, 8, c.vocab, 4, 7);
    for (int i = 0; i < 3; ++i) {
      opt.zero_grad();
      Batch b = src.next_batch();
      model.loss(b.ids, b.targets).backward();
      opt.step();
    }
  }
};

CheckpointMeta sample_meta(const ModelConfig& c) {
  CheckpointMeta m;
  m.step = 3;
  m.tokens = 48;
  m.skipped_steps = 1;
  m.bad_in_a_row = 0;
  m.config_yaml = "name: \"x\"\ntrain:\n  steps: 3\n";
  m.model_config_yaml = model_config_to_yaml(c);
  m.schedule.kind = ScheduleKind::WarmupCosine;
  m.schedule.peak_lr = 3e-4;
  m.schedule.warmup_steps = 2;
  m.schedule.decay_end_step = 100;
  m.schedule.final_lr = 1e-5;
  m.rng["trainer"] = {42, 123456789012345ull};
  m.sources["train"] = {
      {"kind", std::string("synthetic")}, {"batches", int64_t(3)}, {"big", int64_t(1) << 40}};
  m.sources["eval"] = {{"kind", std::string("synthetic")}, {"batches", int64_t(0)}};
  return m;
}

void expect_bits_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  EXPECT_EQ(a.to_vector(), b.to_vector()) << what;
}

TEST(CheckpointTest, RoundTripIsExact) {
  const fs::path dir = fresh_dir("roundtrip");
  const ModelConfig c = tiny_model();
  Trained a(c);
  a.opt.state(0, 0).step = 2;  // per-parameter counts may differ from the global one
  const CheckpointMeta meta = sample_meta(c);
  const std::string path = checkpoint_path(dir.string(), 3);
  write_checkpoint(path, a.model, a.opt, meta);
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  LanguageModel model(tiny_model(32, /*seed=*/9));  // other initial values
  AdamW opt(model.parameters(), AdamWOptions{});
  const CheckpointMeta got = read_checkpoint(path, model, opt, model_config_to_yaml(c));
  const auto pa = a.model.named_parameters(), pb = model.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    expect_bits_equal(pa[i].second, pb[i].second, pa[i].first);
    expect_bits_equal(a.opt.state(0, i).m, opt.state(0, i).m, "m " + pa[i].first);
    expect_bits_equal(a.opt.state(0, i).v, opt.state(0, i).v, "v " + pa[i].first);
    EXPECT_EQ(a.opt.state(0, i).step, opt.state(0, i).step) << pa[i].first;
  }
  EXPECT_EQ(opt.step_count(), 3);
  EXPECT_EQ(got.step, 3);
  EXPECT_EQ(got.tokens, 48);
  EXPECT_EQ(got.skipped_steps, 1);
  EXPECT_EQ(got.config_yaml, meta.config_yaml);
  EXPECT_EQ(got.model_config_yaml, meta.model_config_yaml);
  EXPECT_EQ(got.schedule.kind, ScheduleKind::WarmupCosine);
  EXPECT_EQ(got.schedule.peak_lr, 3e-4);
  EXPECT_EQ(got.schedule.warmup_steps, 2);
  EXPECT_EQ(got.schedule.decay_end_step, 100);
  EXPECT_EQ(got.schedule.final_lr, 1e-5);
  EXPECT_EQ(got.rng, meta.rng);
  EXPECT_EQ(got.sources, meta.sources);

  const CheckpointInfo info = inspect_checkpoint(path);
  EXPECT_EQ(info.format_version, kCheckpointFormatVersion);
  EXPECT_EQ(info.tensors.size(), 3 * pa.size());
  bool found = false;
  for (const auto& t : info.tensors)
    if (t.path == "/params/layers.1.mixer.qkv.weight" || t.path == "/params/embedding.weight")
      found = true;
  EXPECT_TRUE(found);
  fs::remove_all(dir);
}

TEST(CheckpointTest, CrashBeforeRenameLeavesPreviousCheckpoint) {
  const fs::path dir = fresh_dir("crash");
  const ModelConfig c = tiny_model();
  Trained a(c);
  CheckpointMeta meta = sample_meta(c);
  write_checkpoint(checkpoint_path(dir.string(), 3), a.model, a.opt, meta);
  const std::string before = slurp(checkpoint_path(dir.string(), 3));
  CheckpointWriteHooks crash;
  crash.before_rename = [](const std::string&) { throw std::runtime_error("simulated crash"); };
  meta.step = 4;
  EXPECT_THROW(write_checkpoint(checkpoint_path(dir.string(), 4), a.model, a.opt, meta, crash),
               std::runtime_error);
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.string(), 4) + ".tmp"));
  EXPECT_FALSE(fs::exists(checkpoint_path(dir.string(), 4)));
  EXPECT_EQ(list_checkpoints(dir.string()).size(), 1u);
  EXPECT_EQ(latest_complete_checkpoint(dir.string()), checkpoint_path(dir.string(), 3));
  EXPECT_EQ(slurp(checkpoint_path(dir.string(), 3)), before);
  fs::remove_all(dir);
}

TEST(CheckpointTest, KeepLastDeletesOnlyOlderCompleteFiles) {
  const fs::path dir = fresh_dir("keep");
  const ModelConfig c = tiny_model();
  Trained a(c);
  CheckpointMeta meta = sample_meta(c);
  for (int64_t s = 1; s <= 5; ++s) {
    meta.step = s;
    write_checkpoint(checkpoint_path(dir.string(), s), a.model, a.opt, meta);
    prune_checkpoints(dir.string(), 2);
  }
  const auto left = list_checkpoints(dir.string());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].first, 4);
  EXPECT_EQ(left[1].first, 5);
  fs::remove_all(dir);
}

TEST(CheckpointTest, TruncatedForeignAndWrongModelFilesGiveOneLineErrors) {
  const fs::path dir = fresh_dir("bad");
  const ModelConfig c = tiny_model();
  Trained a(c);
  const CheckpointMeta meta = sample_meta(c);
  const std::string good = checkpoint_path(dir.string(), 3);
  write_checkpoint(good, a.model, a.opt, meta);
  const std::string good_bytes = slurp(good);

  // A truncated copy under a newer step number.
  const std::string truncated = checkpoint_path(dir.string(), 7);
  {
    std::ofstream o(truncated, std::ios::binary);
    o << good_bytes.substr(0, good_bytes.size() / 2);
  }
  // A text file renamed .h5.
  const std::string foreign = checkpoint_path(dir.string(), 9);
  {
    std::ofstream o(foreign);
    o << "this is not a checkpoint\n";
  }
  LanguageModel model(c);
  AdamW opt(model.parameters(), AdamWOptions{});
  auto message_of = [&](const std::string& path, const std::string& expected_yaml) {
    try {
      read_checkpoint(path, model, opt, expected_yaml);
    } catch (const Error& e) {
      return e.message();
    }
    return std::string("(no error)");
  };
  const std::string m_trunc = message_of(truncated, "");
  EXPECT_NE(m_trunc.find(truncated), std::string::npos) << m_trunc;
  EXPECT_EQ(m_trunc.find('\n'), std::string::npos) << m_trunc;
  const std::string m_foreign = message_of(foreign, "");
  EXPECT_NE(m_foreign.find("not an HDF5 file"), std::string::npos) << m_foreign;
  EXPECT_NE(m_foreign.find(foreign), std::string::npos) << m_foreign;
  EXPECT_NE(message_of(dir.string() + "/missing.h5", "").find("no such file"), std::string::npos);

  // The stored model config differs: the error names the first differing key.
  const std::string m_model = message_of(good, model_config_to_yaml(tiny_model(64)));
  EXPECT_NE(m_model.find("different model config"), std::string::npos) << m_model;
  EXPECT_NE(m_model.find("model.d_model"), std::string::npos) << m_model;
  EXPECT_EQ(m_model.find('\n'), std::string::npos) << m_model;
  // Keys that choose only how the same function is computed do not count: a run may resume with
  // recompute on, another linear form or other chunk lengths.
  ModelConfig how = c;
  how.recompute = !c.recompute;
  how.linear.form = "chunked";
  how.linear.chunk_size = 7;
  how.mamba2.chunk_size = 5;
  EXPECT_EQ(message_of(good, model_config_to_yaml(how)), "(no error)");
  how.n_heads *= 2;  // ... but the rest still does, named as before
  EXPECT_NE(message_of(good, model_config_to_yaml(how)).find("model.n_heads"), std::string::npos)
      << message_of(good, model_config_to_yaml(how));
  // Without the config check, the tensor check still catches a different shape.
  LanguageModel wide(tiny_model(64));
  AdamW wide_opt(wide.parameters(), AdamWOptions{});
  try {
    read_checkpoint(good, wide, wide_opt, "");
    ADD_FAILURE() << "loading a 32-wide checkpoint into a 64-wide model did not throw";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/params/"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("this model has"), std::string::npos) << e.message();
  }

  // resume auto skips the damaged newer files and picks the complete one.
  std::vector<std::string> skipped;
  EXPECT_EQ(latest_complete_checkpoint(dir.string(), &skipped), good);
  EXPECT_EQ(skipped.size(), 2u);
  EXPECT_EQ(slurp(good), good_bytes);  // nothing was written to the good file
  fs::remove_all(dir);
}

TEST(CheckpointTest, ListIgnoresTmpAndOtherFiles) {
  const fs::path dir = fresh_dir("list");
  for (const char* name : {"step_00000010.h5", "step_00000020.h5.tmp", "notes.txt", "step_x.h5"})
    std::ofstream(dir / name) << "x";
  const auto all = list_checkpoints(dir.string());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].first, 10);
  EXPECT_EQ(latest_complete_checkpoint(dir.string()), "");  // the one file is not HDF5
  EXPECT_TRUE(list_checkpoints((dir / "absent").string()).empty());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace coil
