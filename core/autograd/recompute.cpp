// Activation recompute: forward without a graph, rebuild the graph in backward.
#include "core/autograd/recompute.h"

#include "core/autocast.h"
#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace coil {
namespace {

class RecomputeNode : public Node {
 public:
  RecomputeNode(RecomputeFn fn, const std::vector<Tensor>& inputs)
      : fn_(std::move(fn)), autocast_(autocast_enabled()) {
    for (const Tensor& t : inputs) {
      inputs_.emplace_back(t);
      requires_.push_back(t.defined() && t.requires_grad());
    }
  }
  std::string name() const override { return "RecomputeBackward"; }
  void release() override { inputs_.clear(); }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    COIL_CHECK(!inputs_.empty() || requires_.empty(),
               "recompute: backward ran twice through a region whose inputs were released "
               "(pass retain_graph=true)");
    std::vector<Tensor> detached;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      Tensor t = inputs_[i].unpack("recompute");
      if (t.defined()) {
        t = t.detach();
        if (requires_[i]) t.set_requires_grad(true);
      }
      detached.push_back(t);
    }
    std::vector<Tensor> outs;
    {
      EnableGradGuard grad_on;
      AutocastGuard autocast(autocast_);  // the replay runs in the precisions of the forward
      outs = fn_(detached);
    }
    COIL_CHECK(outs.size() == grads.size(), "recompute: the region returned ", outs.size(),
               " outputs in backward but ", grads.size(), " in forward (it must be deterministic)");
    std::vector<Tensor> roots, root_grads;
    for (size_t i = 0; i < outs.size(); ++i) {
      if (!grads[i].defined() || !outs[i].requires_grad()) continue;
      COIL_CHECK(outs[i].shape() == output_shapes[i], "recompute: output ", i, " has shape ",
                 shape_str(outs[i].shape()), " in backward but ", shape_str(output_shapes[i]),
                 " in forward");
      roots.push_back(outs[i]);
      root_grads.push_back(grads[i]);
    }
    if (!roots.empty()) coil::backward(roots, root_grads);
    std::vector<Tensor> result;
    for (size_t i = 0; i < detached.size(); ++i)
      result.push_back(requires_[i] ? detached[i].grad() : Tensor());
    return result;
  }

 private:
  RecomputeFn fn_;
  bool autocast_;  // the autocast state of the forward
  std::vector<SavedTensor> inputs_;
  std::vector<bool> requires_;
};

}  // namespace

std::vector<Tensor> recompute(const RecomputeFn& fn, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = fn(inputs);
  }
  if (!GradMode::is_enabled()) return outs;
  auto node = std::make_shared<RecomputeNode>(fn, inputs);
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  node->set_num_outputs(int(outs.size()));
  for (size_t i = 0; i < outs.size(); ++i) {
    outs[i] = outs[i].detach();  // never rewire a tensor the region merely passed through
    node->output_shapes.push_back(outs[i].shape());
    node->output_dtypes.push_back(outs[i].dtype());
    node->output_devices.push_back(outs[i].device());
    if (is_floating(outs[i].dtype())) {
      outs[i].impl()->grad_fn = node;
      outs[i].impl()->output_nr = int(i);
    }
  }
  return outs;
}

}  // namespace coil
