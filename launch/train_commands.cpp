// `coil train --config RUN.yaml [--set key=value ...] [--resume auto|PATH]` and
// `coil checkpoint info PATH`.
#include "launch/train_commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>

#include "launch/cli_args.h"
#include "layers/lm.h"
#include "trainer/adamw.h"
#include "parallel/communicator.h"
#include "trainer/checkpoint.h"
#include "trainer/run_config.h"
#include "trainer/train_loop.h"
#include "trainer/train_parallel.h"
#ifdef COIL_HAVE_MPI
#include "parallel/mpi_communicator.h"
#endif

namespace coil::cli {

namespace {

const char* kTrainUsage =
    "usage: coil train --config RUN.yaml [--set key.path=value ...] [--resume auto|PATH]\n"
    "\n"
    "Trains the model of a run config (configs/runs/*.yaml: model, data, optim, schedule, train,\n"
    "precision, parallel, checkpoint, logging sections; see trainer/run_config.h). Prints the\n"
    "resolved config, a progress line every train.log_every steps, writes JSONL metrics to\n"
    "logging.jsonl and HDF5 checkpoints to checkpoint.dir.\n"
    "\n"
    "Parallel runs: start it under mpirun with parallel.dp x tp x sp equal to the number of ranks,\n"
    "e.g.  mpirun -np 4 coil train --config RUN.yaml --set parallel.dp=2 --set parallel.tp=2\n"
    "(parallel.zero1: true shards the AdamW state over dp x sp). train.batch_size is the global\n"
    "micro-batch; rank 0 prints and writes metrics and checkpoints. Checkpoints hold full tensors\n"
    "and resume under any dp / tp / sp layout. parallel.backend: auto (NCCL for CUDA runs of more\n"
    "than one rank, one rank per GPU; MPI when a node has more ranks than GPUs), nccl, or mpi\n"
    "(tensors staged through host memory; ranks may share a GPU); the start banner names the one\n"
    "in use.\n"
    "\n"
    "options:\n"
    "  --config FILE        the run config (required)\n"
    "  --set KEY=VALUE      override a config value before validation (repeatable),\n"
    "                       e.g. --set optim.lr=3e-4 --set train.steps=200\n"
    "  --resume auto|PATH   auto: continue from the newest complete checkpoint of checkpoint.dir\n"
    "                       (a fresh start when there is none); PATH: from that checkpoint\n"
    "  -h, --help           show this help\n";

const char* kCheckpointUsage =
    "usage: coil checkpoint info PATH\n"
    "       coil checkpoint compare A B\n"
    "\n"
    "info: prints a checkpoint's step, format version, run config summary and every tensor with its\n"
    "shape (/params/<name>, /optim/m/<name>, /optim/v/<name>).\n"
    "compare: reads two checkpoints of the same model (any parallel layout wrote them) and prints,\n"
    "for every parameter, max |a - b| / max |b| (b: the second file), then the worst as\n"
    "'worst <rel> <name>'. Exit status 0 (the numbers are for the caller to judge).\n";

// Started by mpirun (or another MPI launcher): the environment names a world of processes.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

// Config, data and training of one rank; `world` is every rank of the run.
int train_on(const CommPtr& world, const std::string& config_path,
             const std::vector<std::string>& overrides, TrainOptions options) {
  // Every rank reads the config and opens its data slice; they go on or fail together.
  std::optional<RunConfig> config;
  std::unique_ptr<BatchSource> train_source, eval_source;
  std::exception_ptr error;
  try {
    config = load_run_config(config_path, overrides);
    check_grid(*config, world->size());
    // The sources get the world rank and size; with tp or sp every rank takes the whole global
    // batch and the sharded model picks its block (trainer/train_parallel.h).
    train_source = make_train_source(*config, world->rank(), world->size());
    eval_source = make_eval_source(*config, world->rank(), world->size());
  } catch (...) {
    error = std::current_exception();
  }
  fail_together(*world, error);
  options.world = world;
  const TrainResult r = train(*config, *train_source, eval_source.get(), options);
  if (world->rank() != 0) return r.stopped_non_finite ? 1 : 0;
  if (r.stopped_non_finite) {
    std::cout << "run stopped after " << r.end_step << " steps on non-finite losses/gradients; "
              << "last checkpoint " << r.last_checkpoint << "\n";
    return 1;
  }
  std::cout << "done: " << r.end_step << " steps";
  if (!r.steps.empty()) std::cout << ", final loss " << r.steps.back().loss;
  if (!r.eval_losses.empty()) std::cout << ", held-out loss " << r.eval_losses.back().second;
  std::cout << "\n";
  return 0;
}

// Single process, or one rank of an MPI job; exit status as run_train_command's.
int train_command(const std::string& config_path, const std::vector<std::string>& overrides,
                  const TrainOptions& options) {
  if (!launched_by_mpi())
    return train_on(std::make_shared<SingleCommunicator>(), config_path, overrides, options);
#ifdef COIL_HAVE_MPI
  MpiRuntime mpi(nullptr, nullptr);
  const CommPtr world = mpi.world();
  try {
    return train_on(world, config_path, overrides, options);
  } catch (const SharedFailure& e) {
    // Every rank left the collectives together: one prints, all finalize and exit 1.
    if (e.report()) std::cerr << "error: " << e.message() << "\n";
    return 1;
  } catch (const Error& e) {
    std::cerr << "error: " << e.message() << "\n";
    if (world->size() == 1) return 1;
    // A rank failing alone mid-run would leave the others blocked in a collective: exit without
    // MPI_Finalize, so that mpirun ends the whole job.
    std::cerr << std::flush;
    std::_Exit(1);
  }
#else
  std::cerr << "warning: started by an MPI launcher, but this coil was built without MPI; "
               "training as a single process\n";
  return train_on(std::make_shared<SingleCommunicator>(), config_path, overrides, options);
#endif
}

void print_checkpoint_info(const std::string& path) {
  const CheckpointInfo info = inspect_checkpoint(path);
  const CheckpointMeta& m = info.meta;
  std::cout << "checkpoint " << path << "\n"
            << "  format version   " << info.format_version << "\n"
            << "  step             " << m.step << "\n"
            << "  tokens           " << m.tokens << "\n"
            << "  skipped steps    " << m.skipped_steps << "\n"
            << "  schedule         " << schedule_kind_name(m.schedule.kind) << ", peak lr "
            << m.schedule.peak_lr << ", warmup " << m.schedule.warmup_steps << ", decay end "
            << m.schedule.decay_end_step << ", final lr " << m.schedule.final_lr << "\n";
  for (const auto& [name, st] : m.rng)
    std::cout << "  rng " << name << "       seed " << st.first << ", offset " << st.second << "\n";
  for (const auto& [name, st] : m.sources) {
    std::cout << "  data " << name << ":";
    for (const auto& [k, v] : st) {
      std::cout << " " << k << "=";
      if (const int64_t* n = std::get_if<int64_t>(&v))
        std::cout << *n;
      else
        std::cout << std::get<std::string>(v);
    }
    std::cout << "\n";
  }
  try {
    const RunConfig c = parse_run_config(m.config_yaml, path + ":config_yaml");
    std::cout << "  run              " << c.name << ": " << c.model.mixer << " model, vocab "
              << c.model.vocab << ", d " << c.model.d_model << ", heads " << c.model.n_heads
              << " x " << c.model.head_dim << "; " << c.train.steps << " steps of "
              << c.train.batch_size << " x " << c.train.seq_len << " x " << c.train.grad_accum
              << "\n";
  } catch (const Error& e) {
    std::cout << "  run config       (does not parse with this coil: " << e.message() << ")\n";
  }
  std::cout << "  tensors          " << info.tensors.size() << "\n";
  for (const auto& t : info.tensors) {
    std::cout << "    " << t.path << " " << t.dtype << " (";
    for (size_t i = 0; i < t.shape.size(); ++i) std::cout << (i ? ", " : "") << t.shape[i];
    std::cout << ")\n";
  }
}

// The parameters of a checkpoint by name, in fp32 on the CPU, read through the trainer's own checks.
std::vector<std::pair<std::string, Tensor>> checkpoint_parameters(const std::string& path) {
  const CheckpointInfo info = inspect_checkpoint(path);
  const RunConfig c = parse_run_config(info.meta.config_yaml, path + ":config_yaml");
  LanguageModel model(c.model, ParamOptions{DType::F32, Device::cpu()});
  std::unique_ptr<AdamW> opt = make_optimizer(c, model);
  read_checkpoint(path, model, *opt, "");
  return model.named_parameters();
}

void compare_checkpoints(const std::string& a, const std::string& b) {
  const auto pa = checkpoint_parameters(a), pb = checkpoint_parameters(b);
  COIL_CHECK(pa.size() == pb.size(), "'", a, "' has ", pa.size(), " parameters, '", b, "' ", pb.size());
  double worst = 0;
  std::string worst_name = "-";
  for (size_t i = 0; i < pa.size(); ++i) {
    COIL_CHECK(pa[i].first == pb[i].first && pa[i].second.shape() == pb[i].second.shape(), "parameter ",
               pa[i].first, " of '", a, "' does not match ", pb[i].first, " of '", b, "'");
    const std::vector<double> x = pa[i].second.to_vector(), y = pb[i].second.to_vector();
    double d = 0, m = 0;
    for (size_t k = 0; k < x.size(); ++k) {
      d = std::max(d, std::abs(x[k] - y[k]));
      m = std::max(m, std::abs(y[k]));
    }
    const double rel = d / std::max(m, 1e-30);
    std::printf("%-48s %.3e\n", pa[i].first.c_str(), rel);
    if (rel > worst || i == 0) {
      worst = rel;
      worst_name = pa[i].first;
    }
  }
  std::printf("worst %.3e %s\n", worst, worst_name.c_str());
}

}  // namespace

int run_train_command(const std::vector<std::string>& args) {
  CLI::App app("", "coil train");
  set_usage(&app, kTrainUsage);
  std::string config_path;
  std::vector<std::string> overrides;
  TrainOptions options;
  options.out = &std::cout;
  app.add_option("--config", config_path)->required();
  // One KEY=VALUE per --set: a second word is an error, not a second override.
  app.add_option("--set", overrides)->allow_extra_args(false);
  app.add_option("--resume", options.resume)
      ->check(CLI::Validator([](std::string& v) { return v.empty() ? "expects auto or a checkpoint path" : ""; },
                             "auto|PATH"));
  return parse_and_run(app, args, [&] { return train_command(config_path, overrides, options); });
}

int run_checkpoint_command(const std::vector<std::string>& args) {
  CLI::App app("", "coil checkpoint");
  set_usage(&app, kCheckpointUsage);
  CLI::App* info_cmd = app.add_subcommand("info");
  set_usage(info_cmd, kCheckpointUsage);
  std::string path, path_b;
  info_cmd->add_option("PATH", path)->required();
  CLI::App* compare_cmd = app.add_subcommand("compare");
  set_usage(compare_cmd, kCheckpointUsage);
  compare_cmd->add_option("A", path)->required();
  compare_cmd->add_option("B", path_b)->required();
  return parse_and_run(app, args, [&] {
    if (compare_cmd->parsed()) {
      compare_checkpoints(path, path_b);
      return 0;
    }
    if (!info_cmd->parsed()) throw UsageError("'coil checkpoint' expects a subcommand (info or compare)");
    print_checkpoint_info(path);
    return 0;
  });
}

}  // namespace coil::cli
