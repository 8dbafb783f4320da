// Nodes, saved tensors and the record() helper every op front-end uses.
#include "core/autograd/node.h"

#include <atomic>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"

namespace coil {
namespace {
std::atomic<int64_t> g_live_nodes{0};
}

// A saved tensor is held detached (no grad_fn), which keeps outputs saved by their own node from
// forming a reference cycle; the storage (and so the version counter) is shared.
SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::unpack(const char* op_name) const {
  if (!tensor_.defined()) return tensor_;
  COIL_CHECK(tensor_.version() == version_, "a tensor saved by ", op_name,
             " for backward was modified in place after it was saved (version ", version_, " -> ",
             tensor_.version(), "; tensor ", tensor_.describe(), "). Clone it before writing to it.");
  return tensor_;
}

Node::Node() { ++g_live_nodes; }
Node::~Node() { --g_live_nodes; }
int64_t Node::live_count() { return g_live_nodes.load(); }

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(leaf) {
  set_num_outputs(1);
  Tensor t(leaf);
  output_shapes = {t.shape()};
  output_dtypes = {t.dtype()};
  output_devices = {t.device()};
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  auto impl = leaf_.lock();
  if (!impl || !grads[0].defined()) return {};
  Tensor leaf(impl);
  const Tensor& g = grads[0];
  COIL_INTERNAL_ASSERT(g.shape() == leaf.shape(), "gradient ", shape_str(g.shape()), " for leaf ",
                       leaf.describe());
  COIL_INTERNAL_ASSERT(g.dtype() == leaf.dtype(), "gradient dtype ", dtype_name(g.dtype()),
                       " for leaf ", leaf.describe());
  Tensor cur = leaf.grad();
  // The incoming tensor may be shared with other consumers of the same gradient (the same handle
  // sent to two inputs, or a view of a larger gradient): then it is copied. A gradient nobody else
  // references is taken as it is, which saves a full copy per parameter per step.
  const bool sole_owner = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                          g.is_contiguous() && g.offset() == 0;
  leaf.set_grad(cur.defined() ? add(cur, g) : (sole_owner ? g : g.clone()));
  for (auto& hook : post_hooks) hook(leaf);
  return {};
}

FunctionNode::FunctionNode(std::string name, Backward backward, std::vector<Tensor> saved)
    : name_(std::move(name)), backward_(std::move(backward)) {
  saved_.reserve(saved.size());
  for (const Tensor& t : saved) saved_.emplace_back(t);
}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  for (size_t i = 0; i < grads.size(); ++i)
    if (!grads[i].defined())
      grads[i] = Tensor::zeros(output_shapes[i], output_dtypes[i], output_devices[i]);
  std::vector<Tensor> saved;
  saved.reserve(saved_.size());
  for (const SavedTensor& s : saved_) saved.push_back(s.unpack(name_.c_str()));
  std::vector<Tensor> out = backward_(grads, saved);
  COIL_INTERNAL_ASSERT(out.size() == next_edges.size(), name_, " returned ", out.size(),
                       " gradients for ", next_edges.size(), " inputs");
  return out;
}

void FunctionNode::release() {
  for (SavedTensor& s : saved_) s.reset();
}

std::shared_ptr<AccumulateGrad> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.impl();
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
    impl->grad_accumulator = acc;
  }
  return acc;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return Edge{};
  if (t.grad_fn()) return Edge{t.grad_fn(), t.output_nr()};
  return Edge{grad_accumulator(t), 0};
}

bool record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, FunctionNode::Backward backward,
            std::vector<Tensor> saved, std::vector<bool> differentiable_outputs) {
  if (!GradMode::is_enabled()) return false;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return false;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward), std::move(saved));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  node->set_num_outputs(int(outputs.size()));
  for (size_t i = 0; i < outputs.size(); ++i) {
    node->output_shapes.push_back(outputs[i].shape());
    node->output_dtypes.push_back(outputs[i].dtype());
    node->output_devices.push_back(outputs[i].device());
    if (differentiable_outputs.empty() || differentiable_outputs[i]) {
      outputs[i].impl()->grad_fn = node;
      outputs[i].impl()->output_nr = int(i);
    }
  }
  return true;
}

}  // namespace coil
