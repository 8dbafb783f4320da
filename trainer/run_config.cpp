// Run config: --set overrides on the YAML tree, strict section readers, cross-field checks, and the
// resolved config as YAML.
#include "trainer/run_config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <filesystem>
#include <map>
#include <optional>

#include "core/error.h"
#include "parallel/sharded_model.h"
#include "trainer/model_yaml.h"
#include "trainer/yaml_fields.h"

namespace coil {

namespace {

using yaml::Field;

struct Override {
  std::string arg;   // as given: "optim.lr=3e-4"
  std::string path;  // "optim.lr"
};

Override apply_override(YAML::Node& root, const std::string& arg) {
  const size_t eq = arg.find('=');
  COIL_CHECK(eq != std::string::npos && eq > 0, "--set ", arg,
             ": expected key.path=value (e.g. --set optim.lr=3e-4)");
  const std::string path = arg.substr(0, eq);
  std::vector<std::string> keys;
  for (size_t start = 0;;) {
    const size_t dot = path.find('.', start);
    keys.push_back(path.substr(start, dot - start));
    COIL_CHECK(!keys.back().empty(), "--set ", arg, ": empty key in '", path, "'");
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  YAML::Node value;
  try {
    value = YAML::Load(arg.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    COIL_FAIL("--set ", arg, ": malformed YAML value: ", e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  COIL_CHECK(root.IsMap(), "--set ", arg, ": the config file is not a mapping");
  YAML::Node parent = root;
  std::string walked;
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    walked = yaml::join_path(walked, keys[i]);
    YAML::Node child = parent[keys[i]];
    if (!child.IsDefined() || child.IsNull()) {
      child = YAML::Node(YAML::NodeType::Map);
    } else if (!child.IsMap()) {
      COIL_FAIL("--set ", arg, ": '", walked, "' is ", yaml::describe(child),
                ", not a mapping with keys");
    }
    parent.reset(child);
  }
  parent[keys.back()] = value;
  return {arg, path};
}

// A message "FILE[:LINE]: PATH: ..." about a key an override set is re-attributed to the override.
[[noreturn]] void rethrow_for_override(const Error& e, const std::string& file,
                                       const std::vector<Override>& overrides) {
  const std::string& m = e.message();
  if (m.rfind(file, 0) == 0) {
    size_t pos = file.size();
    if (pos < m.size() && m[pos] == ':') {
      size_t d = pos + 1;
      while (d < m.size() && std::isdigit(static_cast<unsigned char>(m[d]))) ++d;
      if (d > pos + 1) pos = d;
    }
    if (m.compare(pos, 2, ": ") == 0) {
      const std::string rest = m.substr(pos + 2);
      for (const Override& o : overrides) {
        const bool hit = rest.rfind(o.path, 0) == 0 &&
                         (rest.size() == o.path.size() || rest[o.path.size()] == ':' ||
                          rest[o.path.size()] == '.' || rest[o.path.size()] == '[');
        if (hit) COIL_FAIL("--set ", o.arg, ": ", rest);
      }
    }
  }
  throw e;
}

Field betas_field(const std::string& file, OptimConfig& o) {
  return {"betas", [&o, file](const YAML::Node& n, const std::string& path) {
            if (!n.IsSequence() || n.size() != 2)
              yaml::fail(file, n, path, "expected [beta1, beta2], got " + yaml::describe(n));
            double b[2];
            for (size_t i = 0; i < 2; ++i) {
              const std::string p = path + "[" + std::to_string(i) + "]";
              b[i] = yaml::read_double(n[i], file, p);
              if (!(b[i] >= 0.0 && b[i] < 1.0))
                yaml::fail(file, n[i], p, "must be in [0, 1), got " + n[i].Scalar());
            }
            o.beta1 = b[0];
            o.beta2 = b[1];
          }};
}

Field section(const std::string& name, std::map<std::string, YAML::Node>& nodes,
              std::function<std::vector<Field>()> fields, const std::string& file) {
  return {name, [=, &nodes](const YAML::Node& v, const std::string& path) {
            nodes[name] = v;
            yaml::read_mapping(v, file, path, fields());
          }};
}

RunConfig read_run_config(const YAML::Node& root, const std::string& file) {
  RunConfig c;
  c.source = file;
  const std::string& f = file;
  std::map<std::string, YAML::Node> nodes;
  std::optional<ModelConfig> model;
  bool has_name = false, has_dir = false;
  std::vector<Field> fields = {
      {"name",
       [&](const YAML::Node& v, const std::string& p) {
         c.name = yaml::read_string(v, f, p);
         if (c.name.empty() || c.name.find('/') != std::string::npos)
           yaml::fail(f, v, p, "expected a non-empty name without '/', got '" + c.name + "'");
         has_name = true;
       }},
      {"model",
       [&](const YAML::Node& v, const std::string& p) { model = model_config_from_yaml(v, f, p); }},
      section(
          "data", nodes,
          [&] {
            return std::vector<Field>{
                yaml::string_field(f, "kind", &c.data.kind, {"synthetic", "shards"}),
                yaml::int_field(f, "period", &c.data.period, 1),
                yaml::uint_field(f, "seed", &c.data.seed),
                yaml::uint_field(f, "eval_seed", &c.data.eval_seed),
                yaml::string_field(f, "dir", &c.data.dir),
                yaml::string_field(f, "train", &c.data.train),
                yaml::string_field(f, "eval", &c.data.eval),
                yaml::string_field(f, "mode", &c.data.mode, {"packed", "document"}),
                yaml::bool_field(f, "shuffle", &c.data.shuffle)};
          },
          f),
      section(
          "optim", nodes,
          [&] {
            return std::vector<Field>{
                yaml::double_field(f, "lr", &c.optim.lr, 0.0, false), betas_field(f, c.optim),
                yaml::double_field(f, "eps", &c.optim.eps, 0.0, true),
                yaml::double_field(f, "weight_decay", &c.optim.weight_decay, 0.0, false),
                yaml::string_field(f, "decay", &c.optim.decay, {"all", "matrices"}),
                yaml::double_field(f, "clip", &c.optim.clip, 0.0, false)};
          },
          f),
      section(
          "schedule", nodes,
          [&] {
            return std::vector<Field>{
                yaml::string_field(f, "kind", &c.schedule.kind,
                                   {"constant", "warmup_linear", "warmup_cosine"}),
                yaml::int_field(f, "warmup", &c.schedule.warmup, 0),
                yaml::int_field(f, "decay_end_step", &c.schedule.decay_end_step, 0),
                yaml::double_field(f, "final_lr", &c.schedule.final_lr, 0.0, false)};
          },
          f),
      section(
          "train", nodes,
          [&] {
            TrainConfig& t = c.train;
            return std::vector<Field>{yaml::int_field(f, "steps", &t.steps, 1),
                                      yaml::int_field(f, "batch_size", &t.batch_size, 1),
                                      yaml::int_field(f, "seq_len", &t.seq_len, 1),
                                      yaml::int_field(f, "grad_accum", &t.grad_accum, 1),
                                      yaml::uint_field(f, "seed", &t.seed),
                                      yaml::int_field(f, "eval_every", &t.eval_every, 0),
                                      yaml::int_field(f, "eval_batches", &t.eval_batches, 1),
                                      yaml::int_field(f, "log_every", &t.log_every, 0),
                                      yaml::int_field(f, "nan_tolerance", &t.nan_tolerance, 1),
                                      yaml::string_field(f, "device", &t.device, {"cpu", "cuda"})};
          },
          f),
      {"precision",
       [&](const YAML::Node& v, const std::string& p) {
         nodes["precision"] = v;
         yaml::string_field(f, "precision", &c.precision, {"fp32", "bf16"}).read(v, p);
       }},
      section(
          "parallel", nodes,
          [&] {
            return std::vector<Field>{yaml::int_field(f, "dp", &c.parallel.dp, 1),
                                      yaml::int_field(f, "tp", &c.parallel.tp, 1),
                                      yaml::int_field(f, "sp", &c.parallel.sp, 1),
                                      yaml::bool_field(f, "zero1", &c.parallel.zero1),
                                      yaml::string_field(f, "backend", &c.parallel.backend,
                                                         {"auto", "mpi", "nccl"}),
                                      yaml::string_field(f, "sp_style", &c.parallel.sp_style,
                                                         {"auto", "chain", "gather", "ring", "balanced"})};
          },
          f),
      section(
          "checkpoint", nodes,
          [&] {
            return std::vector<Field>{{"dir",
                                       [&](const YAML::Node& v, const std::string& p) {
                                         c.checkpoint.dir = yaml::read_string(v, f, p);
                                         if (c.checkpoint.dir.empty())
                                           yaml::fail(f, v, p, "must not be empty");
                                         has_dir = true;
                                       }},
                                      yaml::int_field(f, "every", &c.checkpoint.every, 0),
                                      yaml::int_field(f, "keep_last", &c.checkpoint.keep_last, 0),
                                      yaml::bool_field(f, "at_end", &c.checkpoint.at_end)};
          },
          f),
      section(
          "logging", nodes,
          [&] {
            return std::vector<Field>{
                yaml::string_field(f, "jsonl", &c.logging.jsonl),
                yaml::double_field(f, "peak_tflops", &c.logging.peak_tflops, 0.0, false),
                yaml::bool_field(f, "count_comm", &c.logging.count_comm)};
          },
          f),
  };
  yaml::read_mapping(root, file, "", fields);
  if (!model) yaml::fail(file, root, "", "missing section 'model' (the model to train)");
  c.model = *model;
  if (!has_name) c.name = std::filesystem::path(file).stem().string();
  if (!has_dir) c.checkpoint.dir = "runs/" + c.name;

  auto node = [&](const std::string& s) { return nodes.count(s) ? nodes[s] : root; };
  if (c.data.kind == "shards") {
    const auto is_glob = [](const std::string& s) {
      return s.find_first_of("*?") != std::string::npos ||
             (s.size() > 4 && s.compare(s.size() - 4, 4, ".bin") == 0);
    };
    if (c.data.train.empty())
      yaml::fail(file, node("data"), "data.train",
                 "must name the training split of data.dir or a glob of shard files");
    if (c.data.dir.empty() && (!is_glob(c.data.train) || (!c.data.eval.empty() && !is_glob(c.data.eval))))
      yaml::fail(file, node("data"), "data.dir",
                 "data.kind shards needs data.dir (the 'coil data tokenize --out' directory) unless "
                 "data.train and data.eval are globs of shard files");
  }
  // tp and sp shard the model (parallel/sharded_model.h): heads, vocab and MLP width must split
  // over tp, the sequence over sp, the mixer must support the layout. The world size is checked
  // when training starts (trainer/train_parallel.h check_grid).
  if (c.parallel.tp * c.parallel.sp > 1) {
    GridShape g;
    g.dp = int(c.parallel.dp);
    g.tp = int(c.parallel.tp);
    g.sp = int(c.parallel.sp);
    try {
      validate_parallel_layout(c.model, g, g.world_size(), c.train.seq_len, c.train.batch_size);
    } catch (const Error& e) {
      yaml::fail(file, node("parallel"), "parallel", e.message());
    }
  }
  // ZeRO-1 (parallel/zero.h) keeps one set of AdamW hyper-parameters for the flat parameter vector.
  if (c.parallel.zero1 && c.optim.decay != "all")
    yaml::fail(file, node("parallel"), "parallel.zero1",
               "ZeRO-1 applies one weight decay to every parameter: it needs optim.decay all, got "
               "optim.decay " + c.optim.decay);
  if (c.train.batch_size % c.parallel.dp != 0)
    yaml::fail(file, node("train"), "train.batch_size",
               "the global micro-batch " + std::to_string(c.train.batch_size) +
                   " must divide by parallel.dp = " + std::to_string(c.parallel.dp) +
                   " (each dp rank takes an equal slice)");
  if ((c.parallel.sp_style == "ring" || c.parallel.sp_style == "balanced") && c.model.mixer != "softmax")
    yaml::fail(file, node("parallel"), "parallel.sp_style",
               "sp_style " + c.parallel.sp_style + " splits softmax attention only; model.mixer is " +
                   c.model.mixer + " (use auto, chain or gather)");
  if (c.parallel.sp_style == "balanced" && c.train.seq_len % (2 * c.parallel.sp) != 0)
    yaml::fail(file, node("parallel"), "parallel.sp_style",
               "sp_style balanced cuts each sequence into 2 sp = " + std::to_string(2 * c.parallel.sp) +
                   " equal chunks; train.seq_len " + std::to_string(c.train.seq_len) + " does not divide");
  if (c.parallel.backend == "nccl" && c.train.device != "cuda")
    yaml::fail(file, node("parallel"), "parallel.backend",
               "nccl moves CUDA tensors only: it needs train.device cuda (got train.device " +
                   c.train.device + "); use parallel.backend mpi or auto on the CPU");
  if (c.precision == "bf16" && c.train.device == "cpu")
    yaml::fail(file, node("precision"), "precision",
               "bf16 mixed precision is for GPUs only; on train.device cpu use fp32");
  try {
    c.lr_schedule().validate();
  } catch (const Error& e) {
    yaml::fail(file, node("schedule"), "schedule", e.message());
  }
  return c;
}

RunConfig parse_tree(YAML::Node root, const std::string& file,
                     const std::vector<std::string>& overrides) {
  std::vector<Override> applied;
  for (const std::string& o : overrides) applied.push_back(apply_override(root, o));
  try {
    return read_run_config(root, file);
  } catch (const Error& e) {
    rethrow_for_override(e, file, applied);
  }
}

std::string num(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact round trip
  return std::string(buf, end);
}

}  // namespace

LRSchedule RunConfig::lr_schedule() const {
  LRSchedule s;
  s.kind = schedule_kind_from_string(schedule.kind);
  s.peak_lr = optim.lr;
  s.warmup_steps = schedule.warmup;
  s.decay_end_step = schedule.decay_end_step > 0 ? schedule.decay_end_step : train.steps;
  s.final_lr = schedule.final_lr;
  return s;
}

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides) {
  return parse_tree(yaml::load_file(file), file, overrides);
}

RunConfig parse_run_config(const std::string& text, const std::string& file,
                           const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    COIL_FAIL(file, e.mark.is_null() ? "" : ":" + std::to_string(e.mark.line + 1),
              ": malformed YAML: ", e.msg);
  }
  return parse_tree(root, file, overrides);
}

namespace {

void emit_model(YAML::Emitter& out, const ModelConfig& m) {
  out << YAML::BeginMap;
  out << YAML::Key << "mixer" << YAML::Value << m.mixer;
  out << YAML::Key << "vocab" << YAML::Value << m.vocab;
  out << YAML::Key << "d_model" << YAML::Value << m.d_model;
  if (m.mixer != "hybrid") out << YAML::Key << "n_layers" << YAML::Value << m.n_layers;
  out << YAML::Key << "n_heads" << YAML::Value << m.n_heads;
  out << YAML::Key << "head_dim" << YAML::Value << m.head_dim;
  out << YAML::Key << "mlp_hidden" << YAML::Value << m.mlp_hidden;
  out << YAML::Key << "norm_eps" << YAML::Value << num(m.norm_eps);
  out << YAML::Key << "rope_theta" << YAML::Value << num(m.rope_theta);
  out << YAML::Key << "rope_bf16_positions" << YAML::Value << m.rope_bf16_positions;
  out << YAML::Key << "seed" << YAML::Value << m.seed;
  out << YAML::Key << "recompute" << YAML::Value << m.recompute;
  if (m.mixer == "hybrid") {
    out << YAML::Key << "layer_pattern" << YAML::Value << YAML::DoubleQuoted << m.layer_pattern;
    out << YAML::Key << "hybrid_attention_rope" << YAML::Value << m.hybrid_attention_rope;
  }
  if (m.mixer == "linear") {
    const LinearMixerOptions& o = m.linear;
    out << YAML::Key << "linear" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "power" << YAML::Value << YAML::DoubleQuoted << o.power;
    out << YAML::Key << "qk_activation" << YAML::Value << o.qk_activation;
    out << YAML::Key << "conv_width" << YAML::Value << o.conv_width;
    out << YAML::Key << "d_residual" << YAML::Value << o.d_residual;
    out << YAML::Key << "z_gate" << YAML::Value << o.z_gate;
    out << YAML::Key << "value_dt" << YAML::Value << o.value_dt;
    out << YAML::Key << "a_mask" << YAML::Value << o.a_mask;
    out << YAML::Key << "norm" << YAML::Value << o.norm;
    out << YAML::Key << "form" << YAML::Value << o.form;
    out << YAML::Key << "chunk_size" << YAML::Value << o.chunk_size;
    out << YAML::Key << "chunked_from" << YAML::Value << o.chunked_from;
    out << YAML::EndMap;
  }
  if (m.mixer == "mamba2" || m.mixer == "hybrid") {
    const Mamba2Options& o = m.mamba2;
    out << YAML::Key << "mamba2" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "d_state" << YAML::Value << o.d_state;
    out << YAML::Key << "head_dim" << YAML::Value << o.head_dim;
    out << YAML::Key << "d_conv" << YAML::Value << o.d_conv;
    out << YAML::Key << "expand" << YAML::Value << o.expand;
    out << YAML::Key << "n_ssm_heads" << YAML::Value << o.n_ssm_heads;
    out << YAML::Key << "chunk_size" << YAML::Value << o.chunk_size;
    out << YAML::EndMap;
  }
  if (m.mixer == "mamba1") {
    const Mamba1Options& o = m.mamba1;
    out << YAML::Key << "mamba1" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "d_state" << YAML::Value << o.d_state;
    out << YAML::Key << "d_conv" << YAML::Value << o.d_conv;
    out << YAML::Key << "expand" << YAML::Value << o.expand;
    out << YAML::Key << "dt_rank" << YAML::Value << o.dt_rank;
    out << YAML::Key << "chunk_size" << YAML::Value << o.chunk_size;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

}  // namespace

std::string model_config_to_yaml(const ModelConfig& model) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "model" << YAML::Value;
  emit_model(out, model);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string run_config_to_yaml(const RunConfig& c) {
  YAML::Emitter out;
  auto kv = [&](const char* k, const auto& v) { out << YAML::Key << k << YAML::Value << v; };
  out << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << c.name;
  out << YAML::Key << "model" << YAML::Value;
  emit_model(out, c.model);
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  kv("kind", c.data.kind);
  kv("period", c.data.period);
  kv("seed", c.data.seed);
  kv("eval_seed", c.data.eval_seed);
  if (c.data.kind == "shards") {
    out << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << c.data.dir;
    out << YAML::Key << "train" << YAML::Value << YAML::DoubleQuoted << c.data.train;
    out << YAML::Key << "eval" << YAML::Value << YAML::DoubleQuoted << c.data.eval;
    kv("mode", c.data.mode);
    kv("shuffle", c.data.shuffle);
  }
  out << YAML::EndMap;
  out << YAML::Key << "optim" << YAML::Value << YAML::BeginMap;
  kv("lr", num(c.optim.lr));
  out << YAML::Key << "betas" << YAML::Value << YAML::Flow << YAML::BeginSeq << num(c.optim.beta1)
      << num(c.optim.beta2) << YAML::EndSeq;
  kv("eps", num(c.optim.eps));
  kv("weight_decay", num(c.optim.weight_decay));
  kv("decay", c.optim.decay);
  kv("clip", num(c.optim.clip));
  out << YAML::EndMap;
  out << YAML::Key << "schedule" << YAML::Value << YAML::BeginMap;
  kv("kind", c.schedule.kind);
  kv("warmup", c.schedule.warmup);
  kv("decay_end_step", c.schedule.decay_end_step);
  kv("final_lr", num(c.schedule.final_lr));
  out << YAML::EndMap;
  out << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  kv("steps", c.train.steps);
  kv("batch_size", c.train.batch_size);
  kv("seq_len", c.train.seq_len);
  kv("grad_accum", c.train.grad_accum);
  kv("seed", c.train.seed);
  kv("eval_every", c.train.eval_every);
  kv("eval_batches", c.train.eval_batches);
  kv("log_every", c.train.log_every);
  kv("nan_tolerance", c.train.nan_tolerance);
  kv("device", c.train.device);
  out << YAML::EndMap;
  kv("precision", c.precision);
  out << YAML::Key << "parallel" << YAML::Value << YAML::Flow << YAML::BeginMap;
  kv("dp", c.parallel.dp);
  kv("tp", c.parallel.tp);
  kv("sp", c.parallel.sp);
  kv("zero1", c.parallel.zero1);
  kv("backend", c.parallel.backend);
  kv("sp_style", c.parallel.sp_style);
  out << YAML::EndMap;
  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << c.checkpoint.dir;
  kv("every", c.checkpoint.every);
  kv("keep_last", c.checkpoint.keep_last);
  kv("at_end", c.checkpoint.at_end);
  out << YAML::EndMap;
  out << YAML::Key << "logging" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "jsonl" << YAML::Value << YAML::DoubleQuoted << c.logging.jsonl;
  kv("peak_tflops", num(c.logging.peak_tflops));
  kv("count_comm", c.logging.count_comm);
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace coil
