// Gradients of tensor-parallel models: the global gradient norm across TP and DP (sharded
// parameters counted on every rank, replicated ones once), and the grad_allreduce marking
// of replicated parameters that act on sharded activations.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/comm/communicator.h"
#include "core/comm/parallel_grid.h"
#include "core/module.h"

namespace autotp {

struct GradNormParam {
  Tensor param;
  bool tensor_model_parallel = false;  // sharded over TP (else replicated)
};

// Every parameter of `root` with its TP flag, from the split metadata of the
// TensorParallelLayers in the tree; every other parameter is replicated.
std::vector<GradNormParam> classify_parameters(const Module& root);

// DeepSpeed's global gradient norm: a parameter's gradient counts on this rank when it is
// TP-sharded or this rank is TP rank 0 (replicated ones count once); the sums of squares
// are summed over `dp` (when given: each DP rank holding its own gradients, e.g. a ZeRO
// partition), then over `tp`, and the square root taken. norm_type = infinity uses the
// maximum instead. Parameters without a gradient are skipped. Collective; computed in f64.
double global_grad_norm(const std::vector<GradNormParam>& params, Communicator& tp,
                        Communicator* dp, double norm_type = 2.0);

// Replicated parameters whose gradient is summed over the TP group (HF's
// replicated_with_grad_allreduce): replicated weights applied to sharded activations, such
// as per-head q_norm/k_norm, whose ranks each see a partial gradient.
class ReplicatedGradAllreduce {
 public:
  explicit ReplicatedGradAllreduce(std::shared_ptr<Communicator> tp);
  // Marks `param` under `name` (for messages); every rank must mark the same, in order.
  void mark(const std::string& name, const Tensor& param);
  // Marks the parameter at dotted `name` below `root`.
  void mark(const Module& root, const std::string& name);
  bool is_marked(const std::string& name) const;
  const std::vector<std::string>& names() const { return names_; }
  // After backward: sums each marked gradient over the TP group in place (a missing
  // gradient counts as zeros and is created). Collective.
  void all_reduce_grads() const;

 private:
  std::shared_ptr<Communicator> tp_;
  std::vector<std::string> names_;
  std::vector<Tensor> params_;
};

}  // namespace autotp
