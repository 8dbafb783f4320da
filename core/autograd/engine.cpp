// The reverse pass (Kahn's algorithm over the reachable graph). Each node runs once, after every
// gradient it waits for has been summed into its input buffer.
#include "core/autograd/engine.h"

#include <unordered_map>

#include "core/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"

namespace coil {

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
              bool retain_graph) {
  COIL_CHECK(roots.size() == grad_roots.size(), "backward: ", roots.size(), " roots but ",
             grad_roots.size(), " gradients");
  NoGradGuard no_grad;
  // Backward formulas run in the dtypes the forward recorded: no autocast casts in the reverse pass.
  AutocastGuard no_autocast(false);

  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::unordered_map<Node*, int> pending;  // gradients still to arrive, per node
  std::vector<std::shared_ptr<Node>> root_nodes;

  auto accumulate = [&](Node* n, int slot, const Tensor& g) {
    auto& buf = buffers[n];
    if (buf.empty()) buf.resize(size_t(n->num_outputs()));
    if (!g.defined()) return;
    buf[slot] = buf[slot].defined() ? add(buf[slot], g) : g;
  };

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    COIL_CHECK(r.requires_grad(), "backward: root ", i, " (", r.describe(),
               ") does not require grad and has no grad_fn");
    Tensor g = grad_roots[i];
    if (!g.defined()) {
      COIL_CHECK(r.numel() == 1, "backward: a gradient must be given for the non-scalar root ",
                 r.describe());
      g = Tensor::ones(r.shape(), r.dtype(), r.device());
    }
    COIL_CHECK(g.shape() == r.shape(), "backward: gradient ", shape_str(g.shape()), " for root ",
               shape_str(r.shape()));
    Edge e = gradient_edge(r);
    root_nodes.push_back(e.fn);
    accumulate(e.fn.get(), e.input_nr, g.dtype() == r.dtype() ? g : g.to(r.dtype()));
  }

  // Count, for every reachable node, how many edges point at it.
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (auto& n : root_nodes)
    if (!seen[n.get()]) { seen[n.get()] = true; stack.push_back(n.get()); }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.fn) continue;
      pending[e.fn.get()]++;
      if (!seen[e.fn.get()]) { seen[e.fn.get()] = true; stack.push_back(e.fn.get()); }
    }
  }

  // Keep every node alive while it is in flight (edges hold shared_ptrs; roots too).
  std::vector<std::shared_ptr<Node>> ready;
  for (auto& n : root_nodes)
    if (pending[n.get()] == 0) {
      pending[n.get()] = -1;  // queued
      ready.push_back(n);
    }
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    std::vector<Tensor> grads = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    if (grads.empty()) grads.resize(size_t(node->num_outputs()));
    std::vector<Tensor> out = node->apply(std::move(grads));
    if (!retain_graph) node->release();
    for (size_t i = 0; i < node->next_edges.size() && i < out.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.fn) continue;
      accumulate(e.fn.get(), e.input_nr, out[i]);
      if (--pending[e.fn.get()] == 0) ready.push_back(e.fn);
    }
  }
}

}  // namespace coil
