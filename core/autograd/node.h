// Autograd graph nodes. Each differentiable op output gets a Node whose apply() maps the
// gradient of that output to gradients of the op's inputs; `next` holds one edge per input.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace autotp {

// The gradients the engine already holds for a node's inputs when the node runs: slot i is
// the sum so far of the gradients for input i from the node's other consumers (undefined when
// there is none yet, or when input i's edge is shared with another input of the same node).
// A node may fold slot i into its own kernels (a GEMM accumulating with beta = 1, a fused
// backward that adds it) instead of leaving the sum to a separate add: it moves the tensor out
// of the slot, leaving it undefined, and returns slot + its own gradient for input i. Slots
// left in place are added by the engine as usual. Writing into a slot's memory in place is
// allowed only when owns_its_storage() holds for it.
using PendingGradients = std::vector<Tensor>;

// True when `t` is the only handle to its storage and covers all of it contiguously: writing
// into it in place can then change nothing any other tensor sees.
bool owns_its_storage(const Tensor& t);

class Node {
 public:
  // Unlinks `next` iteratively, so dropping a very deep graph cannot overflow the stack.
  virtual ~Node();
  // Gradients w.r.t. each input (undefined where an input needs none), given the gradient
  // w.r.t. this node's output. Called with grad mode disabled.
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // apply() with the gradients already pending for the inputs (one slot per input, see
  // PendingGradients). `last_use` is true when the engine frees this node's saved tensors right
  // after the call (no retain_graph): the node may then write into the memory of a saved
  // tensor that owns_its_storage(), as nothing can read it again. Nodes that cannot fold a sum
  // into their kernels or reuse memory keep this default.
  virtual std::vector<Tensor> apply_folding(const Tensor& grad_output, PendingGradients& pending,
                                            bool last_use) {
    (void)pending;
    (void)last_use;
    return apply(grad_output);
  }
  // Frees saved tensors once the graph is no longer needed.
  virtual void release() {}
  virtual std::string name() const = 0;

  std::vector<std::shared_ptr<Node>> next;  // one per input; null where no gradient flows
  bool released = false;
};

// A node whose backward is a closure over the tensors it saved; a FoldingBackward closure
// also receives the pending gradients of the inputs (see PendingGradients), a
// MemoryReusingBackward closure whether this is its saved tensors' last use (see
// Node::apply_folding).
class FunctionNode final : public Node {
 public:
  using Backward = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
  using FoldingBackward =
      std::function<std::vector<Tensor>(const Tensor& grad_output, PendingGradients& pending)>;
  using MemoryReusingBackward =
      std::function<std::vector<Tensor>(const Tensor& grad_output, bool last_use)>;
  FunctionNode(std::string name, Backward backward)
      : name_(std::move(name)), backward_(std::move(backward)) {}
  FunctionNode(std::string name, FoldingBackward backward)
      : name_(std::move(name)), folding_backward_(std::move(backward)) {}
  FunctionNode(std::string name, MemoryReusingBackward backward)
      : name_(std::move(name)), reusing_backward_(std::move(backward)) {}
  // Called outside the engine's run (a test, a hook): never the saved tensors' last use.
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  std::vector<Tensor> apply_folding(const Tensor& grad_output, PendingGradients& pending,
                                    bool last_use) override;
  void release() override {
    backward_ = nullptr;
    folding_backward_ = nullptr;
    reusing_backward_ = nullptr;
  }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  Backward backward_;
  FoldingBackward folding_backward_;
  MemoryReusingBackward reusing_backward_;
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
// The same with a backward that may fold the inputs' pending gradients into its kernels.
Tensor record_folding_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                         FunctionNode::FoldingBackward backward);
// The same with a backward that may write its result into a saved tensor's memory on the
// graph's last use of it.
Tensor record_memory_reusing_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                                FunctionNode::MemoryReusingBackward backward);

// Reduces a broadcast gradient back to `shape` by summing the broadcast dims.
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

}  // namespace autotp
