// `coil model info`: parameter breakdown, decode-state bytes and the KV-cache crossover of a
// config.
#include "trainer/model_info.h"

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "layers/block.h"
#include "layers/hybrid.h"
#include "layers/linear.h"
#include "layers/lm.h"
#include "layers/mlp.h"

namespace coil {

namespace {

// One kind of mixer layer of the model, built once at its real width (a few million parameters at
// most, on the CPU) to read its tensors and decode state.
struct MixerKind {
  std::string label;  // "mixer (linear)", "M (mamba2)": its row of the decode-state table
  std::string part;   // "block mixer (linear)", "M (mamba2)": its row of the parameter table
  int64_t each = 0;   // parameters of one such mixer
  int64_t layers = 0;
  bool per_head = false;  // the state splits evenly over the config's n_heads
  std::shared_ptr<Mixer> mixer;
};

// The mixers of the model, one entry per kind (hybrid: one per mixer letter of the pattern, each
// built as the HybridLayer that the model builds for that letter).
std::vector<MixerKind> mixer_kinds(const ModelConfig& c) {
  if (c.mixer != "hybrid") {
    Generator gen(c.seed);
    return {{"mixer (" + c.mixer + ")", "block mixer (" + c.mixer + ")", count_mixer_parameters(c),
             c.n_layers, c.mixer == "linear", make_mixer(c, gen)}};
  }
  std::vector<MixerKind> kinds;
  for (const auto& [letter, name] :
       {std::pair<char, const char*>{'M', "mamba2"}, {'*', "softmax"}}) {
    const int64_t n = std::count(c.layer_pattern.begin(), c.layer_pattern.end(), letter);
    if (n == 0) continue;
    Generator gen(c.seed);
    HybridLayer layer(letter, c, gen);
    const std::string label = std::string(1, letter) + " (" + name + ")";
    kinds.push_back({label, label, HybridLayer::count_parameters(letter, c) - c.d_model, n, false,
                     layer.mixer});
  }
  return kinds;
}

ParamPart mixer_part(const MixerKind& k) {
  ParamPart g{k.part, k.each, k.layers, true, {}};
  for (const auto& [name, t] : k.mixer->named_parameters())
    g.tensors.emplace_back(name + " " + shape_str(t.shape()), t.numel());
  return g;
}

}  // namespace

int64_t kv_cache_crossover(int64_t state_values, int64_t n_heads, int64_t head_dim) {
  const int64_t per_token = 2 * n_heads * head_dim;
  return state_values / per_token + 1;  // smallest N with per_token * N > state_values
}

std::string group_digits(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v), r;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) r += ',';
    r += s[i];
  }
  return (v < 0 ? "-" : "") + r;
}

ModelInfo compute_model_info(const ModelConfig& c, int64_t context) {
  COIL_CHECK(context > 0, "model info: the context length must be positive, got ", context);
  ModelInfo info;
  info.total_parameters = LanguageModel::count_parameters(c);  // validates c
  info.context = context;
  info.kv_cache_values = 2 * c.n_heads * c.head_dim * context;

  const int64_t C = c.d_model, L = c.n_layers;
  info.params.push_back({"embedding",
                         Embedding::count_parameters(c.vocab, C),
                         1,
                         false,
                         {{"weight " + shape_str(Shape{c.vocab, C}), c.vocab * C}}});
  const std::vector<MixerKind> kinds = mixer_kinds(c);
  if (c.mixer == "hybrid") {
    // Each pattern letter is one pre-norm residual layer: norm + (Mamba-2 | attention | MLP).
    const int64_t n_layers = int64_t(c.layer_pattern.size());
    info.params.push_back({"layer norm (every letter)", C, n_layers, true, {}});
    for (const auto& k : kinds) info.params.push_back(mixer_part(k));
    const int64_t n_mlp = std::count(c.layer_pattern.begin(), c.layer_pattern.end(), '-');
    if (n_mlp)
      info.params.push_back(
          {"- (mlp, SwiGLU)", HybridLayer::count_parameters('-', c) - C, n_mlp, true, {}});
  } else {
    info.params.push_back({"block norm1 + norm2", 2 * C, L, true, {}});
    info.params.push_back(mixer_part(kinds[0]));
    info.params.push_back(
        {"block mlp (SwiGLU)",
         SwiGLUMLP::count_parameters(C, c.mlp_hidden),
         L,
         true,
         {{"gate.weight " + shape_str(Shape{c.mlp_hidden, C}), c.mlp_hidden * C},
          {"up.weight " + shape_str(Shape{c.mlp_hidden, C}), c.mlp_hidden * C},
          {"down.weight " + shape_str(Shape{C, c.mlp_hidden}), c.mlp_hidden * C}}});
  }
  info.params.push_back({"final norm", C, 1, false, {}});
  info.params.push_back({"lm_head",
                         Linear::count_parameters(C, c.vocab, false),
                         1,
                         false,
                         {{"weight " + shape_str(Shape{c.vocab, C}), c.vocab * C}}});
  // The parts must add up to the model's own count; if a layer grew a parameter this breakdown does
  // not know of, say so rather than print parts that silently disagree with the total.
  int64_t sum = 0;
  for (const auto& g : info.params) sum += g.total();
  if (sum != info.total_parameters)
    info.params.push_back(
        {"not itemised (breakdown out of date)", info.total_parameters - sum, 1, false, {}});

  for (const auto& k : kinds) {
    const Mixer& m = *k.mixer;
    StatePart s;
    s.name = k.label;
    s.layers = k.layers;
    s.heads = k.per_head ? c.n_heads : 0;
    s.values = m.decode_state_values(context);
    s.constant =
        m.decode_state_values(1) == s.values && m.decode_state_values(2 * context + 7) == s.values;
    if (s.constant) s.crossover = kv_cache_crossover(s.values, c.n_heads, c.head_dim);
    info.state.push_back(s);
  }
  return info;
}

namespace {

std::string bytes_str(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

// Column-aligned text: the first column left-aligned, the others right-aligned.
class Table {
 public:
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void print(std::ostream& out, const std::string& indent = "  ") const {
    std::vector<size_t> w;
    for (const auto& r : rows_)
      for (size_t i = 0; i < r.size(); ++i) {
        if (w.size() <= i) w.push_back(0);
        w[i] = std::max(w[i], r[i].size());
      }
    for (const auto& r : rows_) {
      std::string line = indent;
      for (size_t i = 0; i < r.size(); ++i) {
        const std::string pad(w[i] - r[i].size(), ' ');
        line += i == 0 ? r[i] + pad : "   " + pad + r[i];
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string mixer_summary(const ModelConfig& c) {
  std::ostringstream os;
  os << c.mixer;
  if (c.mixer == "linear") {
    const LinearMixerOptions& o = c.linear;
    os << " (power " << o.power << ", qk " << o.qk_activation << ", conv " << o.conv_width
       << ", a_mask " << o.a_mask << ", norm " << o.norm << (o.value_dt ? ", value dt" : "")
       << (o.d_residual ? ", D residual" : "") << (o.z_gate ? ", z gate" : "") << ")";
  } else if (c.mixer == "mamba2" || c.mixer == "hybrid") {
    const Mamba2Options& o = c.mamba2;
    if (c.mixer == "hybrid")
      os << ": attention " << (c.hybrid_attention_rope ? "with" : "without") << " RoPE, Mamba-2";
    os << " (d_state " << o.d_state << ", head_dim " << o.head_dim << ", d_conv " << o.d_conv
       << ", expand " << o.expand << ", ssm heads "
       << (o.n_ssm_heads ? std::to_string(o.n_ssm_heads) : std::string("all")) << ")";
  } else if (c.mixer == "mamba1") {
    const Mamba1Options& o = c.mamba1;
    os << " (d_state " << o.d_state << ", d_conv " << o.d_conv << ", expand " << o.expand
       << ", dt_rank " << (o.dt_rank ? std::to_string(o.dt_rank) : std::string("ceil(C/16)"))
       << ")";
  } else if (c.mixer == "softmax") {
    os << " (RoPE theta " << c.rope_theta << (c.rope_bf16_positions ? ", bf16-rounded positions" : "")
       << ")";
  }
  return os.str();
}

}  // namespace

void print_model_info(const ModelInfo& info, const ModelConfig& c, const std::string& source,
                      std::ostream& out) {
  out << "model " << source << "\n"
      << "  mixer " << mixer_summary(c) << "\n";
  if (c.mixer == "hybrid") {
    auto n = [&](char l) { return std::count(c.layer_pattern.begin(), c.layer_pattern.end(), l); };
    out << "  pattern " << c.layer_pattern << " (" << n('M') << " M, " << n('*') << " *, " << n('-')
        << " -)\n";
  }
  out << "  vocab " << group_digits(c.vocab) << ", d_model " << c.d_model << ", "
      << (c.mixer == "hybrid" ? int64_t(c.layer_pattern.size()) : c.n_layers) << " layers, "
      << c.n_heads << " heads x " << c.head_dim << ", mlp_hidden " << c.mlp_hidden << "\n\n";

  out << "parameters\n";
  Table p;
  p.row({"part", "each", "x", "total"});
  for (const auto& g : info.params) {
    p.row({g.name, group_digits(g.each), g.per_layer ? std::to_string(g.count) : "",
           group_digits(g.total())});
    if (g.tensors.size() > 1 || (g.tensors.size() == 1 && g.per_layer))
      for (const auto& [name, n] : g.tensors) p.row({"  " + name, group_digits(n), "", ""});
  }
  p.row({"total", "", "", group_digits(info.total_parameters)});
  p.print(out);

  out << "\ndecode state per sequence at context " << group_digits(info.context) << " (fp32, "
      << kStateBytesPerValue << " bytes per value)\n";
  Table s;
  s.row({"layer", "values/layer", "bytes/layer", "layers", "bytes, all layers", "grows"});
  int64_t all = 0;
  for (const auto& g : info.state) {
    s.row({g.name, group_digits(g.values), bytes_str(g.values * kStateBytesPerValue),
           std::to_string(g.layers), bytes_str(g.values * kStateBytesPerValue * g.layers),
           g.constant ? "no" : "with N"});
    all += g.values * g.layers;
  }
  bool has_kv_row = false;
  for (const auto& g : info.state)
    has_kv_row = has_kv_row || g.name.find("softmax") != std::string::npos;
  if (!has_kv_row)
    s.row({"softmax KV cache, same H and D", group_digits(info.kv_cache_values),
           bytes_str(info.kv_cache_values * kStateBytesPerValue), "", "", "with N"});
  s.print(out);
  out << "  whole model: " << bytes_str(all * kStateBytesPerValue) << " per sequence\n";

  out << "\nconstant state vs softmax KV cache (2*H*D*N values per layer, H " << c.n_heads << ", D "
      << c.head_dim << ")\n";
  for (const auto& g : info.state) {
    if (!g.crossover) {
      out << "  " << g.name << ": n/a, its decode state grows with the context (a KV cache)\n";
      continue;
    }
    out << "  " << g.name << ": a constant " << group_digits(g.values) << " values per layer";
    if (g.heads > 0 && g.values % g.heads == 0)
      out << " (" << group_digits(g.values / g.heads) << " per head)";
    out << ",\n    smaller than the KV cache from N = " << *g.crossover << " tokens on\n";
  }
  bool any_constant = false;
  for (const auto& g : info.state) any_constant = any_constant || g.crossover.has_value();
  if (!any_constant) return;
  if (c.mixer == "linear" && c.linear.power == "2")
    out << "  counting: the recurrent state a decoder keeps, with the symmetric feature map of "
           "spec\n"
           "    section 6 (F = D(D+1)/2 = "
        << c.head_dim * (c.head_dim + 1) / 2
        << "): numerator F*D + denominator F + conv carry (w-1)*3*D\n"
           "    per head; N is the smallest context with 2*D*N > that per-head state, which with\n"
           "    w = 2 is N > (D+1)^2/4 + 3/2 (spec section 6: 1058 tokens at D = 64).\n";
  else
    out << "  counting: every value the mixer's recurrent step keeps between tokens\n"
           "    (decode_state_values); N is the smallest context with 2*H*D*N > that state.\n";
}

}  // namespace coil
