// The backward engine: counts dependencies from the root, then runs nodes in topological
// order (Kahn), summing gradients per node and accumulating into leaves. Iterative, so deep
// graphs cannot overflow the stack.
#include "core/autograd/engine.h"

#include <unordered_map>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace autotp {

namespace {
thread_local bool grad_mode_enabled = true;

// The node a gradient for `t` flows into: its grad_fn, or the accumulator of a leaf.
std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  const auto& meta = t.autograd_meta();
  if (!meta) return nullptr;
  if (meta->grad_fn) return meta->grad_fn;
  if (!meta->requires_grad) return nullptr;
  std::shared_ptr<Node> acc = meta->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    meta->grad_accumulator = acc;
  }
  return acc;
}
}  // namespace

Node::~Node() {
  // Destroying the last reference to a node inside this loop, rather than through `next`'s
  // destructor, keeps the stack flat: each dying node hands its edges to this work list.
  std::vector<std::shared_ptr<Node>> edges = std::move(next);
  while (!edges.empty()) {
    std::shared_ptr<Node> node = std::move(edges.back());
    edges.pop_back();
    if (node && node.use_count() == 1) {
      for (auto& edge : node->next)
        edges.push_back(std::move(edge));
      node->next.clear();
    }
  }
}

bool GradMode::enabled() {
  return grad_mode_enabled;
}
void GradMode::set_enabled(bool enabled) {
  grad_mode_enabled = enabled;
}

bool needs_grad(const std::vector<const Tensor*>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor* t : inputs) {
    if (t != nullptr && t->requires_grad()) return true;
  }
  return false;
}

bool owns_its_storage(const Tensor& t) {
  return t.defined() && t.storage().use_count() == 1 && t.offset() == 0 && t.is_contiguous() &&
         static_cast<size_t>(t.numel()) * t.itemsize() == t.storage()->bytes();
}

namespace {
template <typename Backward>
Tensor record(Tensor output, const char* name, const std::vector<const Tensor*>& inputs,
              Backward backward) {
  if (!needs_grad(inputs)) return output;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->next.reserve(inputs.size());
  for (const Tensor* t : inputs)
    node->next.push_back(t ? gradient_edge(*t) : nullptr);
  AutogradMeta& meta = output.ensure_autograd_meta();
  meta.requires_grad = true;
  meta.grad_fn = std::move(node);
  return output;
}
}  // namespace

Tensor record_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                 FunctionNode::Backward backward) {
  return record(std::move(output), name, inputs, std::move(backward));
}

Tensor record_folding_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                         FunctionNode::FoldingBackward backward) {
  return record(std::move(output), name, inputs, std::move(backward));
}

Tensor record_memory_reusing_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                                FunctionNode::MemoryReusingBackward backward) {
  return record(std::move(output), name, inputs, std::move(backward));
}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  PendingGradients none(next.size());
  return apply_folding(grad_output, none, /*last_use=*/false);
}

std::vector<Tensor> FunctionNode::apply_folding(const Tensor& grad_output,
                                                PendingGradients& pending, bool last_use) {
  if (folding_backward_) return folding_backward_(grad_output, pending);
  if (reusing_backward_) {
    if (!last_use) return reusing_backward_(grad_output, false);
    // This call may overwrite what the closure saved: it is the closure's last, so a later
    // call fails loudly (below) instead of reading the overwritten tensors.
    const MemoryReusingBackward last = std::move(reusing_backward_);
    reusing_backward_ = nullptr;
    return last(grad_output, true);
  }
  AUTOTP_ASSERT(backward_ != nullptr, "{}: backward called after the graph was freed", name_);
  return backward_(grad_output);
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  AutogradMeta& meta = *leaf_.autograd_meta();
  // Own the gradient's memory: an incoming gradient may be a broadcast view or alias of
  // another tensor (or the caller's seed), so it is copied unless the engine's handle is the
  // only one to a dense buffer of the leaf's shape, which the leaf then takes over. Later
  // gradients are added out of place.
  if (!meta.grad) {
    if (owns_its_storage(grad_output) && grad_output.shape() == leaf_.shape() &&
        grad_output.dtype() == leaf_.dtype()) {
      meta.grad = std::make_shared<Tensor>(grad_output.detach());
    } else {
      meta.grad = std::make_shared<Tensor>(grad_output.detach().clone());
    }
  } else {
    *meta.grad = ops::add(*meta.grad, grad_output).detach();
  }
  // The engine sums every incoming gradient before running a node, so this runs once per
  // backward. A copy of the list: a hook may remove itself (or register another).
  if (!meta.post_accumulate_grad_hooks.empty()) {
    const auto hooks = meta.post_accumulate_grad_hooks;
    for (const auto& [id, hook] : hooks)
      hook(leaf_);
  }
  return {};
}

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  AUTOTP_ASSERT(lead >= 0, "sum_to_shape: {} to {}", shape_str(grad.shape()), shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && grad.shape()[d] != 1)) dims.push_back(d);
  }
  Tensor reduced = dims.empty() ? grad : ops::sum(grad, dims, /*keepdim=*/true);
  return reduced.reshape(shape);
}

void Tensor::backward() const {
  run_backward(*this, Tensor(), false);
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  run_backward(*this, grad_output, retain_graph);
}

BackwardSummary run_backward(const Tensor& root_tensor, const Tensor& grad_output,
                             bool retain_graph) {
  AUTOTP_CHECK(root_tensor.requires_grad(),
               "backward: this tensor does not require a gradient (no input with "
               "requires_grad took part, or it was computed under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    AUTOTP_CHECK(root_tensor.numel() == 1,
                 "backward: a gradient must be given for a non-scalar output of shape {}",
                 shape_str(root_tensor.shape()));
    seed = Tensor::ones(root_tensor.shape(), root_tensor.dtype(), root_tensor.device());
  }
  AUTOTP_CHECK(seed.shape() == root_tensor.shape(),
               "backward: gradient shape {} does not match output shape {}",
               shape_str(seed.shape()), shape_str(root_tensor.shape()));
  NoGradGuard no_grad;
  BackwardSummary summary;

  std::shared_ptr<Node> root = gradient_edge(root_tensor);
  // 1. Count, for every reachable node, how many edges point at it.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack{root.get()};
  dependencies[root.get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    AUTOTP_CHECK(!node->released,
                 "backward: the graph through {} was already freed by an earlier backward(); "
                 "pass retain_graph=true to backpropagate twice",
                 node->name());
    for (const auto& next : node->next) {
      if (!next) continue;
      auto [it, inserted] = dependencies.try_emplace(next.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(next.get());
    }
  }
  // 2. Run nodes whose every consumer has delivered its gradient. A node that received no
  // gradient at all still runs (without calling apply) so its inputs' counts fall to zero.
  std::unordered_map<Node*, Tensor> pending;
  pending[root.get()] = seed;
  seed = Tensor();  // the map's handle is the engine's only one (see owns_its_storage)
  std::vector<std::shared_ptr<Node>> ready{root};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Tensor grad;
    if (auto it = pending.find(node.get()); it != pending.end()) {
      grad = std::move(it->second);
      pending.erase(it);
    }
    std::vector<Tensor> input_grads;
    if (grad.defined()) {
      // Offer each input's pending sum to the node (moved out of the map, so the node sees the
      // only handle the engine has); an edge that appears twice is offered to neither input.
      const size_t inputs = node->next.size();
      PendingGradients offered(inputs);
      std::vector<bool> was_offered(inputs, false);
      for (size_t i = 0; i < inputs; ++i) {
        Node* target = node->next[i].get();
        if (target == nullptr) continue;
        bool shared_edge = false;
        for (size_t j = 0; j < inputs && !shared_edge; ++j)
          shared_edge = j != i && node->next[j].get() == target;
        if (shared_edge) continue;
        if (auto it = pending.find(target); it != pending.end()) {
          offered[i] = std::move(it->second);
          was_offered[i] = true;
          pending.erase(it);
        }
      }
      input_grads = node->apply_folding(grad, offered, /*last_use=*/!retain_graph);
      grad = Tensor();
      AUTOTP_ASSERT(input_grads.empty() || input_grads.size() == inputs,
                    "{} returned {} gradients for {} inputs", node->name(), input_grads.size(),
                    inputs);
      for (size_t i = 0; i < inputs; ++i) {
        if (offered[i].defined()) {
          pending[node->next[i].get()] = std::move(offered[i]);  // not taken: back in place
        } else if (was_offered[i]) {
          AUTOTP_ASSERT(!input_grads.empty() && input_grads[i].defined(),
                        "{} took the pending gradient of input {} but returned none", node->name(),
                        i);
          ++summary.folded_sums;
        }
      }
      for (size_t i = 0; i < inputs; ++i) {
        const std::shared_ptr<Node>& next = node->next[i];
        if (!next || input_grads.empty() || !input_grads[i].defined()) continue;
        Tensor& slot = pending[next.get()];
        if (slot.defined()) {
          slot = ops::add(slot, input_grads[i]);
          ++summary.engine_sums;
        } else {
          slot = std::move(input_grads[i]);
        }
      }
    }
    for (const std::shared_ptr<Node>& next : node->next) {
      if (next && --dependencies[next.get()] == 0) ready.push_back(next);
    }
    if (!retain_graph) {
      // Free saved tensors and edges; a later backward() through here reports the misuse.
      node->release();
      node->released = !node->next.empty();
      node->next.clear();
    }
  }
  return summary;
}

}  // namespace autotp
