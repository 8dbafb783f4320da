// MixerState helpers.
#include "layers/mixer.h"

namespace coil {

bool MixerState::has(const std::string& name) const {
  for (const auto& [n, t] : entries)
    if (n == name) return true;
  return false;
}

Tensor MixerState::get(const std::string& name) const {
  for (const auto& [n, t] : entries)
    if (n == name) return t;
  std::string have;
  for (const auto& [n, t] : entries) have += (have.empty() ? "" : ", ") + n;
  COIL_FAIL("mixer state has no entry '", name, "' (entries: ", have.empty() ? "none" : have, ")");
}

void MixerState::set(const std::string& name, const Tensor& t) {
  for (auto& [n, v] : entries)
    if (n == name) {
      v = t;
      return;
    }
  entries.emplace_back(name, t);
}

int64_t MixerState::values_per_sequence() const {
  int64_t total = 0;
  for (const auto& [n, t] : entries)
    if (t.defined() && t.dim() > 0 && t.size(0) > 0) total += t.numel() / t.size(0);
  return total;
}

}  // namespace coil
