// ZeroAdamW: flat layout, reduce-scatter -> shard update -> all-gather, and the state exchange used by
// checkpoints.
#include "parallel/zero.h"

namespace coil {

ZeroAdamW::ZeroAdamW(CommPtr group, const NamedTensors& params, const AdamWParams& hp)
    : group_(std::move(group)), params_(params), hp_(hp) {
  COIL_CHECK(group_ != nullptr, "ZeroAdamW: no communicator given");
  COIL_CHECK(!params_.empty(), "ZeroAdamW: no parameters");
  const DType pdt = params_[0].second.dtype();
  for (const auto& [name, p] : params_) {
    COIL_CHECK(p.dtype() == pdt, "ZeroAdamW: parameter '", name, "' is ", dtype_name(p.dtype()),
               ", the first one ", dtype_name(pdt), " (one dtype per optimizer)");
    offsets_.push_back(total_);
    total_ += p.numel();
  }
  const int64_t G = group_->size();
  padded_ = (total_ + G - 1) / G * G;
  shard_ = padded_ / G;
  const DType mdt = pdt == DType::F64 ? DType::F64 : DType::F32;
  const Device dev = params_[0].second.device();
  Tensor flat = Tensor::zeros({padded_}, mdt, dev);
  for (size_t i = 0; i < params_.size(); ++i)
    flat.narrow(0, offsets_[i], params_[i].second.numel())
        .copy_(params_[i].second.detach().contiguous().reshape({params_[i].second.numel()}));
  master_ = flat.narrow(0, group_->rank() * shard_, shard_).clone();
  m_ = Tensor::zeros({shard_}, mdt, dev);
  v_ = Tensor::zeros({shard_}, mdt, dev);
}

void ZeroAdamW::step() {
  Tensor flat_g = Tensor::zeros({padded_}, master_.dtype(), master_.device());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].second.grad();
    if (g.defined()) flat_g.narrow(0, offsets_[i], g.numel()).copy_(g.contiguous().reshape({g.numel()}));
  }
  Tensor g_shard = Tensor::zeros({shard_}, master_.dtype(), master_.device());
  group_->reduce_scatter(flat_g, g_shard, ReduceOp::Sum);
  ++step_;
  AdamWParams p = hp_;
  p.step = step_;
  adamw_step(master_, g_shard, m_, v_, p);
  Tensor flat = Tensor::zeros({padded_}, master_.dtype(), master_.device());
  group_->all_gather(master_, flat);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& t = params_[i].second;
    t.detach().copy_(flat.narrow(0, offsets_[i], t.numel()).reshape(t.shape()));
  }
}

void ZeroAdamW::zero_grad() {
  for (const auto& [name, p] : params_) p.zero_grad();
}

Tensor& ZeroAdamW::buffer(const std::string& which) {
  if (which == "m") return m_;
  if (which == "v") return v_;
  if (which == "master") return master_;
  COIL_FAIL("ZeroAdamW: unknown state '", which, "' (expected m, v or master)");
}

const Tensor& ZeroAdamW::buffer(const std::string& which) const {
  return const_cast<ZeroAdamW*>(this)->buffer(which);
}

StateDict ZeroAdamW::local_state(const std::string& which) const {
  const Tensor& b = buffer(which);
  Tensor flat = Tensor::zeros({padded_}, b.dtype(), b.device());
  group_->all_gather(b, flat);
  StateDict out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& t = params_[i].second;
    out[params_[i].first] = flat.narrow(0, offsets_[i], t.numel()).reshape(t.shape()).clone();
  }
  return out;
}

void ZeroAdamW::load_local_state(const std::string& which, const StateDict& tensors) {
  Tensor& b = buffer(which);
  Tensor flat = Tensor::zeros({padded_}, b.dtype(), b.device());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, t] = params_[i];
    auto it = tensors.find(name);
    COIL_CHECK(it != tensors.end(), "ZeroAdamW: state '", which, "' has no entry for '", name, "'");
    COIL_CHECK(it->second.shape() == t.shape(), "ZeroAdamW: state '", which, "' entry '", name, "' is ",
               shape_str(it->second.shape()), ", the parameter ", shape_str(t.shape()));
    flat.narrow(0, offsets_[i], t.numel()).copy_(it->second.contiguous().reshape({t.numel()}));
    if (which == "master") t.detach().copy_(it->second);
  }
  b.copy_(flat.narrow(0, group_->rank() * shard_, shard_));
}

}  // namespace coil
