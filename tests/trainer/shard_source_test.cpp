// Training from token shards (data.kind shards): the source hands out the DataLoader's batches
// (packed, and one document per sequence with padding targets -100), dp ranks get row slices of the
// global batch, a run resumes bit-identically with the loader position restored from the
// checkpoint, and a missing index, missing or truncated shard, a vocab larger than the model's or a
// foreign data position are one-line errors naming the file or key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/shard.h"
#include "trainer/shard_source.h"
#include "trainer/train_loop.h"
#include "trainer_test_util.h"

namespace coil {
namespace {

namespace fs = std::filesystem;
using trainertest::fresh_dir;

// Documents of 3..40 tokens over ids [0, 20) in two train shards and one held-out shard, with the
// byte tokenizer's special ids moved into a vocab of 24 (BOS 20, EOS 21, PAD 22).
void write_split(const fs::path& dir, const std::string& split, int shards, int docs, uint64_t seed) {
  Generator g(seed);
  std::vector<ShardIndexEntry> entries;
  for (int s = 0; s < shards; ++s) {
    const std::string name = split + "-0000" + std::to_string(s) + ".bin";
    ShardWriter w((dir / name).string(), "test-tok", 24, 20, 21, 22);
    for (int d = 0; d < docs; ++d) {
      const int len = 3 + int(g.next_uniform() * 38);
      std::vector<int32_t> doc(len);
      for (auto& t : doc) t = int32_t(g.next_uniform() * 20) % 20;
      w.add_document(doc);
    }
    w.finish();
    entries.push_back({name, w.num_tokens(), w.num_docs()});
  }
  write_shard_index(dir.string(), split, "test-tok", entries);
}

fs::path make_shards(const std::string& name) {
  const fs::path d = fresh_dir(name);
  write_split(d, "train", 2, 60, 7);
  write_split(d, "heldout", 1, 20, 8);
  return d;
}

RunConfig shard_run(const fs::path& data, const fs::path& dir, const std::string& mode,
                    std::vector<std::string> sets = {}) {
  const std::string text =
      "name: shards\n"
      "model: {mixer: softmax, vocab: 24, d_model: 16, n_layers: 1, n_heads: 2, head_dim: 8,\n"
      "        mlp_hidden: 32}\n"
      "data: {kind: shards, seed: 5, eval_seed: 6, mode: " + mode + "}\n"
      "optim: {lr: 1e-2}\n"
      "schedule: {kind: constant}\n"
      "train: {steps: 12, batch_size: 4, seq_len: 16, grad_accum: 2, eval_every: 6,\n"
      "        eval_batches: 2, log_every: 0}\n"
      "checkpoint: {every: 6, keep_last: 0}\n";
  // The caller's overrides come last, so they win.
  sets.insert(sets.begin(), {"data.dir=" + data.string(), "checkpoint.dir=" + (dir / "ckpt").string()});
  return parse_run_config(text, "shards.yaml", sets);
}

std::vector<int32_t> ints(const Tensor& t) {
  std::vector<int32_t> v(size_t(t.numel()));
  const Tensor c = t.contiguous();
  std::copy(c.data<int32_t>(), c.data<int32_t>() + c.numel(), v.begin());
  return v;
}

TEST(ShardSourceTest, DocumentModeMasksPaddingAndDpRanksSliceTheGlobalBatch) {
  const fs::path data = make_shards("doc");
  const RunConfig c = shard_run(data, data, "document");
  auto whole = make_train_source(c);
  auto r0 = make_train_source(c, 0, 2), r1 = make_train_source(c, 1, 2);
  int masked = 0;
  for (int step = 0; step < 20; ++step) {  // past the end of an epoch (60 documents, 4 per batch)
    const Batch w = whole->next_batch(), a = r0->next_batch(), b = r1->next_batch();
    ASSERT_EQ(w.ids.shape(), (Shape{4, 16}));
    ASSERT_EQ(a.ids.shape(), (Shape{2, 16}));
    std::vector<int32_t> ids = ints(a.ids), tgt = ints(a.targets);
    const std::vector<int32_t> ids1 = ints(b.ids), tgt1 = ints(b.targets);
    ids.insert(ids.end(), ids1.begin(), ids1.end());
    tgt.insert(tgt.end(), tgt1.begin(), tgt1.end());
    EXPECT_EQ(ids, ints(w.ids)) << "step " << step;
    EXPECT_EQ(tgt, ints(w.targets)) << "step " << step;
    const std::vector<int32_t> wi = ints(w.ids), wt = ints(w.targets);
    for (int r = 0; r < 4; ++r) {
      EXPECT_EQ(wi[size_t(r * 16)], 20) << "each row starts with BOS";
      for (int t = 0; t < 16; ++t) {
        if (wi[size_t(r * 16 + t)] == 22) {  // padding: nothing to predict
          EXPECT_EQ(wt[size_t(r * 16 + t)], -100);
          ++masked;
        }
      }
    }
  }
  EXPECT_GT(masked, 0);
  EXPECT_EQ(whole->state(), r1->state());  // the position is global
  EXPECT_NE(whole->describe().find("document"), std::string::npos);
  fs::remove_all(data);
}

TEST(ShardSourceTest, ResumeRestoresTheLoaderPositionBitIdentically) {
  for (const char* mode : {"packed", "document"}) {
    const fs::path data = make_shards(std::string("resume_") + mode);
    const fs::path a = data / "a", b = data / "b";
    auto run = [&](const fs::path& dir, const std::string& resume, int64_t stop) {
      const RunConfig c = shard_run(data, dir, mode);
      auto ts = make_train_source(c);
      auto es = make_eval_source(c);
      TrainOptions o;
      o.resume = resume;
      o.hooks.stop_after = stop;
      return train(c, *ts, es.get(), o);
    };
    const TrainResult straight = run(a, "", 0);
    ASSERT_EQ(straight.steps.size(), 12u);
    EXPECT_LT(straight.steps.back().loss, straight.steps.front().loss) << mode;
    run(b, "", 6);
    const CheckpointInfo info = inspect_checkpoint(checkpoint_path((b / "ckpt").string(), 6));
    const SourceState& pos = info.meta.sources.at("train");
    EXPECT_EQ(std::get<std::string>(pos.at("kind")), "shards");
    EXPECT_EQ(std::get<std::string>(pos.at("sample")), "48") << mode;  // 6 steps x 2 x 4 samples
    const TrainResult resumed = run(b, "auto", 0);
    ASSERT_EQ(resumed.start_step, 6);
    for (size_t i = 0; i < 6; ++i)
      EXPECT_EQ(resumed.steps[i].loss, straight.steps[6 + i].loss) << mode << " step " << 7 + i;
    EXPECT_EQ(resumed.eval_losses.back(), straight.eval_losses.back()) << mode;
    // A synthetic run cannot take this checkpoint's data position (named, nothing modified).
    RunConfig synth = shard_run(data, b, mode, {"data.kind=synthetic"});
    auto ss = make_train_source(synth);
    try {
      ss->restore(pos);
      ADD_FAILURE() << "a shard position restored into a synthetic source";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("cannot restore a 'shards' source state"), std::string::npos)
          << e.message();
    }
    fs::remove_all(data);
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

TEST(ShardSourceTest, MissingOrTruncatedShardsAreOneLineErrorsNamingTheFile) {
  const fs::path data = make_shards("bad");
  const fs::path d = data / "run";
  const RunConfig c = shard_run(data, d, "packed");
  // Missing shard listed in the index.
  const fs::path held = data / "heldout-00000.bin";
  fs::rename(held, data / "moved.bin");
  std::string m = error_of([&] { make_eval_source(c); });
  EXPECT_NE(m.find(held.string()), std::string::npos) << m;
  EXPECT_NE(m.find("is missing"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  fs::rename(data / "moved.bin", held);
  // Truncated shard.
  const fs::path shard = data / "train-00001.bin";
  fs::resize_file(shard, fs::file_size(shard) - 9);
  m = error_of([&] { make_train_source(c); });
  EXPECT_NE(m.find(shard.string()), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  // A directory without an index, an empty glob, shards of a larger vocab than the model's.
  m = error_of([&] { make_train_source(shard_run(data, d, "packed", {"data.dir=" + d.string()})); });
  EXPECT_NE(m.find("data.dir '" + d.string() + "' is not a directory"), std::string::npos) << m;
  fs::create_directories(d);
  m = error_of([&] { make_train_source(shard_run(data, d, "packed", {"data.dir=" + d.string()})); });
  EXPECT_NE(m.find("shard index '" + (d / "train.shards").string() + "' is missing"), std::string::npos) << m;
  m = error_of([&] { make_train_source(shard_run(data, d, "packed", {"data.train=nothing-*.bin"})); });
  EXPECT_NE(m.find("shards.yaml: data.train: no token shard files match"), std::string::npos) << m;
  m = error_of([&] { make_eval_source(shard_run(data, d, "packed", {"model.vocab=20"})); });
  EXPECT_NE(m.find("(vocab 24), more than model.vocab = 20"), std::string::npos) << m;
  // A glob of the held-out shard works without the index.
  auto glob = make_eval_source(shard_run(data, d, "packed", {"data.eval=heldout-*.bin"}));
  EXPECT_NE(glob->describe().find("heldout-00000.bin"), std::string::npos) << glob->describe();
  // A position of other data is refused by name.
  auto src = make_eval_source(c);
  SourceState other = glob->state();
  other["data"] = std::string("0123456789abcdef");
  m = error_of([&] { src->restore(other); });
  EXPECT_NE(m.find("data.eval: loader position"), std::string::npos) << m;
  fs::remove_all(data);
}

}  // namespace
}  // namespace coil
