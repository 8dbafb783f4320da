// Per-token decoding over the model's public parts (see decode.h).
#include "eval/decode.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random.h"

namespace coil {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Decoder::Decoder(const LanguageModel& model) : model_(model) {}

size_t Decoder::num_layers() const {
  return model_.num_blocks() + model_.num_hybrid_layers();
}

DecodeState Decoder::initial_state() const {
  DecodeState s;
  s.layers.resize(num_layers());
  return s;
}

const Mixer* Decoder::mixer_of(size_t i) const {
  if (model_.num_blocks()) return model_.block(i).mixer.get();
  return model_.hybrid_layer(i).mixer.get();  // null for '-' layers
}

std::string Decoder::layer_label(size_t i) const {
  if (model_.num_blocks()) return model_.config().mixer;
  switch (model_.hybrid_layer(i).kind) {
    case 'M': return "mamba2";
    case '*': return "softmax";
    default: return "mlp";
  }
}

Tensor Decoder::run_layers(Tensor x, DecodeState& state, bool single_step) const {
  COIL_CHECK(state.layers.size() == num_layers(), "Decoder: state has ", state.layers.size(),
             " layers, the model ", num_layers());
  // Prefill starts from the state held (empty = the sequence start) and replaces it.
  auto mix = [&](const Mixer& m, const Tensor& h, MixerState& st) {
    if (single_step) return m.step(h, st);
    MixerState next;
    Tensor y = m.forward_stateful(h, st, &next);
    st = std::move(next);
    return y;
  };
  for (size_t i = 0; i < model_.num_blocks(); ++i) {
    const Block& b = model_.block(i);
    Tensor h = x + mix(*b.mixer, b.norm1->forward(x), state.layers[i]);  // (B, T, C)
    x = h + b.mlp->forward(b.norm2->forward(h));                         // (B, T, C)
  }
  for (size_t i = 0; i < model_.num_hybrid_layers(); ++i) {
    const HybridLayer& l = model_.hybrid_layer(i);
    Tensor h = l.norm->forward(x);  // (B, T, C)
    x = x + (l.mixer ? mix(*l.mixer, h, state.layers[i]) : l.mlp->forward(h));
  }
  return x;
}

Tensor Decoder::prefill(const Tensor& ids, DecodeState& state, int64_t chunk) const {
  COIL_CHECK(ids.dim() == 2 && ids.size(1) >= 1, "Decoder::prefill: expected ids (B, T), got ",
             ids.describe());
  NoGradGuard no_grad;
  const int64_t T = ids.size(1);
  if (chunk <= 0 || chunk >= T) {
    Tensor x = run_layers(model_.embedding->forward(ids), state, false);  // (B, T, C)
    state.position += T;
    return model_.lm_head->forward(model_.norm_f->forward(x));  // (B, T, V)
  }
  std::vector<Tensor> parts;
  for (int64_t t0 = 0; t0 < T; t0 += chunk)
    parts.push_back(prefill(ids.narrow(1, t0, std::min(chunk, T - t0)), state));
  return concat(parts, 1);
}

Tensor Decoder::step(const Tensor& ids, DecodeState& state) const {
  COIL_CHECK(ids.dim() == 2 && ids.size(1) == 1, "Decoder::step: expected ids (B, 1), got ",
             ids.describe());
  NoGradGuard no_grad;
  Tensor x = run_layers(model_.embedding->forward(ids), state, true);  // (B, 1, C)
  state.position += 1;
  return model_.lm_head->forward(model_.norm_f->forward(x));  // (B, 1, V)
}

std::vector<int64_t> Decoder::state_bytes(const DecodeState& state) const {
  std::vector<int64_t> out;
  for (const MixerState& s : state.layers) {
    int64_t bytes = 0;
    for (const auto& [name, t] : s.entries)
      if (t.defined() && t.dim() > 0 && t.size(0) > 0)
        bytes += t.numel() / t.size(0) * int64_t(dtype_size(t.dtype()));
    out.push_back(bytes);
  }
  return out;
}

std::vector<int64_t> Decoder::declared_state_values(int64_t context) const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < num_layers(); ++i) {
    const Mixer* m = mixer_of(i);
    out.push_back(m ? m->decode_state_values(context) : 0);
  }
  return out;
}

int32_t argmax_row(const double* logits, int64_t V) {
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[v] > logits[best]) best = v;
  return int32_t(best);
}

std::vector<double> logits_to_host(const Tensor& logits) {
  return logits.device().is_cpu() ? logits.to_vector() : logits.to(Device::cpu()).to_vector();
}

namespace {

// Samples one token from a row of logits (temperature > 0, optional top-k).
int32_t sample_row(const double* logits, int64_t V, const GenerateOptions& opt, Generator& gen) {
  std::vector<int32_t> order(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) order[size_t(v)] = int32_t(v);
  int64_t k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  // Stable order (ties by id) keeps sampling reproducible across platforms.
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const double top = logits[order[0]];
  std::vector<double> p(static_cast<size_t>(k));
  double total = 0;
  for (int64_t i = 0; i < k; ++i)
    total += p[size_t(i)] = std::exp((logits[order[size_t(i)]] - top) / opt.temperature);
  double u = gen.next_uniform() * total;
  for (int64_t i = 0; i < k; ++i) {
    u -= p[size_t(i)];
    if (u < 0) return order[size_t(i)];
  }
  return order[size_t(k - 1)];
}

}  // namespace

GenerateResult generate(const Decoder& decoder, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt) {
  COIL_CHECK(!prompt.empty(), "generate: the prompt is empty");
  COIL_CHECK(opt.max_new_tokens >= 1, "generate: max_new_tokens must be >= 1, got ", opt.max_new_tokens);
  COIL_CHECK(opt.temperature >= 0, "generate: temperature must be >= 0, got ", opt.temperature);
  const LanguageModel& model = decoder.model();
  const Device dev = model.embedding->parameters()[0].device();
  const int64_t V = model.config().vocab;
  for (int32_t t : prompt)
    COIL_CHECK(t >= 0 && t < V, "generate: prompt token ", t, " is outside the model's vocab [0, ", V, ")");
  Generator gen(opt.seed);
  GenerateResult r;
  DecodeState state = decoder.initial_state();
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  auto t0 = std::chrono::steady_clock::now();
  Tensor logits = decoder.prefill(Tensor::from_ints(ids, {1, int64_t(ids.size())}, DType::I32, dev),
                                  state, opt.prefill_chunk);
  auto pick = [&](const Tensor& last) {  // last: (1, 1, V)
    std::vector<double> row = logits_to_host(last);
    return opt.temperature > 0 ? sample_row(row.data(), V, opt, gen) : argmax_row(row.data(), V);
  };
  int32_t next = pick(logits.narrow(1, logits.size(1) - 1, 1));
  r.prefill_seconds = seconds_since(t0);
  r.tokens.push_back(next);
  t0 = std::chrono::steady_clock::now();
  while (int64_t(r.tokens.size()) < opt.max_new_tokens && next != opt.stop_token) {
    logits = decoder.step(Tensor::from_ints({next}, {1, 1}, DType::I32, dev), state);
    next = pick(logits);
    r.tokens.push_back(next);
  }
  r.decode_seconds = seconds_since(t0);
  const int64_t stepped = int64_t(r.tokens.size()) - 1;
  r.decode_tokens_per_second = stepped > 0 && r.decode_seconds > 0 ? double(stepped) / r.decode_seconds : 0;
  r.state_bytes = decoder.state_bytes(state);
  return r;
}

}  // namespace coil
