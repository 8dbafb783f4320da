// The `coil` command-line entry point. Subcommands: demo (train a tiny LM on the CPU), model info
// (parameter count and decode-state memory of a model config), data prepare / tokenize / info and
// tokenizer train (launch/data_commands.cpp), train and checkpoint info
// (launch/train_commands.cpp). Usage errors
// (unknown subcommand or flag, bad value) exit 2; a coil::Error exits 1 with "error: <message>".
// Each command parses its words with CLI11 (launch/cli_args.h).
#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/bench_commands.h"
#include "launch/cli_args.h"
#include "launch/data_commands.h"
#include "launch/eval_commands.h"
#include "launch/train_commands.h"
#include "trainer/demo.h"
#include "trainer/model_info.h"
#include "trainer/model_yaml.h"

namespace {

using coil::cli::kUsageError;

const char* kUsage =
    "usage: coil <command> [options]\n"
    "\n"
    "commands:\n"
    "  demo             train a tiny LM (softmax, or --config MODEL.yaml) on one synthetic batch on the CPU\n"
    "  model info       parameter count and decode-state memory of a model config\n"
    "  train            train a model from a run config (configs/runs/*.yaml)\n"
    "  checkpoint info  step, config and tensors of an HDF5 checkpoint\n"
    "  eval             evaluate a checkpoint (perplexity, pass-key, MQAR, lm-eval tasks); eval compare\n"
    "  bench train      time end-to-end training steps of a model config (tokens/s, MFU, memory)\n"
    "  data prepare     build the plain-English text corpus (Debian packages + npm corpora)\n"
    "  data tokenize    tokenize a corpus into token shards\n"
    "  data info        validate token shards and print their headers\n"
    "  tokenizer train  train a SentencePiece BPE tokenizer on a corpus\n"
    "\n"
    "Run 'coil <command> --help' for the options of a command.\n";

const char* kDemoUsage =
    "usage: coil demo [--config MODEL.yaml] [--steps N] [--seed S] [--log-every K]\n"
    "\n"
    "Trains a tiny LM (default: 2-layer softmax, d 64, 4 heads of 16, vocab 64; or the model of\n"
    "--config, e.g. configs/models/2mamba-tiny.yaml) on one fixed batch of 4 x 32 tokens with AdamW\n"
    "and a linear warmup/decay schedule, printing a progress line every K steps and the initial\n"
    "and final loss.\n"
    "\n"
    "options:\n"
    "  --steps N      optimizer steps (default 200)\n"
    "  --seed S       seed of the model init and the batch (default 0)\n"
    "  --log-every K  steps between progress lines (default 10)\n"
    "  -h, --help     show this help\n";

const char* kModelUsage =
    "usage: coil model info <config.yaml> [--context N]\n"
    "\n"
    "Reads a model config (configs/models/*.yaml) and prints, without building the model:\n"
    "  - the parameter count, in total and per part (embedding, per-block mixer / MLP / norms with\n"
    "    their tensors, final norm, lm_head; a hybrid per pattern letter);\n"
    "  - the decode state each layer keeps per sequence after N tokens (fp32, 4 bytes per value),\n"
    "    beside a softmax KV cache of the same heads;\n"
    "  - for a mixer with a constant state, the context from which that state is smaller than the\n"
    "    KV cache (1058 tokens for 2Mamba at head_dim 64, spec/models.md section 6).\n"
    "\n"
    "options:\n"
    "  --context N    context length of the decode-state figures (default 2048)\n"
    "  -h, --help     show this help\n";

int run_demo_command(const std::vector<std::string>& args) {
  CLI::App app("", "coil demo");
  coil::cli::set_usage(&app, kDemoUsage);
  coil::DemoOptions opt;
  app.add_option("--config", opt.config_path);
  app.add_option("--steps", opt.steps)->check(coil::cli::int_at_least(1));
  app.add_option("--seed", opt.seed)->check(coil::cli::int_at_least(0));
  app.add_option("--log-every", opt.log_every)->check(coil::cli::int_at_least(1));
  return coil::cli::parse_and_run(app, args, [&] {
    coil::run_demo(opt, std::cout);
    return 0;
  });
}

// coil model info <config.yaml> [--context N]
int run_model_command(const std::vector<std::string>& args) {
  CLI::App app("", "coil model");
  coil::cli::set_usage(&app, kModelUsage);
  CLI::App* info = app.add_subcommand("info");
  coil::cli::set_usage(info, kModelUsage);
  std::string config_path;
  int64_t context = 2048;
  info->add_option("CONFIG", config_path)->required();
  info->add_option("--context", context)->check(coil::cli::int_at_least(1));
  return coil::cli::parse_and_run(app, args, [&] {
    if (!info->parsed()) throw coil::cli::UsageError("'coil model' expects a subcommand (info)");
    const coil::ModelConfig config = coil::load_model_config(config_path);
    coil::print_model_info(coil::compute_model_info(config, context), config, config_path, std::cout);
    return 0;
  });
}

// The command word picks the command; the words after it go to that command's own parser (each
// command keeps a vector entry point: `coil eval` is also driven that way by its tests).
int run(int argc, char** argv) {
  using Command = std::function<int(const std::vector<std::string>&)>;
  const std::vector<std::pair<std::string, Command>> commands{
      {"demo", run_demo_command},
      {"model", run_model_command},
      {"train", coil::cli::run_train_command},
      {"checkpoint", coil::cli::run_checkpoint_command},
      {"bench", coil::cli::run_bench_command},
      {"eval", [](const std::vector<std::string>& a) { return coil::eval_command(a, std::cout, std::cerr); }},
      {"data", coil::cli::run_data_command},
      {"tokenizer", coil::cli::run_tokenizer_command},
  };
  CLI::App app("", "coil");
  coil::cli::set_usage(&app, kUsage);
  app.allow_extras();  // an unknown command word is reported below, by name
  // At most one command: a later word that names another command ("bench train") is the command's.
  app.require_subcommand(0, 1);
  CLI::App* help = app.add_subcommand("help");
  help->set_help_flag();
  help->allow_extras();  // `coil help train` shows the overview too
  for (const auto& [name, fn] : commands) {
    // No options of its own: everything after the word is the command's.
    CLI::App* sub = app.add_subcommand(name);
    sub->prefix_command();
    sub->set_help_flag();
  }
  if (argc <= 1) {
    std::cerr << kUsage;
    return kUsageError;
  }
  return coil::cli::parse_and_run(app, {argv + 1, argv + argc}, [&] {
    if (help->parsed()) {
      std::cout << kUsage;
      return 0;
    }
    for (const auto& [name, fn] : commands)
      if (app.got_subcommand(name)) return fn(app.get_subcommand(name)->remaining());
    const std::vector<std::string> rest = app.remaining();
    throw coil::cli::UsageError(rest.empty() ? "expects a command" : "unknown command '" + rest.front() + "'");
  }, std::cout, std::cerr, "coil: ");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const coil::Error& e) {
    std::cerr << "error: " << e.message() << "\n";
    return 1;
  }
}
