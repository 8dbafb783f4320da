// Autograd graph nodes. Each differentiable op that sees an input requiring grad records one Node:
// its backward function, edges to the nodes that produced its inputs, and the tensors it saved.
// A Node with k outputs receives k incoming gradients (undefined = zero) and returns one gradient per
// input edge (undefined = no gradient). Leaves are reached through AccumulateGrad nodes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace coil {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: this input needs no gradient
  int input_nr = 0;          // which output of fn the gradient belongs to
};

// A tensor saved for backward. Unpacking checks that nobody wrote to its storage in place since it
// was saved (the version counter) and throws coil::Error naming the op otherwise.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor unpack(const char* op_name) const;
  void reset() { tensor_ = Tensor(); }
  bool defined() const { return tensor_.defined(); }

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node();
  // grads.size() == num_outputs(); returns one gradient per next edge.
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Drop saved tensors after the backward pass (called unless retain_graph).
  virtual void release() {}

  int num_outputs() const { return num_outputs_; }
  void set_num_outputs(int n) { num_outputs_ = n; }
  std::vector<Edge> next_edges;
  // Shapes and dtypes of this node's outputs: an undefined incoming gradient is replaced by zeros.
  std::vector<Shape> output_shapes;
  std::vector<DType> output_dtypes;
  std::vector<Device> output_devices;

  static int64_t live_count();  // number of Node objects alive (tests of graph release)

 private:
  int num_outputs_ = 1;
};

// Accumulates the incoming gradient into a leaf tensor's .grad (+=, or set on first arrival).
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }
  // Called after every accumulation with the leaf (data-parallel gradient buckets use this).
  std::vector<std::function<void(const Tensor& leaf)>> post_hooks;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// The node most ops use: a backward closure plus saved tensors. The closure receives the incoming
// gradients (zeros substituted for undefined ones) and the unpacked saved tensors.
class FunctionNode : public Node {
 public:
  using Backward = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads,
                                                     const std::vector<Tensor>& saved)>;
  FunctionNode(std::string name, Backward backward, std::vector<Tensor> saved);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return name_; }
  void release() override;

 private:
  std::string name_;
  Backward backward_;
  std::vector<SavedTensor> saved_;
};

// The edge to use for a tensor that is an input of a new node.
Edge gradient_edge(const Tensor& t);
std::shared_ptr<AccumulateGrad> grad_accumulator(const Tensor& leaf);

// Record a node for an op: when grad mode is on and any input requires grad, creates a FunctionNode
// with edges to `inputs`, attaches it as grad_fn of `outputs` (output_nr = position), and returns true.
// Outputs listed as non-differentiable (e.g. the lse of attention) keep no grad_fn.
bool record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, FunctionNode::Backward backward,
            std::vector<Tensor> saved = {}, std::vector<bool> differentiable_outputs = {});

}  // namespace coil
