// Full <-> sharded tensors by name, through the shard specs of the sharded model.
#include "parallel/state_shards.h"

namespace coil {

StateDict gather_full_tensors(const ParallelLanguageModel& model, const StateDict& local) {
  StateDict out;
  Communicator& tp = *model.groups().tp;
  for (const auto& [name, p] : model.named_parameters()) {
    auto it = local.find(name);
    COIL_CHECK(it != local.end(), "gather_full_tensors: no tensor for parameter '", name, "'");
    COIL_CHECK(it->second.shape() == p.shape(), "gather_full_tensors: '", name, "' is ",
               shape_str(it->second.shape()), ", the local parameter ", shape_str(p.shape()));
    out[name] = gather_param_shards(it->second, model.spec(name), tp);
  }
  return out;
}

StateDict gather_full_parameters(const ParallelLanguageModel& model) {
  return gather_full_tensors(model, model.state_dict());
}

StateDict shard_full_tensors(const ParallelLanguageModel& model, const StateDict& full) {
  const CommPtr& tp = model.groups().tp;
  StateDict out;
  for (const auto& [name, p] : model.named_parameters()) {
    auto it = full.find(name);
    COIL_CHECK(it != full.end(), "shard_full_tensors: no tensor for parameter '", name, "'");
    const ShardSpec& s = model.spec(name);
    Shape want = p.shape();
    if (!s.replicated() && tp->size() > 1) {
      want[size_t(s.dim)] = 0;
      for (int64_t w : s.widths) want[size_t(s.dim)] += w;
    }
    COIL_CHECK(it->second.shape() == want, "shard_full_tensors: '", name, "' is ",
               shape_str(it->second.shape()), ", the model's full parameter is ", shape_str(want));
    out[name] = take_param_shard(it->second, s, tp->rank(), tp->size()).to(p.dtype());
  }
  return out;
}

void load_full_parameters(ParallelLanguageModel& model, const StateDict& full) {
  model.load_state_dict(shard_full_tensors(model, full), true);
}

}  // namespace coil
