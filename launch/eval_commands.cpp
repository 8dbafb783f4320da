// `coil eval`, `coil eval compare` and `coil eval generate` (see eval_commands.h and eval/evaluator.h).
// Under mpirun the examples of every task are split over the world's ranks (MPI is initialised here
// when the launcher says there is more than one rank); rank 0 prints and writes the results.
#include "launch/eval_commands.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "core/error.h"
#include "eval/decode.h"
#include "eval/evaluator.h"
#include "eval/results.h"
#include "launch/cli_args.h"
#include "parallel/communicator.h"
#ifdef COIL_HAVE_MPI
#include "parallel/mpi_communicator.h"
#endif

namespace coil {
namespace {

using cli::UsageError;

const char* kEvalUsage =
    "usage: coil eval --checkpoint PATH --tasks LIST [--out results.json] [options]\n"
    "       coil eval compare A.json B.json ... [--labels a,b,...]\n"
    "       coil eval generate --checkpoint PATH --prompt TEXT [--max-new-tokens N] [--temperature T]\n"
    "                          [--top-k K] [--seed S] [--tokenizer SPEC]\n"
    "\n"
    "Evaluates a checkpoint on downstream tasks (data-parallel over the ranks under mpirun), prints a\n"
    "table and writes lm-eval-style JSON (task -> metric -> value, with <metric>_stderr).\n"
    "\n"
    "tasks (comma list): heldout, passkey, mqar, phonebook, phonebook_reversed, lambada_openai, piqa,\n"
    "  arc_easy, arc_challenge, openbook_qa, boolq, copa, siqa, winogrande, decode;\n"
    "  groups: lm-eval (the nine lm-eval-style files), synthetic, all\n"
    "\n"
    "options:\n"
    "  --checkpoint PATH       HDF5 checkpoint written by 'coil train'\n"
    "  --tasks LIST            tasks to run\n"
    "  --out FILE              results JSON (rank 0); passkey also draws FILE's stem + .passkey.png\n"
    "  --tokenizer SPEC        'bytes' (default) or a SentencePiece .model file\n"
    "  --data DIR              token shards with heldout.shards (heldout, passkey filler, decode prompt)\n"
    "  --eval-data DIR         folder of the lm-eval-style jsonl files (default: ../shared/eval-data\n"
    "                          next to the source tree, or $COIL_EVAL_DATA)\n"
    "  --limit N               at most N examples per task (the first ones)\n"
    "  --max-length N          lm-eval truncation of context + continuation to N tokens (0: none)\n"
    "  --seed S                seed of the synthetic tasks (default 1234)\n"
    "  --device cpu|cuda       where the model runs (default cpu)\n"
    "  --dtype f32|f64         model dtype (default: the checkpoint's)\n"
    "  --seq-len N             heldout window (default: the checkpoint's train.seq_len)\n"
    "  --heldout-tokens N      heldout: at most N predicted tokens\n"
    "  --passkey-lengths LIST  context lengths (default 256,512,1024,2048,4096,8192,16384)\n"
    "  --passkey-depths LIST   needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)\n"
    "  --passkey-samples N     prompts per length x depth (default 5)\n"
    "  --passkey-digits A-B    key digits (default 4-6)\n"
    "  --mqar-samples N  --mqar-pairs N  --mqar-key-vocab N  --mqar-value-vocab N  --mqar-first-token N\n"
    "  --phonebook-samples N  --phonebook-entries N\n"
    "  --decode-contexts LIST  contexts of the decode-state figure (default 256,1024,4096)\n"
    "  --decode-tokens N       new tokens per decode measurement (default 64)\n"
    "  --prefill-chunk N       prompt tokens per prefill call (default 1024)\n"
    "  -h, --help              show this help\n";

int64_t parse_int(const std::string& flag, const std::string& v, int64_t min) {
  size_t used = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw UsageError("option " + flag + " expects an integer, got '" + v + "'");
  if (x < min) throw UsageError("option " + flag + " must be >= " + std::to_string(min) + ", got " + v);
  return x;
}

double parse_double(const std::string& flag, const std::string& v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw UsageError("option " + flag + " expects a number, got '" + v + "'");
  return x;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& v) {
  std::vector<int64_t> out;
  for (const std::string& s : split_commas(v)) out.push_back(parse_int(flag, s, 1));
  if (out.empty()) throw UsageError("option " + flag + " expects a comma list of integers");
  return out;
}

// The world communicator: MPI when launched by mpirun with several ranks, else a single rank.
CommPtr world_communicator() {
  int size = 1;
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* v = std::getenv(var)) size = std::max(size, std::atoi(v));
  if (size <= 1) return std::make_shared<SingleCommunicator>("world");
#ifdef COIL_HAVE_MPI
  static MpiRuntime mpi(nullptr, nullptr);  // finalised at exit
  return mpi.world();
#else
  COIL_FAIL("launched with ", size, " ranks but this coil was built without MPI (COIL_MPI=OFF)");
#endif
}

int run_compare(const std::vector<std::string>& files, const std::string& labels_arg, std::ostream& out) {
  std::vector<std::string> labels = split_commas(labels_arg);
  if (labels.empty())
    for (const auto& f : files) labels.push_back(std::filesystem::path(f).stem().string());
  if (labels.size() != files.size())
    throw UsageError("--labels names " + std::to_string(labels.size()) + " columns for " +
                     std::to_string(files.size()) + " files");
  std::vector<EvalReport> reports;
  for (const auto& f : files) reports.push_back(read_report(f));
  print_comparison(reports, labels, out);
  return 0;
}

ParamOptions param_options(const std::string& device, const std::string& dtype, const std::string& ckpt) {
  ParamOptions po;
  if (device == "cuda") po.device = Device::cuda(0);
  else if (device != "cpu") throw UsageError("option --device expects cpu or cuda, got '" + device + "'");
  if (dtype == "f64") po.dtype = DType::F64;
  else if (dtype == "f32") po.dtype = DType::F32;
  else if (dtype.empty()) {
    po.dtype = DType::F32;
    for (const CheckpointTensorInfo& t : inspect_checkpoint(ckpt).tensors)
      if (t.path.rfind("/params/", 0) == 0 && t.dtype == "f64") po.dtype = DType::F64;
  } else {
    throw UsageError("option --dtype expects f32 or f64, got '" + dtype + "'");
  }
  return po;
}

// The options of `coil eval generate`.
struct GenerateArgs {
  std::string ckpt, prompt, tokenizer = "bytes", device = "cpu", dtype;
  GenerateOptions g;
};

void add_generate(CLI::App* app, GenerateArgs& a) {
  cli::set_usage(app, kEvalUsage);
  app->add_option("--checkpoint", a.ckpt)->required();
  app->add_option("--prompt", a.prompt)->required();
  app->add_option("--max-new-tokens", a.g.max_new_tokens)->check(cli::int_at_least(1));
  app->add_option("--temperature", a.g.temperature)->check(cli::number());
  app->add_option("--top-k", a.g.top_k)->check(cli::int_at_least(0));
  app->add_option("--seed", a.g.seed)->check(cli::int_at_least(0));
  app->add_option("--tokenizer", a.tokenizer);
  app->add_option("--device", a.device);
  app->add_option("--dtype", a.dtype);
}

int run_generate(const GenerateArgs& a, std::ostream& out) {
  const std::string &ckpt = a.ckpt, &prompt = a.prompt;
  const GenerateOptions& g = a.g;
  if (prompt.empty()) throw UsageError("'coil eval generate' needs a non-empty --prompt TEXT");
  if (g.temperature < 0) throw UsageError("option --temperature must be >= 0");
  LoadedCheckpoint lc = load_checkpoint_for_eval(ckpt, param_options(a.device, a.dtype, ckpt));
  std::unique_ptr<Tokenizer> tok = load_tokenizer(a.tokenizer);
  Decoder dec(*lc.model);
  std::vector<int32_t> ids = tok->encode(prompt);
  GenerateResult r = generate(dec, ids, g);
  out << prompt << tok->decode(r.tokens) << "\n";
  out << "prompt " << ids.size() << " tokens, generated " << r.tokens.size() << " tokens; decode "
      << r.decode_tokens_per_second << " tokens/s; decode state per layer (bytes):";
  for (int64_t b : r.state_bytes) out << " " << b;
  out << "\n";
  return 0;
}

// The options of `coil eval`; the lists and ranges stay text until run_eval checks them.
struct EvalArgs {
  std::string ckpt, tasks, out_path, device = "cpu", dtype;
  std::string passkey_lengths, passkey_depths, passkey_digits, decode_contexts;
  EvalOptions o;
};

void add_eval(CLI::App* app, EvalArgs& a) {
  using cli::int_at_least;
  cli::set_usage(app, kEvalUsage);
  EvalOptions& o = a.o;
  // --checkpoint and --tasks are checked in run_eval: `coil eval compare` needs neither.
  app->add_option("--checkpoint", a.ckpt);
  app->add_option("--tasks", a.tasks);
  app->add_option("--out", a.out_path);
  app->add_option("--tokenizer", o.tokenizer);
  app->add_option("--data", o.data_dir);
  app->add_option("--eval-data", o.eval_data_dir);
  app->add_option("--limit", o.limit)->check(int_at_least(0));
  app->add_option("--max-length", o.max_length)->check(int_at_least(0));
  app->add_option("--seed", o.seed)->check(int_at_least(0));
  app->add_option("--device", a.device);
  app->add_option("--dtype", a.dtype);
  app->add_option("--seq-len", o.seq_len)->check(int_at_least(1));
  app->add_option("--heldout-tokens", o.heldout_tokens)->check(int_at_least(1));
  app->add_option("--passkey-lengths", a.passkey_lengths);
  app->add_option("--passkey-depths", a.passkey_depths);
  app->add_option("--passkey-samples", o.passkey_samples)->check(int_at_least(1));
  app->add_option("--passkey-digits", a.passkey_digits);
  app->add_option("--mqar-samples", o.mqar_samples)->check(int_at_least(1));
  app->add_option("--mqar-pairs", o.mqar_pairs)->check(int_at_least(1));
  app->add_option("--mqar-key-vocab", o.mqar_key_vocab)->check(int_at_least(1));
  app->add_option("--mqar-value-vocab", o.mqar_value_vocab)->check(int_at_least(1));
  app->add_option("--mqar-first-token", o.mqar_first_token)->check(int_at_least(0));
  app->add_option("--phonebook-samples", o.phonebook_samples)->check(int_at_least(1));
  app->add_option("--phonebook-entries", o.phonebook_entries)->check(int_at_least(1));
  app->add_option("--decode-contexts", a.decode_contexts);
  app->add_option("--decode-tokens", o.decode_new_tokens)->check(int_at_least(1));
  app->add_option("--prefill-chunk", o.prefill_chunk)->check(int_at_least(0));
}

int run_eval(EvalArgs& a, std::ostream& out, std::ostream& err) {
  const std::string &ckpt = a.ckpt, &tasks = a.tasks, &out_path = a.out_path;
  EvalOptions& o = a.o;
  if (!a.passkey_lengths.empty()) o.passkey_lengths = parse_int_list("--passkey-lengths", a.passkey_lengths);
  if (!a.passkey_depths.empty()) {
    o.passkey_depths.clear();
    for (const std::string& s : split_commas(a.passkey_depths)) {
      const double d = parse_double("--passkey-depths", s);
      if (d < 0 || d > 1) throw UsageError("option --passkey-depths: depth " + s + " is not in [0, 1]");
      o.passkey_depths.push_back(d);
    }
    if (o.passkey_depths.empty()) throw UsageError("option --passkey-depths expects a comma list");
  }
  if (!a.passkey_digits.empty()) {
    const std::string& value = a.passkey_digits;
    const char* flag = "--passkey-digits";
    const size_t dash = value.find('-');
    if (dash == std::string::npos) {
      o.passkey_digits_min = o.passkey_digits_max = parse_int(flag, value, 1);
    } else {
      o.passkey_digits_min = parse_int(flag, value.substr(0, dash), 1);
      o.passkey_digits_max = parse_int(flag, value.substr(dash + 1), o.passkey_digits_min);
    }
  }
  if (!a.decode_contexts.empty()) o.decode_contexts = parse_int_list("--decode-contexts", a.decode_contexts);
  if (ckpt.empty()) throw UsageError("'coil eval' needs --checkpoint PATH");
  if (tasks.empty()) throw UsageError("'coil eval' needs --tasks LIST (e.g. heldout,passkey or all)");
  try {
    o.tasks = expand_task_list(tasks);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  CommPtr world = world_communicator();
  const bool root = world->rank() == 0;
  const ParamOptions po = param_options(a.device, a.dtype, ckpt);
  LoadedCheckpoint lc = load_checkpoint_for_eval(ckpt, po);
  if (root)
    out << "coil eval: " << ckpt << " (step " << lc.meta.step << ", mixer " << lc.config.model.mixer << ", "
        << lc.model->num_parameters() << " parameters) on " << world->size() << " rank(s)" << std::endl;
  std::ostringstream sink;
  Evaluator ev(*lc.model, lc.config, o, *world, root ? &out : &sink);
  EvalReport rep = ev.run_all();
  rep.config = {{"checkpoint", json_string(ckpt)},
                {"step", std::to_string(lc.meta.step)},
                {"name", json_string(lc.config.name)},
                {"mixer", json_string(lc.config.model.mixer)},
                {"parameters", std::to_string(lc.model->num_parameters())},
                {"tokenizer", json_string(o.tokenizer)},
                {"ranks", std::to_string(world->size())},
                {"seed", std::to_string(o.seed)},
                {"limit", std::to_string(o.limit)}};
  if (!root) return 0;
  out << "\n";
  print_report_table(rep, out);
  if (!out_path.empty()) {
    const std::string json = report_to_json(rep);
    const std::string tmp = out_path + ".tmp";
    {
      std::ofstream f(tmp);
      COIL_CHECK(f.good(), "cannot write results file '", tmp, "'");
      f << json;
      f.close();
      COIL_CHECK(f.good(), "error writing results file '", tmp, "'");
    }
    std::filesystem::rename(tmp, out_path);
    out << "results: " << out_path << "\n";
    if (std::find(o.tasks.begin(), o.tasks.end(), "passkey") != o.tasks.end()) {
      std::filesystem::path png = std::filesystem::path(out_path).replace_extension(".passkey.png");
      if (draw_passkey_heatmap(out_path, png.string(), err))
        out << "pass-key heatmap: " << png.string() << "\n";
    }
  }
  return 0;
}

}  // namespace

int eval_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app("", "coil eval");
  EvalArgs eval_args;
  eval_args.o.eval_data_dir = default_eval_data_dir();
  add_eval(&app, eval_args);
  CLI::App* compare = app.add_subcommand("compare");
  cli::set_usage(compare, kEvalUsage);
  std::vector<std::string> files;
  std::string labels;
  compare->add_option("FILE", files)->required();
  compare->add_option("--labels", labels);
  CLI::App* generate_cmd = app.add_subcommand("generate");
  GenerateArgs generate_args;
  add_generate(generate_cmd, generate_args);
  try {
    // Usage errors keep this command's "error: " prefix.
    return cli::parse_and_run(app, args, [&] {
      if (compare->parsed()) return run_compare(files, labels, out);
      if (generate_cmd->parsed()) return run_generate(generate_args, out);
      return run_eval(eval_args, out, err);
    }, out, err, "error: ");
  } catch (const Error& e) {
    err << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {  // e.g. std::filesystem errors writing --out
    err << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace coil
