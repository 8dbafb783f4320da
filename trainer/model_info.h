// What `coil model info` reports about a model config, computed without building the model: the
// parameter count (LanguageModel::count_parameters) split by part, the decode state each layer
// keeps at a context length (fp32, 4 bytes per value), and for a mixer with a constant state the
// context from which that state is smaller than a softmax KV cache of the same heads (spec section
// 6's crossover). Only ONE mixer of the config's real width is built, to read its tensors and
// decode_state_values.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "layers/config.h"

namespace coil {

// Parameters of one part of the model: `each` per instance, `count` instances (layers).
struct ParamPart {
  std::string name;
  int64_t each = 0;
  int64_t count = 1;
  bool per_layer = false;  // a part of every block (or of every layer of one pattern letter)
  // The part's tensors when known (name with shape, values), e.g. "qkv.weight (3072, 1024)".
  std::vector<std::pair<std::string, int64_t>> tensors;
  int64_t total() const { return each * count; }
};

// Decode state of one kind of layer, per sequence.
struct StatePart {
  std::string name;       // "mixer (linear)", "M (mamba2)", ...
  int64_t layers = 0;     // layers of this kind
  int64_t heads = 0;      // heads the state splits over evenly (linear mixers: H), else 0
  int64_t values = 0;     // values per layer at the context length
  bool constant = false;  // independent of the context length
  // Constant states only: the smallest N with 2*H*D*N > values (H, D: the config's heads and
  // head_dim).
  std::optional<int64_t> crossover;
};

struct ModelInfo {
  int64_t total_parameters = 0;  // LanguageModel::count_parameters
  std::vector<ParamPart> params;
  int64_t context = 0;
  std::vector<StatePart> state;
  int64_t kv_cache_values = 0;  // one softmax layer of the config's H, D at the context: 2*H*D*N
};

constexpr int64_t kStateBytesPerValue = 4;  // decode state is kept in fp32

ModelInfo compute_model_info(const ModelConfig& config, int64_t context = 2048);

// The smallest context N at which a softmax KV cache (2*H*D*N values) exceeds `state_values`.
int64_t kv_cache_crossover(int64_t state_values, int64_t n_heads, int64_t head_dim);

// The aligned report of `coil model info`; `source` names the config file.
void print_model_info(const ModelInfo& info, const ModelConfig& config, const std::string& source,
                      std::ostream& out);

// 275293184 -> "275,293,184".
std::string group_digits(int64_t v);

}  // namespace coil
