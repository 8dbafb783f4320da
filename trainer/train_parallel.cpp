// The trainer's side of the process grid (dp only for now): replicas, scaled micro-batch losses,
// bucketed gradient averaging and the setup agreement.
#include "trainer/train_parallel.h"

#include <string>
#include <vector>

#include "core/ops.h"

namespace coil {

SharedFailure::SharedFailure(const std::string& message, bool report)
    : Error(message, __FILE__, __LINE__), report_(report) {}

void fail_together(Communicator& world, std::exception_ptr error) {
  if (world.size() == 1) {
    if (error) std::rethrow_exception(error);
    return;
  }
  std::vector<double> failed(size_t(world.size()), 0.0);
  failed[size_t(world.rank())] = error ? 1.0 : 0.0;
  failed = reduce_values(world, failed, ReduceOp::Max);
  for (int r = 0; r < world.size(); ++r) {
    if (failed[size_t(r)] == 0.0) continue;
    if (r != world.rank())
      throw SharedFailure("rank " + std::to_string(r) + " failed (its error is printed there)", false);
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      throw SharedFailure(e.message(), true);
    } catch (const std::exception& e) {
      throw SharedFailure(e.what(), true);
    }
  }
}

void check_grid(const RunConfig& c, int world_size) {
  const ParallelConfig& p = c.parallel;
  COIL_CHECK(p.dp * p.tp * p.sp == world_size, c.source, ": parallel.dp x tp x sp = ", p.dp, " x ",
             p.tp, " x ", p.sp, " = ", p.dp * p.tp * p.sp, " rank(s), but the run has ", world_size,
             " (set --set parallel.dp=", world_size, " or start that many ranks with mpirun -np)");
  COIL_CHECK(p.tp == 1 && p.sp == 1, c.source,
             ": tensor and sequence parallel are not wired into the trainer yet (tp = sp = 1)");
}

TrainParallel::TrainParallel(const RunConfig& c, CommPtr world)
    : config_(c), world_(std::move(world)) {
  check_grid(c, world_->size());
  // dp is the whole world while tp = sp = 1; a ProcessGrid's dp group replaces it with tp/sp.
  dp_ = world_;
}

TrainParallel::~TrainParallel() = default;

std::unique_ptr<LanguageModel> TrainParallel::build_model(const ParamOptions& options) const {
  return std::make_unique<LanguageModel>(config_.model, options);
}

void TrainParallel::start(LanguageModel& model) {
  if (dp_->size() == 1) return;
  broadcast_parameters(*dp_, model.parameters());
  ddp_ = std::make_unique<DataParallel>(dp_, model.parameters());
}

Tensor TrainParallel::micro_loss(const LanguageModel& model, const Batch& b, Device device,
                                 double scale, bool last_micro) {
  if (ddp_) ddp_->set_sync(last_micro);
  double weight = scale;
  if (dp_->size() > 1) {
    // This rank's share of the counted targets: dp * local / global makes the dp average of the
    // local token means the global token mean (1 exactly when no target is ignored).
    const Tensor t = b.targets.contiguous();
    const int32_t* p = t.data<int32_t>();
    double local = 0;
    for (int64_t i = 0; i < t.numel(); ++i) local += p[i] != -100;
    const double global = reduce_values(*dp_, {local})[0];
    weight *= global > 0 ? double(dp_->size()) * local / global : 0.0;
  }
  Tensor loss = model.loss(b.ids.to(device), b.targets.to(device));
  return weight == 1.0 ? loss : loss * weight;
}

void TrainParallel::finish_grads() {
  if (ddp_) ddp_->finish();
}

double TrainParallel::mean_over_dp(double local) {
  if (dp_->size() == 1) return local;
  return reduce_values(*dp_, {local})[0] / double(dp_->size());
}

int64_t TrainParallel::same_on_all_ranks(int64_t value, const char* what) {
  if (world_->size() == 1) return value;
  const std::vector<double> r = reduce_values(*world_, {double(value), -double(value)}, ReduceOp::Max);
  COIL_CHECK(r[0] == -r[1], "the ranks disagree on ", what, " (between ", -r[1], " and ", r[0],
             "): do they all see the same checkpoint.dir?");
  return value;
}

}  // namespace coil
