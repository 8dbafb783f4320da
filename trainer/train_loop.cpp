// The training loop: one optimizer step = grad_accum micro-batches, then clip, NaN check, AdamW.
#include "trainer/train_loop.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <ostream>

#include "core/allocator.h"
#include "core/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random.h"
#include "parallel/counting_communicator.h"
#include "trainer/adamw.h"
#include "trainer/metrics.h"
#include "trainer/schedule.h"
#include "trainer/shard_source.h"
#include "trainer/train_parallel.h"

namespace coil {

namespace {

using Clock = std::chrono::steady_clock;

// Under mpirun each rank of a node takes the GPU of its node-local rank (ranks share GPUs round
// robin when there are more ranks than GPUs: only the MPI communicator allows that, and
// *shares_gpu tells make_run_world).
Device run_device(const RunConfig& c, bool* shares_gpu) {
  *shares_gpu = false;
  if (c.train.device == "cpu") return Device::cpu();
  COIL_CHECK(device_type_available(DeviceType::CUDA), c.source,
             ": train.device is cuda but no CUDA device is available in this build or machine");
  int local_rank = 0;
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* e = std::getenv(v)) {
      local_rank = std::atoi(e);
      break;
    }
  const int count = hooks_for(DeviceType::CUDA).device_count();
  *shares_gpu = count > 0 && local_rank >= count;
  return Device::cuda(count > 0 ? local_rank % count : 0);
}

// The same held-out batches every time; each rank its slice, averaged to the global mean.
// Under bf16 the held-out forward runs with the same autocast as training.
double held_out_loss(BatchSource& src, const SourceState& start, int64_t batches, Device device,
                     TrainParallel& par, bool bf16) {
  NoGradGuard no_grad;
  AutocastGuard autocast(bf16);
  src.restore(start);
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i)
    sum += par.micro_loss(src.next_batch(), device, 1.0, true).item();
  return par.mean_over_dp(sum) / double(batches);
}

}  // namespace

std::unique_ptr<AdamW> make_optimizer(const RunConfig& c, const Module& model) {
  AdamWOptions aopt;
  aopt.lr = c.optim.lr;
  aopt.beta1 = c.optim.beta1;
  aopt.beta2 = c.optim.beta2;
  aopt.eps = c.optim.eps;
  aopt.weight_decay = c.optim.weight_decay;
  auto opt = std::make_unique<AdamW>(aopt);
  std::vector<Tensor> decay, no_decay;
  for (const auto& [name, p] : model.named_parameters())
    (c.optim.decay == "all" || p.dim() >= 2 ? decay : no_decay).push_back(p);
  opt->add_param_group(decay, {}, "decay");
  if (!no_decay.empty()) {
    ParamGroupOptions none;
    none.weight_decay = 0.0;
    opt->add_param_group(no_decay, none, "no_decay");
  }
  return opt;
}

std::unique_ptr<BatchSource> make_train_source(const RunConfig& c, int dp_rank, int dp_size) {
  // A sharded model takes its (B/dp, T/sp) block of the whole micro-batch itself.
  if (sharded_layout(c)) {
    dp_rank = 0;
    dp_size = 1;
  }
  if (c.data.kind == "shards") return make_shard_source(c, "train", dp_rank, dp_size);
  return std::make_unique<SyntheticSource>(c.train.batch_size, c.train.seq_len, c.model.vocab,
                                           c.data.period, c.data.seed, dp_rank, dp_size);
}

std::unique_ptr<BatchSource> make_eval_source(const RunConfig& c, int dp_rank, int dp_size) {
  if (sharded_layout(c)) {
    dp_rank = 0;
    dp_size = 1;
  }
  if (c.data.kind == "shards") {
    if (c.data.eval.empty()) return nullptr;
    return make_shard_source(c, "eval", dp_rank, dp_size);
  }
  return std::make_unique<SyntheticSource>(c.train.batch_size, c.train.seq_len, c.model.vocab,
                                           c.data.period, c.data.eval_seed, dp_rank, dp_size);
}

TrainResult train(const RunConfig& cfg, BatchSource& train_src, BatchSource* eval_src,
                  const TrainOptions& opt) {
  // The device first: the communicator depends on it (parallel.backend nccl binds one GPU per
  // rank). Every rank goes on or fails together.
  const CommPtr launch_world = opt.world ? opt.world : std::make_shared<SingleCommunicator>();
  Device device = Device::cpu();
  bool shares_gpu = false;
  {
    std::exception_ptr device_error;
    try {
      device = run_device(cfg, &shares_gpu);
    } catch (...) {
      device_error = std::current_exception();
    }
    fail_together(*launch_world, device_error);
  }
  RunBackend backend_used;
  CommPtr world = make_run_world(cfg, launch_world, device, shares_gpu, &backend_used);
  std::shared_ptr<CommCounters> comm_counts;
  if (cfg.logging.count_comm) {
    // Wraps the world before the grid splits it, so every group's traffic is counted.
    comm_counts = std::make_shared<CommCounters>();
    world = std::make_shared<CountingCommunicator>(world, comm_counts);
  }
  TrainParallel par(cfg, world);
  std::ostream* out = par.writer() ? opt.out : nullptr;
  char line[1024];
  const std::string config_yaml = run_config_to_yaml(cfg);
  const std::string model_yaml = model_config_to_yaml(cfg.model);
  if (out) *out << "coil train: resolved config\n" << config_yaml << std::flush;

  // Setup, on every rank without communication; then all ranks go on or fail together.
  const LRSchedule schedule = cfg.lr_schedule();
  Generator rng(cfg.train.seed);  // nothing draws from it yet (no dropout); saved for exact resume
  const SourceState eval_start = eval_src ? eval_src->state() : SourceState{};
  TrainResult result;
  int64_t step = 0, tokens = 0, skipped = 0, bad_in_a_row = 0;
  JsonlWriter jsonl;
  std::exception_ptr setup_error;
  try {
    par.build_model(ParamOptions{DType::F32, device});
    std::string resume_path = opt.resume;
    if (resume_path == "auto") {
      std::vector<std::string> unreadable;
      resume_path = latest_complete_checkpoint(cfg.checkpoint.dir, &unreadable);
      if (out)
        for (const auto& u : unreadable) *out << "warning: skipping unreadable " << u << "\n";
      if (resume_path.empty() && out)
        *out << "resume auto: no complete checkpoint in '" << cfg.checkpoint.dir
             << "', starting at step 0\n";
    } else if (resume_path.empty()) {
      const auto existing = list_checkpoints(cfg.checkpoint.dir);
      COIL_CHECK(existing.empty(), "checkpoint.dir '", cfg.checkpoint.dir, "' already holds ",
                 existing.size(), " checkpoint(s) (newest ", existing.back().second,
                 "): resume with --resume auto, or choose another checkpoint.dir");
    }
    if (!resume_path.empty()) {
      // Every rank reads the full tensors and keeps its part (the whole of them for dp replicas).
      const CheckpointMeta meta = par.read_checkpoint(resume_path, model_yaml);
      step = meta.step;
      tokens = meta.tokens;
      skipped = meta.skipped_steps;
      bad_in_a_row = meta.bad_in_a_row;
      if (auto it = meta.rng.find("trainer"); it != meta.rng.end())
        rng.set_state(it->second.first, it->second.second);
      auto src = meta.sources.find("train");
      COIL_CHECK(src != meta.sources.end(), "checkpoint '", resume_path,
                 "' has no /data/train source state");
      train_src.restore(src->second);
      if (auto ev = meta.sources.find("eval"); eval_src && ev != meta.sources.end())
        eval_src->restore(ev->second);
      result.resumed_from = resume_path;
      if (out) *out << "resumed from " << resume_path << " at step " << step << "\n";
    }
    if (par.writer() && !cfg.logging.jsonl.empty()) jsonl = JsonlWriter(cfg.logging.jsonl);
  } catch (...) {
    setup_error = std::current_exception();
  }
  fail_together(par.world(), setup_error);
  par.same_on_all_ranks(step, "the step to resume from");
  par.start();
  result.start_step = step;

  const int64_t steps = cfg.train.steps;
  // train.batch_size is the global micro-batch: tokens count every dp rank's rows.
  const int64_t tokens_per_step = cfg.train.batch_size * cfg.train.seq_len * cfg.train.grad_accum;
  const int64_t nparams = par.num_parameters();
  const double flops_per_token = train_flops_per_token(cfg.model, nparams, cfg.train.seq_len);
  // The banner names the communicator, so a log says whether NCCL or MPI moved the tensors.
  std::string backend = "backend ";
  backend.append(backend_used.kind).append(", ");
  backend.append(backend_used.kind == "single" ? device_name(device) : world->name());
  if (!backend_used.note.empty()) backend.append("; ").append(backend_used.note);
  if (cfg.parallel.sp > 1) backend.append("; sp style ").append(sp_style_name(cfg));
  if (out) {
    std::snprintf(line, sizeof line,
                  "run %s: %s model, %lld parameters; %lld x %lld tokens x %lld accum per step "
                  "over %d dp x %lld tp x %lld sp rank(s) (%s), steps %lld..%lld, data %s\n",
                  cfg.name.c_str(), cfg.model.mixer.c_str(), (long long)nparams,
                  (long long)cfg.train.batch_size, (long long)cfg.train.seq_len,
                  (long long)cfg.train.grad_accum, par.dp_size(), (long long)cfg.parallel.tp,
                  (long long)cfg.parallel.sp, backend.c_str(), (long long)step, (long long)steps,
                  train_src.describe().c_str());
    *out << line << std::flush;
  }

  auto save = [&](int64_t at) {
    const std::string path = checkpoint_path(cfg.checkpoint.dir, at);
    std::exception_ptr error;
    // Collective: every rank takes part in gathering the full tensors (dp replicas: their own).
    const CheckpointTensors tensors = par.full_tensors();
    if (par.writer()) {
      try {
        std::filesystem::create_directories(cfg.checkpoint.dir);
        CheckpointMeta meta;
        meta.step = at;
        meta.tokens = tokens;
        meta.skipped_steps = skipped;
        meta.bad_in_a_row = bad_in_a_row;
        meta.config_yaml = config_yaml;
        meta.model_config_yaml = model_yaml;
        meta.schedule = schedule;
        meta.rng["trainer"] = {rng.seed(), rng.offset()};
        meta.sources["train"] = train_src.state();
        if (eval_src) meta.sources["eval"] = eval_start;
        write_checkpoint(path, tensors, meta, opt.hooks.checkpoint);
        prune_checkpoints(cfg.checkpoint.dir, cfg.checkpoint.keep_last);
        if (out) *out << "checkpoint " << path << "\n" << std::flush;
      } catch (...) {
        error = std::current_exception();
      }
    }
    fail_together(par.world(), error);  // the other ranks wait here until it is written
    result.last_checkpoint = path;
  };

  const auto run_start = Clock::now();
  auto window_start = run_start;
  int64_t window_tokens = 0, window_steps = 0;
  int64_t window_comm = comm_counts ? comm_counts->total_bytes() : 0;
  Allocator& alloc = allocator_for(device.type);
  alloc.reset_peak(device.index);
  const double micro_scale = 1.0 / double(cfg.train.grad_accum);
  const bool bf16 = cfg.precision == "bf16";
  while (step < steps) {
    const double lr = lr_at(schedule, step);
    par.set_lr(lr);
    par.zero_grad();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < cfg.train.grad_accum; ++micro) {
      const Batch b = train_src.next_batch();
      // Each micro-batch contributes 1/grad_accum of the mean loss's gradient. bf16: the forward
      // and loss run under autocast (bf16 GEMMs on the fp32 master weights); backward follows the
      // recorded casts outside the guard, and the optimizer updates the fp32 masters.
      Tensor loss;
      {
        AutocastGuard autocast(bf16);
        loss = par.micro_loss(b, device, micro_scale, micro + 1 == cfg.train.grad_accum);
      }
      loss.backward();
      loss_sum += loss.item();
    }
    par.finish_grads();
    const double loss_value = par.mean_over_dp(loss_sum);  // the mean over the micro-batches
    const double norm = par.clip_grad_norm(cfg.optim.clip);
    StepRecord rec{step + 1, loss_value, lr, norm, false};
    if (!std::isfinite(loss_value) || !std::isfinite(norm)) {
      rec.skipped = true;
      ++skipped;
      ++bad_in_a_row;
      par.zero_grad();
    } else {
      par.step();
      bad_in_a_row = 0;
    }
    ++step;
    tokens += tokens_per_step;
    window_tokens += tokens_per_step;
    ++window_steps;
    result.steps.push_back(rec);
    if (opt.hooks.after_step) opt.hooks.after_step(step, par.local_model());

    const bool last = step == steps;
    const bool stop_nan = bad_in_a_row >= cfg.train.nan_tolerance;
    double eval_loss = NAN;
    const bool do_eval =
        eval_src && cfg.train.eval_every > 0 && (step % cfg.train.eval_every == 0 || last);
    if (do_eval) {
      eval_loss =
          held_out_loss(*eval_src, eval_start, cfg.train.eval_batches, device, par, bf16);
      result.eval_losses.push_back({step, eval_loss});
    }
    const bool do_log = cfg.train.log_every > 0 &&
                        (step % cfg.train.log_every == 0 || last || step == result.start_step + 1);
    if (do_log || do_eval || stop_nan) {
      const auto now = Clock::now();
      const double window_s = std::chrono::duration<double>(now - window_start).count();
      const double elapsed = std::chrono::duration<double>(now - run_start).count();
      const double tok_s = window_tokens / std::max(window_s, 1e-9);
      const double mfu = cfg.logging.peak_tflops > 0
                             ? flops_per_token * tok_s / (cfg.logging.peak_tflops * 1e12)
                             : NAN;
      const double eta = elapsed / double(step - result.start_step) * double(steps - step);
      const MemoryStats mem = alloc.stats(device.index);
      // Bytes this rank communicated per step over the window (the held-out passes of an eval step
      // included).
      const double comm_per_step =
          comm_counts ? double(comm_counts->total_bytes() - window_comm) /
                            double(std::max<int64_t>(window_steps, 1))
                      : NAN;
      if (out && (do_log || stop_nan)) {
        std::string mfu_text = std::isfinite(mfu) ? "" : "-";
        if (std::isfinite(mfu)) {
          char b[32];
          std::snprintf(b, sizeof b, "%.1f%%", 100 * mfu);
          mfu_text = b;
        }
        std::snprintf(line, sizeof line,
                      "step %6lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | MFU %s | "
                      "mem %s (peak %s)%s | ETA %s%s\n",
                      (long long)step, (long long)steps, loss_value, lr, norm, tok_s,
                      mfu_text.c_str(), format_bytes(mem.current_bytes).c_str(),
                      format_bytes(mem.peak_bytes).c_str(),
                      comm_counts ? (" | comm " + format_bytes(int64_t(comm_per_step)) + "/step").c_str()
                                  : "",
                      format_duration(eta).c_str(),
                      rec.skipped ? " | SKIPPED (non-finite)" : "");
        *out << line;
        if (do_eval) {
          std::snprintf(line, sizeof line, "step %6lld/%lld | held-out loss %.4f\n",
                        (long long)step, (long long)steps, eval_loss);
          *out << line;
        }
        *out << std::flush;
      }
      std::vector<std::pair<std::string, JsonlWriter::Value>> f = {
          {"run", cfg.name},
          {"step", step},
          {"loss", loss_value},
          {"lr", lr},
          {"grad_norm", norm},
          {"tokens", tokens},
          {"tokens_per_s", tok_s},
          {"mfu", mfu},
          {"mem_bytes", mem.current_bytes},
          {"peak_mem_bytes", mem.peak_bytes},
          {"skipped_steps", skipped},
          {"elapsed_s", elapsed}};
      if (do_eval) f.push_back({"eval_loss", eval_loss});
      if (comm_counts) f.push_back({"comm_bytes_per_step", comm_per_step});
      jsonl.write(f);
      window_start = now;
      window_tokens = 0;
      window_steps = 0;
      if (comm_counts) window_comm = comm_counts->total_bytes();
    }
    if (stop_nan) {
      result.stopped_non_finite = true;
      if (out)
        *out << "stopping: " << bad_in_a_row << " non-finite steps in a row (train.nan_tolerance "
             << cfg.train.nan_tolerance << ")\n";
      save(step);
      break;
    }
    if ((last && cfg.checkpoint.at_end) || (cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0))
      save(step);
    if (opt.hooks.stop_after > 0 && step >= opt.hooks.stop_after) break;
  }
  result.end_step = step;
  return result;
}

}  // namespace coil
