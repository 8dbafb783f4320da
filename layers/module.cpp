// Module base: registration, recursive parameter naming, state dict save/load.
#include "layers/module.h"

#include <set>

#include "core/autograd/grad_mode.h"
#include "core/error.h"

namespace coil {

void Module::check_new_name(const std::string& name) const {
  COIL_CHECK(!name.empty() && name.find('.') == std::string::npos,
             "module member names must be non-empty and contain no '.', got '", name, "'");
  for (const auto& [n, _] : params_)
    COIL_CHECK(n != name, "a parameter named '", name, "' is already registered");
  for (const auto& [n, _] : children_)
    COIL_CHECK(n != name, "a submodule named '", name, "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  COIL_CHECK(t.defined(), "parameter '", name, "' is undefined");
  COIL_CHECK(t.is_leaf(), "parameter '", name, "' must be a leaf tensor");
  COIL_CHECK(is_floating(t.dtype()), "parameter '", name, "' must be floating point, got ",
             t.describe());
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  COIL_CHECK(m != nullptr, "submodule '", name, "' is null");
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t);
  return out;
}

LoadStateDictResult Module::load_state_dict(const StateDict& dict, bool strict) {
  LoadStateDictResult result;
  const NamedTensors params = named_parameters();
  std::set<std::string> own;
  for (const auto& [name, t] : params) {
    own.insert(name);
    auto it = dict.find(name);
    if (it == dict.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    COIL_CHECK(src.defined(), "load_state_dict: value for key '", name, "' is undefined");
    COIL_CHECK(src.shape() == t.shape(), "load_state_dict: shape mismatch for key '", name,
               "': the model has ", shape_str(t.shape()), ", the state dict has ",
               shape_str(src.shape()));
  }
  for (const auto& [name, _] : dict)
    if (!own.count(name)) result.unexpected_keys.push_back(name);
  if (strict) {
    COIL_CHECK(result.missing_keys.empty(), "load_state_dict: missing key '",
               result.missing_keys.front(), "' (", result.missing_keys.size(),
               " missing in all)");
    COIL_CHECK(result.unexpected_keys.empty(), "load_state_dict: unexpected key '",
               result.unexpected_keys.front(), "' (", result.unexpected_keys.size(),
               " unexpected in all)");
  }
  // Checked everything before writing, so a failed load leaves the module unchanged.
  NoGradGuard no_grad;
  for (auto [name, t] : params) {
    auto it = dict.find(name);
    if (it != dict.end() && !it->second.same(t)) t.copy_(it->second);
  }
  return result;
}

void Module::zero_grad() {
  for (auto& [_, t] : named_parameters()) t.zero_grad();
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

void ModuleList::push_back(std::shared_ptr<Module> m) {
  register_module(std::to_string(size()), std::move(m));
}

}  // namespace coil
