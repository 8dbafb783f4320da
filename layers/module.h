// Module: the base of every layer. A module owns named parameters (leaf tensors with requires_grad) and
// named child modules; names join with dots in registration order, so a parameter of the LM is called
// like `layers.3.mixer.qkv.weight` (a ModuleList names its children by index). The state dict is that
// flat name -> tensor map; loading copies values into the existing tensors, so handles held in fields
// stay valid.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace coil {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = std::map<std::string, Tensor>;

// Where a layer's parameters live and in which type (the master weights: f32, or f64 in gradient tests).
struct ParamOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// What a non-strict load_state_dict skipped (a strict load throws instead).
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;     // in the module, not in the map
  std::vector<std::string> unexpected_keys;  // in the map, not in the module
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its descendants: own parameters first, then each child's, in
  // registration order, with dotted names.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  StateDict state_dict() const;
  // Copies every value in (dtype converted, no autograd). Throws coil::Error naming the key on a shape
  // mismatch; with strict, also on a missing or unexpected key.
  LoadStateDictResult load_state_dict(const StateDict& dict, bool strict = true);
  void zero_grad();
  int64_t num_parameters() const;

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return children_;
  }

 protected:
  // Marks t as a trainable leaf (requires_grad) and returns it. Names must be unique and dot-free.
  Tensor register_parameter(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, NamedTensors& out) const;

  NamedTensors params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// An ordered list of modules named "0", "1", ...
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<Module> m);
  size_t size() const { return named_children().size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return named_children().at(i).second; }
};

}  // namespace coil
