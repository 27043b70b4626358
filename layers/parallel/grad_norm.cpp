// Global gradient norm over TP and DP, and the TP all-reduce of marked replicated gradients.
#include "layers/parallel/grad_norm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

std::vector<GradNormParam> classify_parameters(const Module& root) {
  // Identity of a parameter tensor: its autograd record (copies share it).
  std::vector<std::pair<const void*, bool>> sharded;
  auto visit = [&](const Module& m) {
    const auto* layer = dynamic_cast<const TensorParallelLayer*>(&m);
    if (layer == nullptr) return;
    for (const char* name : {"weight", "bias"}) {
      if (!layer->has_parameter(name)) continue;
      sharded.emplace_back(layer->parameter(name).autograd_meta().get(),
                           layer->is_tensor_model_parallel(name));
    }
  };
  visit(root);
  for (const auto& [path, module] : root.named_modules())
    visit(*module);
  std::vector<GradNormParam> out;
  for (const auto& [name, p] : root.named_parameters()) {
    bool tp = false;
    for (const auto& [key, flag] : sharded) {
      if (key == p.autograd_meta().get()) tp = flag;
    }
    out.push_back({p, tp});
  }
  return out;
}

double global_grad_norm(const std::vector<GradNormParam>& params, Communicator& tp,
                        Communicator* dp, double norm_type) {
  NoGradGuard no_grad;
  const bool inf = std::isinf(norm_type);
  AUTOTP_CHECK(inf || norm_type == 2.0,
               "global_grad_norm: norm_type {} is not supported (2 or infinity)", norm_type);
  double local = 0.0;
  for (const GradNormParam& entry : params) {
    const Tensor g = entry.param.grad();
    if (!g.defined() || g.numel() == 0) continue;
    if (!entry.tensor_model_parallel && tp.rank() != 0) continue;
    const Tensor g64 = g.detach().to(DType::F64);
    if (inf) {
      // max |g| = max(max(g), max(-g))
      local = std::max({local, ops::max(g64).item(), ops::max(ops::neg(g64)).item()});
    } else {
      local += ops::sum(ops::mul(g64, g64)).item();
    }
  }
  const ReduceOp op = inf ? ReduceOp::Max : ReduceOp::Sum;
  const Tensor total = Tensor::full({1}, local, DType::F64);
  if (dp != nullptr) dp->all_reduce(total, op);
  tp.all_reduce(total, op);
  const double value = total.item();
  return inf ? value : std::sqrt(value);
}

ReplicatedGradAllreduce::ReplicatedGradAllreduce(std::shared_ptr<Communicator> tp)
    : tp_(std::move(tp)) {
  AUTOTP_CHECK(tp_ != nullptr, "ReplicatedGradAllreduce: the tensor-parallel group is null");
}

void ReplicatedGradAllreduce::mark(const std::string& name, const Tensor& param) {
  AUTOTP_CHECK(param.defined() && param.is_leaf(),
               "grad_allreduce: '{}' is not a parameter (a defined leaf tensor)", name);
  AUTOTP_CHECK(!is_marked(name), "grad_allreduce: '{}' is already marked", name);
  names_.push_back(name);
  params_.push_back(param);
}

void ReplicatedGradAllreduce::mark(const Module& root, const std::string& name) {
  for (const auto& [n, p] : root.named_parameters()) {
    if (n == name) return mark(name, p);
  }
  AUTOTP_FAIL("grad_allreduce: {} has no parameter named '{}'", root.describe(), name);
}

bool ReplicatedGradAllreduce::is_marked(const std::string& name) const {
  return std::find(names_.begin(), names_.end(), name) != names_.end();
}

void ReplicatedGradAllreduce::all_reduce_grads() const {
  NoGradGuard no_grad;
  std::vector<WorkHandle> pending;
  std::vector<std::pair<Tensor, Tensor>> updates;  // (param, reduced gradient)
  for (const Tensor& p : params_) {
    Tensor g = p.grad();
    if (!g.defined()) {
      g = Tensor::zeros(p.shape(), p.dtype(), p.device());
    } else if (!g.is_contiguous()) {
      g = g.contiguous();
    }
    pending.push_back(tp_->all_reduce_async(g));
    updates.emplace_back(p, g);
  }
  for (const WorkHandle& w : pending)
    w->wait();
  for (const auto& [p, g] : updates)
    p.set_grad(g);
}

}  // namespace autotp
