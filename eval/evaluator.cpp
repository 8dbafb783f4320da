// Checkpoint loading and the task runners (see evaluator.h).
#include "eval/evaluator.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <ostream>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/tasks.h"
#include "eval/decode.h"
#include "eval/loglik.h"
#include "trainer/adamw.h"

namespace coil {

LoadedCheckpoint load_checkpoint_for_eval(const std::string& path, const ParamOptions& opt) {
  CheckpointInfo info = inspect_checkpoint(path);
  COIL_CHECK(!info.meta.config_yaml.empty(), path, ": the checkpoint holds no run config (config_yaml)");
  LoadedCheckpoint lc;
  lc.config = parse_run_config(info.meta.config_yaml, path + " (stored config_yaml)");
  // read_checkpoint checks every tensor against the model, optimizer state included, so the model is
  // first built in the dtype the checkpoint stores, on the CPU.
  DType stored = DType::F32;
  for (const CheckpointTensorInfo& t : info.tensors)
    if (t.path.rfind("/params/", 0) == 0 && t.dtype == "f64") stored = DType::F64;
  auto host = std::make_shared<LanguageModel>(lc.config.model, ParamOptions{stored, Device::cpu()});
  AdamW opt_state(host->parameters(), AdamWOptions{});
  lc.meta = read_checkpoint(path, *host, opt_state, info.meta.model_config_yaml);
  if (opt.dtype == stored && opt.device.is_cpu()) {
    lc.model = host;
  } else {
    lc.model = std::make_shared<LanguageModel>(lc.config.model, opt);
    lc.model->load_state_dict(host->state_dict());
  }
  return lc;
}

const std::vector<std::string>& lm_eval_task_names() {
  static const std::vector<std::string> names{"lambada_openai", "piqa",  "arc_easy", "arc_challenge",
                                              "openbook_qa",    "boolq", "copa",     "siqa",
                                              "winogrande"};
  return names;
}

namespace {

const std::vector<std::string>& synthetic_task_names() {
  static const std::vector<std::string> names{"passkey", "mqar", "phonebook", "phonebook_reversed"};
  return names;
}

std::vector<std::string> all_task_names() {
  std::vector<std::string> all{"heldout"};
  for (const auto& n : synthetic_task_names()) all.push_back(n);
  for (const auto& n : lm_eval_task_names()) all.push_back(n);
  all.push_back("decode");
  return all;
}

// Mean and standard error of the mean (sample standard deviation / sqrt(n), as lm-eval).
std::pair<double, double> mean_stderr(const std::vector<double>& xs) {
  const double n = double(xs.size());
  if (xs.empty()) return {std::nan(""), std::nan("")};
  double m = 0;
  for (double x : xs) m += x;
  m /= n;
  if (xs.size() < 2) return {m, std::nan("")};
  double v = 0;
  for (double x : xs) v += (x - m) * (x - m);
  return {m, std::sqrt(v / (n - 1) / n)};
}

TaskMetric metric_of(const std::string& name, const std::vector<double>& xs) {
  auto [m, s] = mean_stderr(xs);
  return {name, m, s};
}

// Exact match of the greedy continuation's first answer-length tokens with the answer text (what
// follows the key is not scored: a model trained on the format has no reason to stop there).
bool text_matches_answer(const std::string& generated, const std::string& answer) {
  return generated == answer;
}

std::vector<YAML::Node> read_jsonl(const std::string& path, int64_t limit) {
  std::ifstream in(path);
  COIL_CHECK(in.good(), "cannot open evaluation file '", path,
             "' (set --eval-data to the folder of the lm-eval-style jsonl files)");
  std::vector<YAML::Node> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      YAML::Node n = YAML::Load(line);
      COIL_CHECK(n.IsMap(), path, ":", lineno, ": expected a JSON object");
      out.push_back(n);
    } catch (const YAML::Exception& e) {
      COIL_FAIL(path, ":", lineno, ": bad JSON: ", e.msg);
    }
    if (limit > 0 && int64_t(out.size()) >= limit) break;
  }
  COIL_CHECK(!out.empty(), path, ": no examples");
  return out;
}

template <typename T>
T field(const YAML::Node& n, const char* key, const std::string& where) {
  COIL_CHECK(n[key], where, ": missing field '", key, "'");
  try {
    return n[key].as<T>();
  } catch (const YAML::Exception& e) {
    COIL_FAIL(where, ": field '", key, "' has the wrong type: ", e.msg);
  }
}

}  // namespace

std::vector<std::string> expand_task_list(const std::string& spec) {
  std::vector<std::string> wanted;
  std::stringstream ss(spec);
  std::string item;
  const std::vector<std::string> all = all_task_names();
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty()) continue;
    std::vector<std::string> add;
    if (item == "all") add = all;
    else if (item == "lm-eval") add = lm_eval_task_names();
    else if (item == "synthetic") add = synthetic_task_names();
    else if (std::find(all.begin(), all.end(), item) != all.end()) add = {item};
    else {
      std::string known;
      for (const auto& n : all) known += " " + n;
      COIL_FAIL("unknown task '", item, "' (tasks:", known, "; groups: all lm-eval synthetic)");
    }
    for (const auto& a : add)
      if (std::find(wanted.begin(), wanted.end(), a) == wanted.end()) wanted.push_back(a);
  }
  COIL_CHECK(!wanted.empty(), "the task list '", spec, "' names no task");
  // Fixed order, so results files of different runs list tasks alike.
  std::vector<std::string> ordered;
  for (const auto& n : all)
    if (std::find(wanted.begin(), wanted.end(), n) != wanted.end()) ordered.push_back(n);
  return ordered;
}

struct Evaluator::Impl {
  const LanguageModel& model;
  const RunConfig& config;
  EvalOptions opt;
  Communicator& comm;
  std::ostream* log;
  std::unique_ptr<Tokenizer> tok;
  Decoder decoder;
  Device device;
  std::unique_ptr<TokenDataset> heldout;  // opened on first use

  Impl(const LanguageModel& m, const RunConfig& c, const EvalOptions& o, Communicator& cm, std::ostream* l)
      : model(m), config(c), opt(o), comm(cm), log(l), tok(load_tokenizer(o.tokenizer)), decoder(m),
        device(m.embedding->parameters()[0].device()) {}

  int64_t vocab() const { return model.config().vocab; }

  // Runs fn(i, record) for this rank's examples of [0, n) and returns every example's record.
  std::vector<std::vector<double>> for_examples(int64_t n, int64_t width,
                                                const std::function<void(int64_t, double*)>& fn) {
    Tensor buf = Tensor::zeros({std::max<int64_t>(n, 1), width}, DType::F64);  // (N, W) host
    double* p = buf.data<double>();
    for (int64_t i = comm.rank(); i < n; i += comm.size()) fn(i, p + i * width);
    if (comm.size() > 1) comm.all_reduce(buf, ReduceOp::Sum);
    std::vector<std::vector<double>> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[size_t(i)].assign(p + i * width, p + (i + 1) * width);
    return out;
  }

  const TokenDataset& heldout_split() {
    COIL_CHECK(!opt.data_dir.empty(), "this task needs the held-out token shards: pass --data DIR (a "
               "directory written by 'coil data tokenize' with heldout.shards)");
    if (!heldout) {
      heldout = std::make_unique<TokenDataset>(TokenDataset::open_split(opt.data_dir, "heldout"));
      COIL_CHECK(heldout->tokenizer_id() == tok->id(), heldout->description(), ": shards were written by "
                 "tokenizer '", heldout->tokenizer_id(), "' but --tokenizer is '", tok->id(), "'");
    }
    return *heldout;
  }

  void check_tokens(const std::vector<int32_t>& ids, const std::string& what) const {
    for (int32_t t : ids)
      COIL_CHECK(t >= 0 && t < vocab(), what, ": token ", t, " is outside the model's vocab [0, ", vocab(),
                 ") (tokenizer '", tok->id(), "' does not fit this checkpoint)");
  }

  // Greedy continuation of `prompt`, decoded to text.
  std::string greedy_text(const std::vector<int32_t>& prompt, int64_t n_new) {
    GenerateOptions g;
    g.max_new_tokens = n_new;
    g.prefill_chunk = opt.prefill_chunk;
    GenerateResult r = generate(decoder, prompt, g);
    return tok->decode(r.tokens);
  }

  // --- heldout -------------------------------------------------------------------------------------
  TaskResult heldout_task() {
    const TokenDataset& ds = heldout_split();
    const int64_t T = opt.seq_len > 0 ? opt.seq_len : config.train.seq_len;
    COIL_CHECK(ds.eos_id() < vocab(), "heldout: the shards' EOS id ", ds.eos_id(),
               " is outside the model's vocab ", vocab());
    // The packed stream (documents + EOS), cut into windows of T + 1 starting every T tokens.
    std::vector<int32_t> stream;
    const int64_t want = opt.heldout_tokens > 0 ? opt.heldout_tokens + 1 : -1;
    for (uint64_t d = 0; d < ds.num_docs() && (want < 0 || int64_t(stream.size()) < want + T); ++d) {
      std::vector<int32_t> doc = ds.document(d);
      stream.insert(stream.end(), doc.begin(), doc.end());
      stream.push_back(ds.eos_id());
    }
    int64_t windows = stream.size() > 1 ? (int64_t(stream.size()) - 1) / T : 0;
    if (opt.heldout_tokens > 0) windows = std::min(windows, (opt.heldout_tokens + T - 1) / T);
    if (opt.limit > 0) windows = std::min(windows, opt.limit);
    COIL_CHECK(windows > 0, ds.description(), ": the held-out split has fewer than ", T + 1, " tokens");
    check_tokens(std::vector<int32_t>(stream.begin(), stream.begin() + windows * T + 1), "heldout");
    // UTF-8 bytes each token adds to the text (specials add none).
    std::vector<double> token_bytes(static_cast<size_t>(vocab()), 0.0);
    {
      const std::vector<int32_t> a = tok->encode("a");
      const int32_t anchor = a.empty() ? 0 : a[0];
      const double base = double(tok->decode(std::vector<int32_t>{anchor}).size());
      for (int32_t v = 0; v < std::min<int32_t>(int32_t(vocab()), tok->vocab_size()); ++v)
        token_bytes[size_t(v)] = double(tok->decode(std::vector<int32_t>{anchor, v}).size()) - base;
    }
    auto rec = for_examples(windows, 3, [&](int64_t w, double* r) {
      std::vector<int64_t> ids(stream.begin() + w * T, stream.begin() + w * T + T);
      std::vector<int64_t> tgt(stream.begin() + w * T + 1, stream.begin() + w * T + T + 1);
      NoGradGuard ng;
      Tensor loss = model.loss(Tensor::from_ints(ids, {1, T}, DType::I32, device),
                               Tensor::from_ints(tgt, {1, T}, DType::I32, device));
      r[0] = loss.to(Device::cpu()).item() * double(T);  // summed NLL (nats)
      r[1] = double(T);
      for (int64_t t : tgt) r[2] += token_bytes[size_t(t)];
    });
    double nll = 0, ntok = 0, nbytes = 0;
    std::vector<double> per_window;
    for (const auto& r : rec) {
      nll += r[0];
      ntok += r[1];
      nbytes += r[2];
      per_window.push_back(r[0] / r[1]);
    }
    const double se_w = mean_stderr(per_window).second;
    const double loss = nll / ntok;
    TaskResult tr{"heldout", {}, windows, ""};
    // Standard errors over windows (delta method for the exponentiated / rescaled figures).
    tr.metrics.push_back({"loss", loss, se_w});
    tr.metrics.push_back({"perplexity", std::exp(loss), std::exp(loss) * se_w});
    tr.metrics.push_back({"bits_per_byte", nll / std::log(2.0) / nbytes,
                          se_w * ntok / nbytes / std::log(2.0)});
    tr.details_json = "{\"seq_len\": " + std::to_string(T) + ", \"tokens\": " + json_number(ntok) +
                      ", \"bytes\": " + json_number(nbytes) + ", \"windows\": " + std::to_string(windows) +
                      "}";
    return tr;
  }

  // --- pass-key ------------------------------------------------------------------------------------
  TaskResult passkey_task() {
    const TokenDataset& ds = heldout_split();
    std::vector<int32_t> text;
    const int64_t need = *std::max_element(opt.passkey_lengths.begin(), opt.passkey_lengths.end());
    for (uint64_t d = 0; d < ds.num_docs() && int64_t(text.size()) < 2 * need; ++d) {
      std::vector<int32_t> doc = ds.document(d);
      text.insert(text.end(), doc.begin(), doc.end());
    }
    const std::vector<int32_t> filler = digit_free_filler(*tok, text);
    COIL_CHECK(!filler.empty(), "passkey: the held-out split has no digit-free filler text");
    const int64_t L = int64_t(opt.passkey_lengths.size()), D = int64_t(opt.passkey_depths.size());
    const int64_t S = opt.limit > 0 ? std::min(opt.passkey_samples, opt.limit) : opt.passkey_samples;
    const int64_t n = L * D * S;
    auto rec = for_examples(n, 1, [&](int64_t i, double* r) {
      PasskeyOptions po;
      po.context_tokens = opt.passkey_lengths[size_t(i / (D * S))];
      po.depth = opt.passkey_depths[size_t((i / S) % D)];
      po.key_digits_min = opt.passkey_digits_min;
      po.key_digits_max = opt.passkey_digits_max;
      TextTaskExample ex = make_passkey(*tok, filler, po, opt.seed, i);
      check_tokens(ex.prompt, "passkey");
      r[0] = text_matches_answer(greedy_text(ex.prompt, int64_t(ex.answer_tokens.size())), ex.answer);
    });
    std::vector<double> all;
    std::ostringstream grid;
    grid << "{\"lengths\": [";
    for (int64_t l = 0; l < L; ++l) grid << (l ? ", " : "") << opt.passkey_lengths[size_t(l)];
    grid << "], \"depths\": [";
    for (int64_t d = 0; d < D; ++d) grid << (d ? ", " : "") << json_number(opt.passkey_depths[size_t(d)]);
    grid << "], \"samples_per_cell\": " << S << ", \"accuracy\": [";
    TaskResult tr{"passkey", {}, n, ""};
    for (int64_t l = 0; l < L; ++l) {
      grid << (l ? ", " : "") << "[";
      std::vector<double> row;
      for (int64_t d = 0; d < D; ++d) {
        double hits = 0;
        for (int64_t s = 0; s < S; ++s) hits += rec[size_t((l * D + d) * S + s)][0];
        grid << (d ? ", " : "") << json_number(hits / double(S));
        for (int64_t s = 0; s < S; ++s) row.push_back(rec[size_t((l * D + d) * S + s)][0]);
      }
      grid << "]";
      tr.metrics.push_back(metric_of("acc_len" + std::to_string(opt.passkey_lengths[size_t(l)]), row));
      all.insert(all.end(), row.begin(), row.end());
    }
    grid << "]}";
    tr.metrics.insert(tr.metrics.begin(), metric_of("acc", all));
    tr.details_json = grid.str();
    return tr;
  }

  // --- MQAR ----------------------------------------------------------------------------------------
  TaskResult mqar_task() {
    MqarOptions mo;
    mo.num_pairs = opt.mqar_pairs;
    mo.key_vocab = opt.mqar_key_vocab;
    mo.value_vocab = opt.mqar_value_vocab;
    mo.first_token = opt.mqar_first_token;
    mo.validate();
    COIL_CHECK(mo.first_token + mo.key_vocab + mo.value_vocab <= vocab(),
               "mqar: keys and values need ids up to ",
               mo.first_token + mo.key_vocab + mo.value_vocab, " but the model's vocab is ", vocab());
    const int64_t n = opt.limit > 0 ? std::min(opt.mqar_samples, opt.limit) : opt.mqar_samples;
    auto rec = for_examples(n, 2, [&](int64_t i, double* r) {
      TokenTaskExample ex = make_mqar(mo, opt.seed, i);
      const int64_t T = int64_t(ex.tokens.size());
      std::vector<int64_t> ids(ex.tokens.begin(), ex.tokens.end());
      NoGradGuard ng;
      std::vector<double> logits =
          logits_to_host(model.forward(Tensor::from_ints(ids, {1, T}, DType::I32, device)));  // (1, T, V)
      for (int64_t t = 0; t < T; ++t) {
        if (ex.targets[size_t(t)] < 0) continue;
        r[0] += argmax_row(logits.data() + t * vocab(), vocab()) == ex.targets[size_t(t)];
        r[1] += 1;
      }
    });
    std::vector<double> hits;
    for (const auto& r : rec)
      for (int64_t q = 0; q < int64_t(r[1]); ++q) hits.push_back(q < int64_t(r[0]) ? 1.0 : 0.0);
    TaskResult tr{"mqar", {metric_of("acc", hits)}, n, ""};
    tr.details_json = "{\"pairs\": " + std::to_string(mo.num_pairs) + ", \"key_vocab\": " +
                      std::to_string(mo.key_vocab) + ", \"value_vocab\": " + std::to_string(mo.value_vocab) +
                      ", \"queries\": " + std::to_string(hits.size()) + "}";
    return tr;
  }

  // --- phonebook -----------------------------------------------------------------------------------
  TaskResult phonebook_task(bool reversed) {
    PhonebookOptions po;
    po.entries = opt.phonebook_entries;
    po.reversed = reversed;
    const int64_t n = opt.limit > 0 ? std::min(opt.phonebook_samples, opt.limit) : opt.phonebook_samples;
    auto rec = for_examples(n, 1, [&](int64_t i, double* r) {
      TextTaskExample ex = make_phonebook(*tok, po, opt.seed + (reversed ? 1 : 0), i);
      check_tokens(ex.prompt, "phonebook");
      r[0] = text_matches_answer(greedy_text(ex.prompt, int64_t(ex.answer_tokens.size())), ex.answer);
    });
    std::vector<double> hits;
    for (const auto& r : rec) hits.push_back(r[0]);
    TaskResult tr{reversed ? "phonebook_reversed" : "phonebook", {metric_of("acc", hits)}, n, ""};
    tr.details_json = "{\"entries\": " + std::to_string(po.entries) + "}";
    return tr;
  }

  // --- lm-eval-style -------------------------------------------------------------------------------
  LoglikResult score(const std::string& context, const std::string& continuation) {
    TokenizedRequest req = tokenize_request(*tok, context, continuation);
    check_tokens(req.context, "loglik");
    check_tokens(req.continuation, "loglik");
    // An empty context gets the tokenizer's BOS when the model has it (lm-eval uses its EOT token).
    const int32_t empty_ctx = tok->bos_id() < vocab() ? tok->bos_id() : tok->eos_id();
    return score_request(model, req, opt.max_length, empty_ctx);
  }

  TaskResult lm_eval_task(const std::string& name) {
    const std::string path = (std::filesystem::path(opt.eval_data_dir) / (name + ".jsonl")).string();
    std::vector<YAML::Node> docs = read_jsonl(path, opt.limit);
    const int64_t n = int64_t(docs.size());
    const bool with_norm =
        name == "piqa" || name == "arc_easy" || name == "arc_challenge" || name == "openbook_qa";
    TaskResult tr{name, {}, n, ""};
    if (name == "lambada_openai") {
      auto rec = for_examples(n, 2, [&](int64_t i, double* r) {
        const std::string where = path + ":" + std::to_string(i + 1);
        LoglikResult l = score(field<std::string>(docs[size_t(i)], "context", where),
                               " " + field<std::string>(docs[size_t(i)], "continuation", where));
        r[0] = l.logprob;
        r[1] = l.greedy;
      });
      std::vector<double> ll, acc;
      for (const auto& r : rec) {
        ll.push_back(r[0]);
        acc.push_back(r[1]);
      }
      auto [mll, sll] = mean_stderr(ll);
      tr.metrics.push_back({"perplexity", std::exp(-mll), std::exp(-mll) * sll});
      tr.metrics.push_back(metric_of("acc", acc));
      return tr;
    }
    if (name == "winogrande") {
      auto rec = for_examples(n, 1, [&](int64_t i, double* r) {
        const std::string where = path + ":" + std::to_string(i + 1);
        const auto options = field<std::vector<std::string>>(docs[size_t(i)], "context_options", where);
        const std::string cont = " " + field<std::string>(docs[size_t(i)], "continuation", where);
        std::vector<double> ll;
        for (const std::string& o : options) ll.push_back(score(o, cont).logprob);
        r[0] = choose_acc(ll) == field<int64_t>(docs[size_t(i)], "gold", where);
      });
      std::vector<double> acc;
      for (const auto& r : rec) acc.push_back(r[0]);
      tr.metrics.push_back(metric_of("acc", acc));
      return tr;
    }
    auto rec = for_examples(n, 2, [&](int64_t i, double* r) {
      const std::string where = path + ":" + std::to_string(i + 1);
      const std::string query = field<std::string>(docs[size_t(i)], "query", where);
      const auto choices = field<std::vector<std::string>>(docs[size_t(i)], "choices", where);
      const int64_t gold = field<int64_t>(docs[size_t(i)], "gold", where);
      COIL_CHECK(gold >= 0 && gold < int64_t(choices.size()), where, ": gold ", gold,
                 " is not a choice index");
      std::vector<double> ll;
      for (const std::string& c : choices) ll.push_back(score(query, " " + c).logprob);
      r[0] = choose_acc(ll) == gold;
      r[1] = choose_acc_norm(ll, choices) == gold;
    });
    std::vector<double> acc, acc_norm;
    for (const auto& r : rec) {
      acc.push_back(r[0]);
      acc_norm.push_back(r[1]);
    }
    tr.metrics.push_back(metric_of("acc", acc));
    if (with_norm) tr.metrics.push_back(metric_of("acc_norm", acc_norm));
    return tr;
  }

  // --- decode --------------------------------------------------------------------------------------
  TaskResult decode_task() {
    // Prompt text: the held-out split when given, else a phonebook (any text will do for timing).
    std::vector<int32_t> text;
    const int64_t need = *std::max_element(opt.decode_contexts.begin(), opt.decode_contexts.end());
    if (!opt.data_dir.empty()) {
      const TokenDataset& ds = heldout_split();
      for (uint64_t d = 0; d < ds.num_docs() && int64_t(text.size()) < need; ++d) {
        std::vector<int32_t> doc = ds.document(d);
        text.insert(text.end(), doc.begin(), doc.end());
      }
    }
    for (int64_t i = 0; int64_t(text.size()) < need; ++i) {
      TextTaskExample ex = make_phonebook(*tok, PhonebookOptions{}, opt.seed, i);
      text.insert(text.end(), ex.prompt.begin(), ex.prompt.end());
    }
    check_tokens(std::vector<int32_t>(text.begin(), text.begin() + need), "decode");
    TaskResult tr{"decode", {}, int64_t(opt.decode_contexts.size()), ""};
    std::ostringstream det;
    det << "{\"layers\": [";
    for (size_t l = 0; l < decoder.num_layers(); ++l)
      det << (l ? ", " : "") << json_string(decoder.layer_label(l));
    det << "], \"contexts\": [";
    double tps = 0;
    for (size_t c = 0; c < opt.decode_contexts.size(); ++c) {
      const int64_t ctx = opt.decode_contexts[c];
      GenerateOptions g;
      g.max_new_tokens = opt.decode_new_tokens;
      g.prefill_chunk = opt.prefill_chunk;
      GenerateResult r = generate(decoder, std::vector<int32_t>(text.begin(), text.begin() + ctx), g);
      int64_t total = 0;
      det << (c ? ", " : "") << "{\"context\": " << ctx
          << ", \"tokens_after\": " << ctx + int64_t(r.tokens.size()) - 1
          << ", \"decode_tokens_per_second\": " << json_number(r.decode_tokens_per_second)
          << ", \"prefill_seconds\": " << json_number(r.prefill_seconds) << ", \"state_bytes_per_layer\": [";
      for (size_t l = 0; l < r.state_bytes.size(); ++l) {
        det << (l ? ", " : "") << r.state_bytes[l];
        total += r.state_bytes[l];
      }
      det << "]}";
      tr.metrics.push_back({"state_bytes_ctx" + std::to_string(ctx), double(total)});
      tps = r.decode_tokens_per_second;
    }
    det << "]}";
    // Timings differ between ranks; rank 0's numbers are reported everywhere.
    Tensor t = Tensor::from_vector({tps}, {1}, DType::F64);
    comm.broadcast(t, 0);
    tr.metrics.insert(tr.metrics.begin(), TaskMetric{"tokens_per_second", t.item()});
    tr.details_json = det.str();
    return tr;
  }
};

Evaluator::Evaluator(const LanguageModel& model, const RunConfig& config, const EvalOptions& options,
                     Communicator& comm, std::ostream* log)
    : impl_(std::make_unique<Impl>(model, config, options, comm, log)) {}

Evaluator::~Evaluator() = default;

TaskResult Evaluator::run_task(const std::string& task) {
  Impl& m = *impl_;
  const auto t0 = std::chrono::steady_clock::now();
  TaskResult r;
  if (task == "heldout") r = m.heldout_task();
  else if (task == "passkey") r = m.passkey_task();
  else if (task == "mqar") r = m.mqar_task();
  else if (task == "phonebook") r = m.phonebook_task(false);
  else if (task == "phonebook_reversed") r = m.phonebook_task(true);
  else if (task == "decode") r = m.decode_task();
  else if (const auto& lm = lm_eval_task_names(); std::find(lm.begin(), lm.end(), task) != lm.end())
    r = m.lm_eval_task(task);
  else
    COIL_FAIL("unknown task '", task, "'");
  if (m.log && m.comm.rank() == 0) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f", s);
    *m.log << "eval " << task << ": " << r.samples << " examples in " << secs << " s";
    for (const TaskMetric& mt : r.metrics) *m.log << "  " << mt.name << " " << mt.value;
    *m.log << std::endl;
  }
  return r;
}

EvalReport Evaluator::run_all() {
  EvalReport rep;
  for (const std::string& t : impl_->opt.tasks) rep.tasks.push_back(run_task(t));
  return rep;
}

std::string default_eval_data_dir() {
  if (const char* e = std::getenv("COIL_EVAL_DATA")) return e;
  return (std::filesystem::path(COIL_EVAL_SOURCE_DIR) / ".." / ".." / "shared" / "eval-data")
      .lexically_normal()
      .string();
}

bool draw_passkey_heatmap(const std::string& results_json, const std::string& png, std::ostream& err) {
  const char* env_script = std::getenv("COIL_HEATMAP_SCRIPT");
  const std::string script =
      env_script ? env_script : std::string(COIL_EVAL_SOURCE_DIR) + "/passkey_heatmap.py";
  std::vector<std::string> pythons;
  if (const char* p = std::getenv("COIL_PYTHON")) pythons.push_back(p);
  pythons.push_back("/usr/bin/python3");
  pythons.push_back("python3");
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  for (const std::string& py : pythons) {
    if (std::system((quote(py) + " -c 'import matplotlib' >/dev/null 2>&1").c_str()) != 0) continue;
    const std::string cmd = quote(py) + " " + quote(script) + " " + quote(results_json) + " " + quote(png);
    if (std::system(cmd.c_str()) == 0) return true;
    err << "warning: the heatmap script failed: " << cmd << "\n";
    return false;
  }
  err << "warning: no python3 with matplotlib found; draw the heatmap later with: python3 " << script << " "
      << results_json << " " << png << "\n";
  return false;
}

}  // namespace coil
