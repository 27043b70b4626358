// The backward engine: counts dependencies from the root, then runs nodes in topological
// order (Kahn), summing gradients per node and accumulating into leaves. Iterative, so deep
// graphs cannot overflow the stack.
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

Tensor record_op(Tensor output, const char* name, std::vector<const Tensor*> inputs,
                 FunctionNode::Backward backward) {
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

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  AutogradMeta& meta = *leaf_.autograd_meta();
  // Own the gradient's memory: an incoming gradient may be a broadcast view or alias of
  // another tensor, so the first one is copied; later ones are added out of place.
  if (!meta.grad) {
    meta.grad = std::make_shared<Tensor>(grad_output.detach().clone());
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
  backward(Tensor(), false);
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  AUTOTP_CHECK(requires_grad(),
               "backward: this tensor does not require a gradient (no input with "
               "requires_grad took part, or it was computed under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    AUTOTP_CHECK(numel() == 1,
                 "backward: a gradient must be given for a non-scalar output of shape {}",
                 shape_str(shape()));
    seed = Tensor::ones(shape(), dtype(), device());
  }
  AUTOTP_CHECK(seed.shape() == shape(),
               "backward: gradient shape {} does not match output shape {}",
               shape_str(seed.shape()), shape_str(shape()));
  NoGradGuard no_grad;

  std::shared_ptr<Node> root = gradient_edge(*this);
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
    if (grad.defined()) input_grads = node->apply(grad);
    AUTOTP_ASSERT(input_grads.empty() || input_grads.size() == node->next.size(),
                  "{} returned {} gradients for {} inputs", node->name(), input_grads.size(),
                  node->next.size());
    for (size_t i = 0; i < node->next.size(); ++i) {
      const std::shared_ptr<Node>& next = node->next[i];
      if (!next) continue;
      if (!input_grads.empty() && input_grads[i].defined()) {
        Tensor& slot = pending[next.get()];
        slot = slot.defined() ? ops::add(slot, input_grads[i]) : input_grads[i];
      }
      if (--dependencies[next.get()] == 0) ready.push_back(next);
    }
    if (!retain_graph) {
      // Free saved tensors and edges; a later backward() through here reports the misuse.
      node->release();
      node->released = !node->next.empty();
      node->next.clear();
    }
  }
}

}  // namespace autotp
