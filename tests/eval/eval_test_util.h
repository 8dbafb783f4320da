// Fixtures of the eval tests: held-out token shards of plain English text (byte tokenizer), tiny
// checkpoints trained in process with trainer/train_loop.h, and a pass-key batch source.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/shard.h"
#include "data/tasks.h"
#include "data/tokenizer.h"
#include "trainer/batch_source.h"
#include "trainer/run_config.h"
#include "trainer/train_loop.h"

namespace coil::testing {

namespace fs = std::filesystem;

inline fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("coil_eval_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Digit-free English filler (plain sentences written for these tests).
inline const std::vector<std::string>& filler_documents() {
  static const std::vector<std::string> docs{
      "The river ran slowly past the old mill, and the miller watched the water turn the wheel. "
      "In the evening the birds came down to the bank to drink, and the light went gold on the hills.",
      "A small boat was tied to the post near the bridge. Nobody knew who owned it, but every morning "
      "someone had swept the leaves from its seats and left a folded cloth on the bow.",
      "The library kept its maps in long drawers under the windows. Students came to trace the coast "
      "lines and the roads, and the keeper told them stories about the towns that had changed names.",
      "When the snow came early that year, the farmers brought the sheep down from the high fields. "
      "The dogs ran ahead of the flock, and the children counted the animals as they passed the gate.",
      "On market day the square filled with carts of apples, cheese and bread. The baker sang while "
      "he worked, and the smell of warm loaves drifted over the stalls and into the narrow lanes."};
  return docs;
}

// DIR/heldout.shards + one shard of the filler documents, byte tokenizer.
inline void write_heldout_shards(const fs::path& dir) {
  fs::create_directories(dir);
  ByteTokenizer tok;
  const std::string file = "heldout-00000.bin";
  ShardWriter w((dir / file).string(), tok.id(), uint32_t(tok.vocab_size()), tok.bos_id(), tok.eos_id(),
                tok.pad_id());
  for (int rep = 0; rep < 4; ++rep)
    for (const std::string& d : filler_documents()) w.add_document(tok.encode(d));
  w.finish();
  write_shard_index(dir.string(), "heldout", tok.id(), {{file, w.num_tokens(), w.num_docs()}});
}

// A tiny run config (byte vocab 259) writing checkpoints to dir/ckpt.
inline RunConfig tiny_run(const fs::path& dir, const std::string& model_yaml, int64_t steps, int64_t batch,
                          int64_t seq_len, double lr) {
  const std::string text = "name: eval-tiny\nmodel:\n" + model_yaml +
                           "data: {kind: synthetic, period: 8, seed: 1, eval_seed: 2}\n"
                           "optim: {lr: " + std::to_string(lr) + ", weight_decay: 0.0, clip: 1.0}\n"
                           "schedule: {kind: warmup_cosine, warmup: " +
                           std::to_string(std::min<int64_t>(10, steps / 2)) +
                           ", final_lr: " + std::to_string(lr / 10) + "}\n"
                           "train: {steps: " + std::to_string(steps) +
                           ", batch_size: " + std::to_string(batch) +
                           ", seq_len: " + std::to_string(seq_len) + ", log_every: 1000}\n"
                           "checkpoint: {every: 0, keep_last: 1}\n";
  return parse_run_config(text, "eval-tiny.yaml", {"checkpoint.dir=" + (dir / "ckpt").string()});
}

// Pass-key prompts followed by their answer; the loss is on the answer tokens only (the task's
// format is what the model must learn, the filler is noise). Batch n depends on (seed, n) only.
class PasskeySource : public BatchSource {
 public:
  PasskeySource(int64_t batch, int64_t context, int64_t digits, uint64_t seed) : B_(batch), ctx_(context),
      digits_(digits), seed_(seed) {
    std::vector<int32_t> text;
    for (const std::string& d : filler_documents()) {
      std::vector<int32_t> t = tok_.encode(d + " ");
      text.insert(text.end(), t.begin(), t.end());
    }
    filler_ = digit_free_filler(tok_, text);
  }
  Batch next_batch() override {
    const int64_t T = ctx_ + digits_;  // prompt, then the answer's " " and digits minus the last as input
    std::vector<int64_t> ids, tgt;
    for (int64_t b = 0; b < B_; ++b) {
      PasskeyOptions po;
      po.context_tokens = ctx_;
      po.depth = double((n_ * B_ + b) % 5) / 4.0;
      po.key_digits_min = po.key_digits_max = digits_;
      TextTaskExample ex = make_passkey(tok_, filler_, po, seed_, n_ * B_ + b);
      std::vector<int32_t> seq = ex.prompt;
      seq.insert(seq.end(), ex.answer_tokens.begin(), ex.answer_tokens.end());  // T + 1 tokens
      for (int64_t t = 0; t < T; ++t) {
        ids.push_back(seq[size_t(t)]);
        tgt.push_back(t + 1 >= ctx_ ? seq[size_t(t + 1)] : -100);
      }
    }
    ++n_;
    return {Tensor::from_ints(ids, {B_, T}), Tensor::from_ints(tgt, {B_, T})};
  }
  SourceState state() const override { return {{"batches", n_}}; }
  void restore(const SourceState& s) override { n_ = state_int(s, "batches"); }
  std::string describe() const override { return "passkey(" + std::to_string(ctx_) + ")"; }

 private:
  ByteTokenizer tok_;
  std::vector<int32_t> filler_;
  int64_t B_, ctx_, digits_;
  uint64_t seed_;
  int64_t n_ = 0;
};

}  // namespace coil::testing
