// The named rows of the paper's tables (arXiv 2602.17363, Tables 1-3 and the final models) as
// LinearMixerOptions, and the validation of a hand-written option set.
#include <utility>

#include "layers/linear_mixer.h"

namespace coil {

namespace {

LinearMixerOptions out_norm() {
  LinearMixerOptions o;
  o.power = "1";
  o.norm = "output";
  return o;
}

template <typename F>
LinearMixerOptions out_norm_with(F edit) {
  LinearMixerOptions o = out_norm();
  edit(o);
  return o;
}

// 2Mamba's common pipeline: conv w=2 on QKV, softplus A-mask, sm norm.
LinearMixerOptions two_mamba(const std::string& power, bool dt) {
  LinearMixerOptions o;
  o.power = power;
  o.conv_width = 2;
  o.a_mask = "softplus";
  o.norm = "sm";
  o.value_dt = dt;
  return o;
}

const std::vector<std::pair<std::string, LinearMixerOptions>>& presets() {
  static const std::vector<std::pair<std::string, LinearMixerOptions>> table = [] {
    std::vector<std::pair<std::string, LinearMixerOptions>> t;
    // "Linear": SM norm + ReLU features, w_ij = s relu(q_i).relu(k_j), no conv, no mask.
    LinearMixerOptions lin;
    lin.power = "1";
    lin.qk_activation = "relu";
    lin.norm = "sm";
    t.emplace_back("linear", lin);
    t.emplace_back("out-norm", out_norm());
    t.emplace_back("out-norm-relu", out_norm_with([](auto& o) { o.qk_activation = "relu"; }));
    t.emplace_back("out-norm-conv2", out_norm_with([](auto& o) { o.conv_width = 2; }));
    t.emplace_back("out-norm-conv3", out_norm_with([](auto& o) { o.conv_width = 3; }));
    t.emplace_back("out-norm-conv4", out_norm_with([](auto& o) { o.conv_width = 4; }));
    t.emplace_back("out-norm-silu", out_norm_with([](auto& o) { o.qk_activation = "silu"; }));
    t.emplace_back("out-norm-dres", out_norm_with([](auto& o) { o.d_residual = true; }));
    t.emplace_back("out-norm-zgate", out_norm_with([](auto& o) { o.z_gate = true; }));
    t.emplace_back("out-norm-dt", out_norm_with([](auto& o) { o.value_dt = true; }));
    t.emplace_back("out-norm-amask-original", out_norm_with([](auto& o) { o.a_mask = "original"; }));
    t.emplace_back("out-norm-amask-softplus", out_norm_with([](auto& o) { o.a_mask = "softplus"; }));
    // Mamba-2S: conv 2, dt on V, softplus A-mask, power 1, output norm.
    t.emplace_back("mamba2s", out_norm_with([](auto& o) {
                     o.conv_width = 2;
                     o.value_dt = true;
                     o.a_mask = "softplus";
                   }));
    t.emplace_back("2mamba", two_mamba("2", false));
    t.emplace_back("2mamba-dt", two_mamba("2", true));
    t.emplace_back("2mamba-e", two_mamba("exp", false));
    return t;
  }();
  return table;
}

bool one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (v == a) return true;
  return false;
}

}  // namespace

const std::vector<std::string>& linear_preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [name, o] : presets()) n.push_back(name);
    return n;
  }();
  return names;
}

LinearMixerOptions linear_preset(const std::string& name) {
  for (const auto& [n, o] : presets())
    if (n == name) return o;
  std::string valid;
  for (const auto& n : linear_preset_names()) valid += (valid.empty() ? "" : ", ") + n;
  COIL_FAIL("unknown linear mixer preset '", name, "' (valid: ", valid, ")");
}

void validate_linear_options(const LinearMixerOptions& o) {
  COIL_CHECK(one_of(o.power, {"1", "2", "exp"}), "linear mixer: power must be 1, 2 or exp, got '",
             o.power, "'");
  COIL_CHECK(one_of(o.qk_activation, {"none", "relu", "silu"}),
             "linear mixer: qk_activation must be none, relu or silu, got '", o.qk_activation, "'");
  COIL_CHECK(o.conv_width >= 0 && o.conv_width <= 4,
             "linear mixer: conv_width must be in 0..4 (0 = no conv), got ", o.conv_width);
  COIL_CHECK(one_of(o.a_mask, {"none", "original", "softplus"}),
             "linear mixer: a_mask must be none, original or softplus, got '", o.a_mask, "'");
  COIL_CHECK(one_of(o.norm, {"sm", "output"}), "linear mixer: norm must be sm or output, got '",
             o.norm, "'");
  COIL_CHECK(one_of(o.form, {"auto", "quadratic", "chunked"}),
             "linear mixer: form must be auto, quadratic or chunked, got '", o.form, "'");
  COIL_CHECK(o.chunked_from > 0, "linear mixer: chunked_from must be positive, got ", o.chunked_from);
  COIL_CHECK(o.chunk_size > 0, "linear mixer: chunk_size must be positive, got ", o.chunk_size);
  COIL_CHECK(o.power != "exp" || o.norm == "sm",
             "linear mixer: power exp (2Mamba-E, softmax with decay) normalises by its row sum; "
             "norm must be sm, got '", o.norm, "'");
  // sm norm divides by sum_j w_ij, which must be >= 0: power 1 needs non-negative (ReLU) features.
  COIL_CHECK(
      o.power != "1" || o.norm != "sm" || o.qk_activation == "relu",
      "linear mixer: power 1 with norm sm needs qk_activation relu (non-negative weights), got '",
      o.qk_activation, "'");
}

}  // namespace coil
