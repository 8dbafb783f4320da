// The `coil` command-line entry point. Subcommands: demo (train a tiny LM on the CPU), model info
// (parameter count and decode-state memory of a model config), data prepare / tokenize / info and
// tokenizer train (launch/data_commands.cpp), train and checkpoint info
// (launch/train_commands.cpp). Usage errors
// (unknown subcommand or flag, bad value) exit 2; a coil::Error exits 1 with "error: <message>".
// Argument parsing is hand-rolled for now (a later change moves it to CLI11).
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <stdexcept>
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

constexpr int kUsageError = 2;

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

// A command-line mistake; carries the usage text of the command it belongs to.
struct UsageError : std::runtime_error {
  explicit UsageError(const std::string& what, const char* usage_text = kUsage)
      : std::runtime_error(what), usage(usage_text) {}
  const char* usage;
};

int64_t parse_int(const std::string& flag, const std::string& value, int64_t min,
                  const char* usage = kDemoUsage) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size())
    throw UsageError("option " + flag + " expects an integer, got '" + value + "'", usage);
  if (v < min)
    throw UsageError("option " + flag + " must be >= " + std::to_string(min) + ", got " + value, usage);
  return v;
}

int run_demo_command(const std::vector<std::string>& args) {
  coil::DemoOptions opt;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::cout << kDemoUsage;
      return 0;
    }
    // Accept both "--flag value" and "--flag=value".
    auto [flag, value, has_value] = coil::cli::split_flag(a);
    if (flag != "--steps" && flag != "--seed" && flag != "--log-every" && flag != "--config")
      throw UsageError("unknown option '" + a + "' for 'coil demo'", kDemoUsage);
    if (!has_value) {
      if (i + 1 >= args.size()) throw UsageError("option " + flag + " expects a value", kDemoUsage);
      value = args[++i];
    }
    if (flag == "--config") opt.config_path = value;
    if (flag == "--steps") opt.steps = parse_int(flag, value, 1);
    if (flag == "--seed") opt.seed = uint64_t(parse_int(flag, value, 0));
    if (flag == "--log-every") opt.log_every = parse_int(flag, value, 1);
  }
  coil::run_demo(opt, std::cout);
  return 0;
}

// coil model info <config.yaml> [--context N]
int run_model_command(const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError("'coil model' expects a subcommand (info)", kModelUsage);
  if (args[0] == "-h" || args[0] == "--help") {
    std::cout << kModelUsage;
    return 0;
  }
  if (args[0] != "info") throw UsageError("unknown subcommand 'model " + args[0] + "'", kModelUsage);
  std::string config_path;
  int64_t context = 2048;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::cout << kModelUsage;
      return 0;
    }
    if (a == "--context" || a.rfind("--context=", 0) == 0) {
      std::string value;
      if (a == "--context") {
        if (i + 1 >= args.size()) throw UsageError("option --context expects a value", kModelUsage);
        value = args[++i];
      } else {
        value = a.substr(a.find('=') + 1);
      }
      context = parse_int("--context", value, 1, kModelUsage);
    } else if (a.rfind("-", 0) == 0) {
      throw UsageError("unknown option '" + a + "' for 'coil model info'", kModelUsage);
    } else if (config_path.empty()) {
      config_path = a;
    } else {
      throw UsageError("'coil model info' takes one config file, got '" + config_path + "' and '" +
                           a + "'",
                       kModelUsage);
    }
  }
  if (config_path.empty()) throw UsageError("'coil model info' expects a config file", kModelUsage);
  const coil::ModelConfig config = coil::load_model_config(config_path);
  coil::print_model_info(coil::compute_model_info(config, context), config, config_path, std::cout);
  return 0;
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return kUsageError;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "demo") return run_demo_command(args);
  if (cmd == "model") return run_model_command(args);
  if (cmd == "train") return coil::cli::run_train_command(args);
  if (cmd == "checkpoint") return coil::cli::run_checkpoint_command(args);
  if (cmd == "bench") return coil::cli::run_bench_command(args);
  if (cmd == "eval") return coil::eval_command(args, std::cout, std::cerr);
  if (cmd == "data") return coil::cli::run_data_command(args);
  if (cmd == "tokenizer") return coil::cli::run_tokenizer_command(args);
  throw UsageError("unknown command '" + cmd + "'");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "coil: " << e.what() << "\n\n" << e.usage;
    return kUsageError;
  } catch (const coil::Error& e) {
    std::cerr << "error: " << e.message() << "\n";
    return 1;
  }
}
