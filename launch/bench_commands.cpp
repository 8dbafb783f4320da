// `coil bench train --config MODEL.yaml ...`: times full training steps (forward + loss under the
// chosen precision, backward, global-norm clip, AdamW on fp32 master weights) on random tokens,
// after warm-up steps, and prints one table row: step time, tokens/s, MFU and peak memory. The FLOP
// count is trainer/metrics.h's (6 N + the causal attention products), the same for every run so
// rows compare.
#include "launch/bench_commands.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/allocator.h"
#include "core/autocast.h"
#include "core/random.h"
#include "launch/cli_args.h"
#include "layers/lm.h"
#include "trainer/adamw.h"
#include "trainer/clip.h"
#include "trainer/metrics.h"
#include "trainer/model_yaml.h"

namespace coil::cli {

namespace {

const char* kBenchUsage =
    "usage: coil bench train --config MODEL.yaml [options]\n"
    "\n"
    "Times end-to-end training steps of a model config (configs/models/*.yaml) on random tokens:\n"
    "forward and loss (bf16 autocast or fp32), backward, global-norm clip 1.0, AdamW on fp32\n"
    "master weights. Prints the median step time, tokens/s, MFU and the allocator's peak memory.\n"
    "\n"
    "options:\n"
    "  --config FILE        model config (required)\n"
    "  --batch B            sequences per step (default 8)\n"
    "  --seq T              tokens per sequence (default 2048)\n"
    "  --steps N            timed steps (default 10)\n"
    "  --warmup W           untimed steps first (default 3)\n"
    "  --precision P        bf16 | fp32 (default bf16; bf16 needs --device cuda)\n"
    "  --device D           cuda | cpu (default cuda)\n"
    "  --recompute          recompute each block's activations in backward\n"
    "  --form F             linear mixers: auto | quadratic | chunked (default: the config's)\n"
    "  --peak-tflops X      the device's dense peak for MFU (default 989, H100 SXM bf16)\n"
    "  --label TEXT         the row's name (default: the config file's stem)\n"
    "  --json FILE          also append the row as one JSON object to FILE\n"
    "  -h, --help           show this help\n";

struct TrainBenchOptions {
  std::string config, label, json, precision = "bf16", device = "cuda", form;
  int64_t batch = 8, seq = 2048, steps = 10, warmup = 3;
  bool recompute = false;
  double peak_tflops = 989.0;
};

void synchronize(Device d) {
  if (d.type != DeviceType::CPU) hooks_for(d.type).synchronize(d.index);
}

int bench_train(const TrainBenchOptions& o) {
  ModelConfig mc = load_model_config(o.config);
  if (o.recompute) mc.recompute = true;
  if (!o.form.empty()) mc.linear.form = o.form;
  mc.validate();
  const bool cuda = o.device == "cuda";
  COIL_CHECK(!cuda || device_type_available(DeviceType::CUDA),
             "coil bench train: --device cuda but no CUDA device is available in this build or machine");
  COIL_CHECK(o.precision == "fp32" || cuda, "coil bench train: --precision bf16 needs --device cuda");
  const Device dev = cuda ? Device::cuda(0) : Device::cpu();
  LanguageModel model(mc, ParamOptions{DType::F32, dev});
  const std::vector<Tensor> params = model.parameters();
  int64_t nparams = 0;
  for (const Tensor& p : params) nparams += p.numel();
  AdamWOptions ao;
  ao.lr = 1e-4;
  ao.beta1 = 0.9;
  ao.beta2 = 0.95;
  ao.weight_decay = 0.1;
  AdamW optimizer(params, ao);

  // Random tokens; targets are the ids shifted by one (the loss value is irrelevant here).
  Generator gen(1234);
  std::vector<int64_t> tok(size_t(o.batch * (o.seq + 1)));
  for (int64_t& t : tok) t = int64_t(gen.next_u64() % uint64_t(mc.vocab));
  Tensor ids_cpu = Tensor::from_ints(tok, {o.batch, o.seq + 1}, DType::I32);
  Tensor ids = ids_cpu.narrow(1, 0, o.seq).contiguous().to(dev);
  Tensor targets = ids_cpu.narrow(1, 1, o.seq).contiguous().to(dev);

  Allocator& alloc = allocator_for(dev.type);
  const bool bf16 = o.precision == "bf16";
  std::vector<double> step_ms;
  double last_loss = NAN;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    if (s == o.warmup) {
      synchronize(dev);
      alloc.reset_peak(dev.index);
    }
    const auto t0 = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    Tensor loss;
    {
      AutocastGuard autocast(bf16);
      loss = model.loss(ids, targets);
    }
    loss.backward();
    clip_grad_norm(params, 1.0);
    optimizer.step();
    last_loss = loss.item();
    synchronize(dev);
    const auto t1 = std::chrono::steady_clock::now();
    if (s >= o.warmup) step_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(step_ms.begin(), step_ms.end());
  const double med = step_ms[step_ms.size() / 2];
  const double tokens = double(o.batch * o.seq);
  const double tok_s = tokens / (med * 1e-3);
  const double flops = train_flops_per_token(mc, nparams, o.seq);
  const double mfu = flops * tok_s / (o.peak_tflops * 1e12);
  const MemoryStats mem = alloc.stats(dev.index);
  std::string label = o.label;
  if (label.empty()) {
    label = o.config.substr(o.config.find_last_of('/') + 1);
    label = label.substr(0, label.rfind(".yaml"));
  }
  std::printf("%-22s %8s %5s %6s %8s %10s %11s %6s %10s %9s\n", "model", "params", "B", "T", "prec",
              "step ms", "tokens/s", "MFU", "peak mem", "loss");
  std::printf("%-22s %7.1fM %5lld %6lld %8s %10.2f %11.0f %5.1f%% %10s %9.4f\n", label.c_str(),
              nparams / 1e6, (long long)o.batch, (long long)o.seq, o.precision.c_str(), med, tok_s,
              100 * mfu, format_bytes(mem.peak_bytes).c_str(), last_loss);
  if (!o.json.empty()) {
    std::ofstream f(o.json, std::ios::app);
    COIL_CHECK(f, "coil bench train: cannot open --json file ", o.json);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"bench\": \"train\", \"model\": \"%s\", \"params\": %lld, \"batch\": %lld, "
                  "\"seq\": %lld, \"precision\": \"%s\", \"device\": \"%s\", \"step_ms\": %.4f, "
                  "\"tokens_per_s\": %.1f, \"mfu\": %.4f, \"peak_bytes\": %lld}\n",
                  label.c_str(), (long long)nparams, (long long)o.batch, (long long)o.seq,
                  o.precision.c_str(), o.device.c_str(), med, tok_s, mfu, (long long)mem.peak_bytes);
    f << buf;
  }
  return 0;
}

}  // namespace

int run_bench_command(const std::vector<std::string>& args) {
  // A bare `coil bench` shows the usage and fails, as a missing subcommand should.
  if (args.empty()) {
    std::cout << kBenchUsage;
    return kUsageError;
  }
  CLI::App app("", "coil bench");
  set_usage(&app, kBenchUsage);
  CLI::App* train = app.add_subcommand("train");
  set_usage(train, kBenchUsage);
  TrainBenchOptions o;
  train->add_option("--config", o.config)->required();
  train->add_option("--batch", o.batch)->check(int_at_least(1));
  train->add_option("--seq", o.seq)->check(int_at_least(1));
  train->add_option("--steps", o.steps)->check(int_at_least(1));
  train->add_option("--warmup", o.warmup)->check(int_at_least(0));
  train->add_option("--precision", o.precision)->check(one_of({"bf16", "fp32"}));
  train->add_option("--device", o.device)->check(one_of({"cuda", "cpu"}));
  train->add_flag("--recompute", o.recompute);
  train->add_option("--form", o.form)->check(one_of({"auto", "quadratic", "chunked"}));
  train->add_option("--peak-tflops", o.peak_tflops)->check(number());
  train->add_option("--label", o.label);
  train->add_option("--json", o.json);
  return parse_and_run(app, args, [&] {
    if (!train->parsed()) throw UsageError("'coil bench' expects a benchmark (train)");
    if (!(o.peak_tflops > 0)) throw UsageError("option --peak-tflops must be > 0");
    return bench_train(o);
  });
}

}  // namespace coil::cli
