// Checkpoint evaluation: loads a checkpoint (model section of its resolved run config + /params) and
// runs tasks, data-parallel over the ranks of a communicator: example i of a task is scored by rank
// i % size, every rank puts its per-example records into a zeroed (examples x fields) f64 buffer and
// one all-reduce (sum) gives every rank all records, so the metrics are computed from the same
// numbers as on one rank (adding zeros is exact).
//
// Tasks (names for --tasks):
//   heldout             perplexity and bits per byte on the held-out split of a token-shard dir
//                       (packed like the training loader: documents + EOS, windows of seq_len + 1
//                       starting every seq_len tokens; bytes = UTF-8 bytes of the predicted tokens)
//   passkey             pass-key retrieval per context length x depth, greedy decoding of the key
//                       (filler from the held-out split), plus a heatmap PNG
//   mqar                multi-query associative recall, teacher-forced accuracy on the query positions
//   phonebook, phonebook_reversed   greedy exact match of the phone number
//   lambada_openai, piqa, arc_easy, arc_challenge, openbook_qa, boolq, copa, siqa, winogrande
//                       the lm-eval-style files of eval_data_dir (eval/loglik.h rules)
//   decode              decode tokens/s and decode-state bytes per layer as the context grows
// Groups: "lm-eval" (the nine files), "synthetic" (passkey, mqar, phonebook, phonebook_reversed),
// "all" (every task).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/tokenizer.h"
#include "eval/results.h"
#include "layers/lm.h"
#include "parallel/communicator.h"
#include "trainer/checkpoint.h"
#include "trainer/run_config.h"

namespace coil {

struct LoadedCheckpoint {
  RunConfig config;
  CheckpointMeta meta;
  std::shared_ptr<LanguageModel> model;
};

// Reads the run config stored in the checkpoint, builds its model with the given dtype and device,
// and loads /params (validated against the stored model config by read_checkpoint).
LoadedCheckpoint load_checkpoint_for_eval(const std::string& path, const ParamOptions& opt);

struct EvalOptions {
  std::vector<std::string> tasks;
  std::string tokenizer = "bytes";  // "bytes" or a SentencePiece .model path
  std::string data_dir;             // token shards (heldout.shards): heldout, passkey filler, decode
  std::string eval_data_dir;        // the lm-eval-style jsonl files
  int64_t limit = 0;                // > 0: at most this many examples per task (the first ones)
  int64_t max_length = 0;           // > 0: lm-eval truncation of context + continuation
  uint64_t seed = 1234;             // synthetic tasks
  // heldout
  int64_t seq_len = 0;              // 0: the checkpoint's train.seq_len
  int64_t heldout_tokens = 0;       // > 0: stop after this many predicted tokens (whole windows)
  // passkey
  std::vector<int64_t> passkey_lengths{256, 512, 1024, 2048, 4096, 8192, 16384};
  std::vector<double> passkey_depths{0.0, 0.25, 0.5, 0.75, 1.0};
  int64_t passkey_samples = 5;      // per length x depth cell
  int64_t passkey_digits_min = 4, passkey_digits_max = 6;
  std::string heatmap_png;          // "": no heatmap
  // mqar
  int64_t mqar_samples = 100, mqar_pairs = 8, mqar_key_vocab = 64, mqar_value_vocab = 64;
  int32_t mqar_first_token = 0;
  // phonebook
  int64_t phonebook_samples = 50, phonebook_entries = 20;
  // decode
  std::vector<int64_t> decode_contexts{256, 1024, 4096};
  int64_t decode_new_tokens = 64;
  int64_t prefill_chunk = 1024;
};

// The task names `spec` (a comma list of tasks and groups) expands to, in a fixed order; throws
// coil::Error naming an unknown task.
std::vector<std::string> expand_task_list(const std::string& spec);
const std::vector<std::string>& lm_eval_task_names();

class Evaluator {
 public:
  // `log` (may be null) receives one progress line per task (rank 0 only).
  Evaluator(const LanguageModel& model, const RunConfig& config, const EvalOptions& options,
            Communicator& comm, std::ostream* log = nullptr);
  ~Evaluator();

  TaskResult run_task(const std::string& task);
  EvalReport run_all();  // every task of options.tasks

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// $COIL_EVAL_DATA, else ../shared/eval-data beside this source tree.
std::string default_eval_data_dir();

// Draws the pass-key heatmap from a results file with eval/passkey_heatmap.py; returns false (and
// says why on `err`) when no python3 with matplotlib is found or the script fails.
bool draw_passkey_heatmap(const std::string& results_json, const std::string& png, std::ostream& err);

}  // namespace coil
