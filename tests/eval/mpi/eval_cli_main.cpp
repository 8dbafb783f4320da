// Test driver of `coil eval` for the MPI test (tests/eval/mpi/ranks_agree.sh): the eval command itself
// (eval_command, as `coil eval` runs it) plus two test-only modes:
//   fixture DIR            held-out shards in DIR/shards and a tiny trained checkpoint in DIR/run/ckpt
//   same-results A.json B.json   exit 0 iff both files hold the same tasks, metrics and values exactly
#include <cmath>
#include <iostream>

#include "core/error.h"
#include "eval/results.h"
#include "../eval_test_util.h"
#include "launch/eval_commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "fixture") {
      namespace fs = std::filesystem;
      const fs::path dir = args[1];
      coil::testing::write_heldout_shards(dir / "shards");
      coil::RunConfig cfg = coil::testing::tiny_run(
          dir / "run",
          "  mixer: linear\n  preset: 2mamba\n  vocab: 259\n  d_model: 32\n  n_layers: 1\n  n_heads: 2\n"
          "  head_dim: 16\n  mlp_hidden: 64\n  seed: 0\n",
          20, 2, 32, 3e-3);
      auto src = coil::make_train_source(cfg);
      std::cout << coil::train(cfg, *src, nullptr, coil::TrainOptions{}).last_checkpoint << "\n";
      return 0;
    }
    if (args.size() == 3 && args[0] == "same-results") {
      coil::EvalReport a = coil::read_report(args[1]), b = coil::read_report(args[2]);
      if (a.tasks.size() != b.tasks.size()) return std::cerr << "different task counts\n", 1;
      int64_t compared = 0;
      for (size_t t = 0; t < a.tasks.size(); ++t) {
        const auto &ta = a.tasks[t], &tb = b.tasks[t];
        if (ta.task != tb.task || ta.metrics.size() != tb.metrics.size() || ta.samples != tb.samples)
          return std::cerr << "task " << ta.task << " differs in name, metrics or samples\n", 1;
        for (size_t m = 0; m < ta.metrics.size(); ++m) {
          const auto &ma = ta.metrics[m], &mb = tb.metrics[m];
          const bool same = ma.name == mb.name && ma.value == mb.value &&
                            (ma.stderr_value == mb.stderr_value ||
                             (std::isnan(ma.stderr_value) && std::isnan(mb.stderr_value)));
          if (!same) {
            std::cerr << ta.task << "/" << ma.name << ": " << ma.value << " vs " << mb.value << "\n";
            return 1;
          }
          ++compared;
        }
      }
      std::cout << "identical: " << a.tasks.size() << " tasks, " << compared << " metrics\n";
      return 0;
    }
    return coil::eval_command(args, std::cout, std::cerr);
  } catch (const coil::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
