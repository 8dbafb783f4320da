// The trainer's side of the process grid: replicas or sharded models, micro-batch losses, gradient
// sync and clipping, the setup agreement and full-tensor checkpoints.
#include "trainer/train_parallel.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "parallel/state_shards.h"
#ifdef COIL_HAVE_NCCL
#include "parallel/nccl_communicator.h"
#endif
#include "trainer/clip.h"
#include "trainer/train_loop.h"

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

namespace {

GridShape grid_shape(const RunConfig& c) {
  GridShape g;
  g.dp = int(c.parallel.dp);
  g.tp = int(c.parallel.tp);
  g.sp = int(c.parallel.sp);
  return g;
}

// The optimizer state of each parameter of `model`, by name (matched by identity).
std::map<std::string, AdamWParamState*> states_by_name(const Module& model, const AdamW& opt) {
  std::map<std::string, AdamWParamState*> out;
  for (const auto& [name, p] : model.named_parameters()) {
    AdamWParamState* found = nullptr;
    for (size_t g = 0; g < opt.num_groups() && !found; ++g)
      for (size_t i = 0; i < opt.group(g).params.size(); ++i)
        if (opt.group(g).params[i].same(p))
          found = const_cast<AdamWParamState*>(&opt.state(g, i));
    COIL_CHECK(found, "parameter '", name, "' is not in the optimizer");
    out[name] = found;
  }
  return out;
}

}  // namespace

std::string sp_style_name(const RunConfig& c) {
  if (c.parallel.sp_style != "auto") return c.parallel.sp_style;
  const bool fixed_state = c.model.mixer == "mamba1" || c.model.mixer == "mamba2" ||
                           (c.model.mixer == "linear" && c.model.linear.power != "exp");
  return fixed_state ? "chain" : "gather";
}

ParallelOptions parallel_options(const RunConfig& c) {
  const std::string style = sp_style_name(c);
  ParallelOptions o;
  o.sequence_chain = style == "chain";
  o.sequence_ring = style == "ring";
  o.balanced_causal = style == "balanced";
  return o;
}

bool sharded_layout(const RunConfig& c) {
  return c.parallel.tp * c.parallel.sp > 1 || c.parallel.zero1;
}

std::string resolve_backend(const RunConfig& c, int world_size) {
#ifdef COIL_HAVE_NCCL
  constexpr bool have_nccl = true;
#else
  constexpr bool have_nccl = false;
#endif
  const std::string& b = c.parallel.backend;
  if (b == "nccl") {
    COIL_CHECK(have_nccl, c.source,
               ": parallel.backend is nccl, but this coil was built without NCCL (configure with "
               "-DCOIL_CUDA=ON and NCCL installed; COIL_NCCL=AUTO|ON); use parallel.backend mpi or auto");
    return "nccl";
  }
  if (b == "auto" && have_nccl && c.train.device == "cuda" && world_size > 1) return "nccl";
  return "mpi";
}

CommPtr make_run_world(const RunConfig& c, const CommPtr& world, Device device, bool shares_gpu,
                       RunBackend* chosen) {
  RunBackend rb;
  rb.kind = world->size() == 1 ? "single" : "mpi";
  std::exception_ptr error;
  std::string backend;
  try {
    backend = resolve_backend(c, world->size());
  } catch (...) {
    error = std::current_exception();
  }
  fail_together(*world, error);
  if (backend == "nccl" && world->size() > 1) {
    // Whether any rank's node has more ranks than GPUs (every rank learns it).
    const bool shared = reduce_values(*world, {shares_gpu ? 1.0 : 0.0}, ReduceOp::Max)[0] > 0;
    if (shared && c.parallel.backend == "auto") {
      backend = "mpi";
      rb.note = "auto: a node has more ranks than GPUs, so the ranks share GPUs through MPI";
    } else if (shared) {
      try {
        COIL_FAIL(c.source, ": parallel.backend is nccl, but a node has more ranks than GPUs (rank ",
                  world->rank(), " would share cuda:", device.index,
                  "): start one rank per GPU, or set parallel.backend: mpi to let ranks share a GPU");
      } catch (...) {
        error = std::current_exception();
      }
      fail_together(*world, error);
    }
  }
  if (backend != "nccl") {
    if (chosen) *chosen = rb;
    return world;
  }
#ifdef COIL_HAVE_NCCL
  CommPtr nccl;
  try {
    COIL_CHECK(device.is_cuda(), c.source, ": parallel.backend nccl needs train.device cuda");
    // Every rank reaches the constructor, whose checks (one GPU per rank) every rank agrees on.
    nccl = std::make_shared<NcclCommunicator>(world, device.index, "world");
  } catch (...) {
    error = std::current_exception();
  }
  fail_together(*world, error);
  rb.kind = "nccl";
  if (chosen) *chosen = rb;
  return nccl;
#else
  (void)device;
  if (chosen) *chosen = rb;
  return world;
#endif
}

void check_grid(const RunConfig& c, int world_size) {
  const ParallelConfig& p = c.parallel;
  COIL_CHECK(p.dp * p.tp * p.sp == world_size, c.source, ": parallel.dp x tp x sp = ", p.dp, " x ",
             p.tp, " x ", p.sp, " = ", p.dp * p.tp * p.sp, " rank(s), but the run has ", world_size,
             " (start ", p.dp * p.tp * p.sp, " ranks with mpirun -np ", p.dp * p.tp * p.sp,
             ", or set parallel.dp / tp / sp so that dp x tp x sp = ", world_size, ")");
  if (!sharded_layout(c)) return;
  try {
    validate_parallel_layout(c.model, grid_shape(c), world_size, c.train.seq_len,
                             c.train.batch_size);
  } catch (const Error& e) {
    // One line naming the file; the numbers come from the layout check.
    COIL_FAIL(c.source, ": ", e.message(), " (parallel.dp=", p.dp, ", tp=", p.tp, ", sp=", p.sp,
              ", train.seq_len=", c.train.seq_len, ", train.batch_size=", c.train.batch_size, ")");
  }
}

TrainParallel::TrainParallel(const RunConfig& c, CommPtr world)
    : config_(c), world_(std::move(world)) {
  check_grid(c, world_->size());
  if (sharded_layout(c)) {
    grid_ = std::make_unique<ProcessGrid>(world_, grid_shape(c));
    dp_ = grid_->dp();
  } else {
    dp_ = world_;  // dp is the whole world while tp = sp = 1
  }
}

TrainParallel::~TrainParallel() = default;

Module& TrainParallel::build_model(const ParamOptions& options) {
  if (sharded()) {
    sharded_ = std::make_unique<ParallelLanguageModel>(config_.model, ParallelGroups::of(*grid_),
                                                       parallel_options(config_), options);
    if (!config_.parallel.zero1) adamw_ = make_optimizer(config_, *sharded_);
    return *sharded_;
  }
  replica_ = std::make_unique<LanguageModel>(config_.model, options);
  adamw_ = make_optimizer(config_, *replica_);
  return *replica_;
}

Module& TrainParallel::model() const {
  if (sharded_) return *sharded_;
  COIL_CHECK(replica_, "TrainParallel: build_model was not called");
  return *replica_;
}

LanguageModel& TrainParallel::local_model() const {
  if (sharded_) return sharded_->local();
  COIL_CHECK(replica_, "TrainParallel: build_model was not called");
  return *replica_;
}

int64_t TrainParallel::num_parameters() const {
  return sharded_ ? LanguageModel::count_parameters(config_.model) : replica_->num_parameters();
}

CheckpointMeta TrainParallel::read_checkpoint(const std::string& path,
                                              const std::string& expected_model_yaml) {
  if (!sharded_) return coil::read_checkpoint(path, model(), *adamw_, expected_model_yaml);
  // The full single-rank model and optimizer take the file's tensors (with every check of a
  // single-rank resume); this rank keeps its slices of them.
  LanguageModel full(config_.model, ParamOptions{DType::F32, Device::cpu()});
  std::unique_ptr<AdamW> full_opt = make_optimizer(config_, full);
  const CheckpointMeta meta = coil::read_checkpoint(path, full, *full_opt, expected_model_yaml);
  const auto full_states = states_by_name(full, *full_opt);
  StateDict m, v;
  for (const auto& [name, s] : full_states) {
    m[name] = s->m;
    v[name] = s->v;
  }
  const StateDict params = shard_full_tensors(*sharded_, full.state_dict());
  const StateDict ms = shard_full_tensors(*sharded_, m), vs = shard_full_tensors(*sharded_, v);
  if (zero_ == nullptr && config_.parallel.zero1) {
    // ZeroAdamW is made by start() (collectively, from these parameters): it takes m, v there.
    NoGradGuard no_grad;
    for (const auto& [name, p] : sharded_->named_parameters())
      p.detach().copy_(params.at(name).to(p.device()));
    resume_m_ = ms;
    resume_v_ = vs;
    resume_steps_ = full_opt->step_count();
    return meta;
  }
  AdamW& opt = *adamw_;
  const auto states = states_by_name(*sharded_, opt);
  NoGradGuard no_grad;
  for (const auto& [name, p] : sharded_->named_parameters()) {
    p.detach().copy_(params.at(name).to(p.device()));
    AdamWParamState* s = states.at(name);
    s->m.copy_(ms.at(name).to(s->m.device()));
    s->v.copy_(vs.at(name).to(s->v.device()));
    s->step = full_states.at(name)->step;
  }
  opt.set_step_count(full_opt->step_count());
  return meta;
}

void TrainParallel::start() {
  if (sharded_) {
    // Ranks of one tp coordinate hold the same slices: same start, gradients summed over them.
    const CommPtr& group = sharded_->grad_group();
    if (group->size() > 1) {
      broadcast_parameters(*group, sharded_->parameters());
      DataParallelOptions o;
      o.average = false;  // each rank's gradient is its tokens' share of the global mean's
      ddp_ = std::make_unique<DataParallel>(group, sharded_->parameters(), o);
    }
    if (config_.parallel.zero1) {
      const OptimConfig& oc = config_.optim;
      AdamWParams hp;
      hp.lr = oc.lr;
      hp.beta1 = oc.beta1;
      hp.beta2 = oc.beta2;
      hp.eps = oc.eps;
      hp.weight_decay = oc.weight_decay;  // optim.decay all (run_config checks)
      zero_ = std::make_unique<ZeroAdamW>(group, sharded_->named_parameters(), hp);
      if (!resume_m_.empty()) {
        zero_->load_local_state("m", resume_m_);
        zero_->load_local_state("v", resume_v_);
        zero_->set_step_count(resume_steps_);
        resume_m_.clear();
        resume_v_.clear();
      }
    }
    return;
  }
  if (dp_->size() == 1) return;
  broadcast_parameters(*dp_, replica_->parameters());
  ddp_ = std::make_unique<DataParallel>(dp_, replica_->parameters());
}

Tensor TrainParallel::micro_loss(const Batch& b, Device device, double scale, bool last_micro) {
  if (ddp_) ddp_->set_sync(last_micro);
  if (sharded_) {
    Tensor loss = sharded_->loss(sharded_->local_batch(b.ids).to(device),
                                 sharded_->local_batch(b.targets).to(device));
    return scale == 1.0 ? loss : loss * scale;
  }
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
  Tensor loss = replica_->loss(b.ids.to(device), b.targets.to(device));
  return weight == 1.0 ? loss : loss * weight;
}

void TrainParallel::finish_grads() {
  if (ddp_) ddp_->finish();
  if (sharded_) sharded_->finish_tp_grads();
}

double TrainParallel::clip_grad_norm(double max_norm) {
  if (!sharded_) return coil::clip_grad_norm(replica_->parameters(), max_norm);
  const double norm = sharded_->global_grad_norm();
  if (max_norm <= 0 || !std::isfinite(norm) || norm <= max_norm) return norm;
  const double c = max_norm / (norm + 1e-6);  // as trainer/clip.cpp
  NoGradGuard no_grad;
  for (const Tensor& p : sharded_->parameters()) {
    Tensor g = p.grad();
    if (g.defined()) g.copy_(coil::scale(g, c));
  }
  return norm;
}

void TrainParallel::set_lr(double lr) {
  if (zero_) zero_->set_lr(lr);
  if (adamw_) adamw_->set_lr(lr);
}

void TrainParallel::zero_grad() {
  if (zero_) zero_->zero_grad();
  if (adamw_) adamw_->zero_grad();
}

void TrainParallel::step() {
  if (adamw_) {
    adamw_->step();
    return;
  }
  COIL_CHECK(zero_, "TrainParallel: start() was not called");
  // The gradients are already summed over the group (see the header): each rank hands ZeroAdamW
  // 1/group of the sum, and its reduce-scatter adds the shares back up.
  const int64_t G = sharded_->grad_group()->size();
  if (G > 1) {
    NoGradGuard no_grad;
    for (const Tensor& p : sharded_->parameters()) {
      Tensor g = p.grad();
      if (g.defined()) g.copy_(coil::scale(g, 1.0 / double(G)));
    }
  }
  zero_->step();
}

CheckpointTensors TrainParallel::full_tensors() const {
  CheckpointTensors t;
  StateDict m, v;
  std::map<std::string, int64_t> steps;
  if (zero_) {
    t.step_count = zero_->step_count();
    m = zero_->local_state("m");  // collective over the group
    v = zero_->local_state("v");
    for (const auto& [name, p] : m) steps[name] = zero_->step_count();
  } else {
    t.step_count = adamw_->step_count();
    const auto states = states_by_name(model(), *adamw_);
    if (!sharded_) {
      t.params = replica_->named_parameters();
      for (const auto& [name, s] : states) t.optim[name] = *s;
      return t;
    }
    for (const auto& [name, s] : states) {
      m[name] = s->m;
      v[name] = s->v;
      steps[name] = s->step;
    }
  }
  // Collective over tp; the dp and sp replicas of a slice are identical, so any rank's will do.
  const StateDict params = gather_full_parameters(*sharded_);
  const StateDict fm = gather_full_tensors(*sharded_, m), fv = gather_full_tensors(*sharded_, v);
  for (const auto& [name, p] : sharded_->named_parameters()) {
    t.params.push_back({name, params.at(name)});
    t.optim[name] = AdamWParamState{fm.at(name), fv.at(name), steps.at(name)};
  }
  return t;
}

double TrainParallel::mean_over_dp(double local) {
  if (sharded_ || dp_->size() == 1) return local;
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
