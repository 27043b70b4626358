// Autograd graph nodes. Each differentiable op output gets a Node whose apply() maps the
// gradient of that output to gradients of the op's inputs; `next` holds one edge per input.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace autotp {

class Node {
 public:
  // Unlinks `next` iteratively, so dropping a very deep graph cannot overflow the stack.
  virtual ~Node();
  // Gradients w.r.t. each input (undefined where an input needs none), given the gradient
  // w.r.t. this node's output. Called with grad mode disabled.
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Frees saved tensors once the graph is no longer needed.
  virtual void release() {}
  virtual std::string name() const = 0;

  std::vector<std::shared_ptr<Node>> next;  // one per input; null where no gradient flows
  bool released = false;
};

// A node whose backward is a closure over the tensors it saved.
class FunctionNode final : public Node {
 public:
  using Backward = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
  FunctionNode(std::string name, Backward backward)
      : name_(std::move(name)), backward_(std::move(backward)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override { return backward_(grad_output); }
  void release() override { backward_ = nullptr; }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  Backward backward_;
};

// Accumulates incoming gradients into a leaf tensor's .grad, then calls the leaf's
// post-accumulate-grad hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  std::string name() const override { return "AccumulateGrad"; }

 private:
  Tensor leaf_;  // a copy of the leaf: its data and its autograd record
};

// True when grad mode is on and any of `inputs` requires a gradient.
bool needs_grad(const std::vector<const Tensor*>& inputs);
inline bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  return needs_grad(std::vector<const Tensor*>(inputs));
}

// Connects `output` to the graph: when needs_grad(inputs), creates a FunctionNode named
// `name` with `backward`, wires one edge per input and marks `output` as requiring grad.
// `backward` returns one gradient per input, in order (undefined for "no gradient").
// Returns `output` for convenience.
Tensor record_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                 FunctionNode::Backward backward);

// Reduces a broadcast gradient back to `shape` by summing the broadcast dims.
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

}  // namespace autotp
